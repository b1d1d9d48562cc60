"""bench --rate's pieces alone: percentiles, the arrival schedule, targets, payloads, reports."""

from __future__ import annotations

import argparse
import math
import random
import statistics
from pathlib import Path

import anyio
import pytest

from rerank_async import RerankError

pytest.importorskip("rich", reason="the cli extra: pip install -e '.[dev]'")

import itertools

from rerank_async.cli._bench_cells import OpenLoopCell, highest_sustained_rates
from rerank_async.cli._bench_payloads import (
    DocTokens,
    load_payloads,
    parse_doc_tokens,
    synthetic_payloads,
)
from rerank_async.cli._bench_report import (
    Report,
    TableData,
    command_line,
    report_path,
    write_report,
)
from rerank_async.cli._bench_schedule import TargetRun, arrival_offsets, run_schedule
from rerank_async.cli._bench_stats import few_samples_warning, latency_summary, nearest_rank
from rerank_async.cli._bench_targets import Target, parse_target

# -- percentiles ----------------------------------------------------------------------------------


def test_percentiles_of_one_to_a_thousand() -> None:
    values = [float(v) for v in range(1, 1001)]
    random.Random(3).shuffle(values)  # the input order must not matter
    assert latency_summary(values) == {
        "p50_ms": 500.0, "p90_ms": 900.0, "p99_ms": 990.0, "p999_ms": 999.0, "max_ms": 1000.0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([7.0], 0.5, 7.0), ([7.0], 0.999, 7.0), ([1.0, 2.0], 0.5, 1.0), ([1.0, 2.0], 0.51, 2.0),
     ([1.0, 2.0, 3.0, 4.0], 0.75, 3.0), ([1.0, 2.0, 3.0, 4.0], 0.76, 4.0),
     ([1.0, 2.0, 3.0], 0.0, 1.0), ([1.0, 2.0, 3.0], 1.0, 3.0)],
)  # fmt: skip
def test_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert nearest_rank(values, fraction) == expected


def test_percentiles_of_an_exponential_distribution() -> None:
    """Against the known quantiles of Exp(mean 50 ms): -mean * ln(1 - q)."""
    rng = random.Random(5)
    mean = 50.0
    summary = latency_summary([rng.expovariate(1 / mean) for _ in range(200_000)])
    for key, q in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99), ("p999_ms", 0.999)):
        exact = -mean * math.log(1 - q)
        assert summary[key] == pytest.approx(exact, rel=0.05), key


def test_no_calls_no_percentiles() -> None:
    assert set(latency_summary([]).values()) == {None}


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, None), (1, "p50 and p90 and p99 and p99.9 rest on 1 calls (they need 2 and 10 and 100 "
                   "and 1,000): each is the slowest call"),
     (99, "p99 and p99.9 rest on 99 calls (they need 100 and 1,000): each is the slowest call"),
     (100, "p99.9 rests on 100 calls (it needs 1,000): it is the slowest call"),
     (999, "p99.9 rests on 999 calls (it needs 1,000): it is the slowest call"),
     (1000, None)],
)  # fmt: skip
def test_warning_when_a_percentile_rests_on_too_few_calls(n: int, expected: str | None) -> None:
    assert few_samples_warning(n) == expected


def test_highest_sustained_rate() -> None:
    def cell(target: str, rate: float, p99: float, errors: int = 0) -> OpenLoopCell:
        result = OpenLoopCell(target, rate, "poisson", 10.0, sent=200)
        result.latencies_ms = [p99 / 2] * 190 + [p99] * 10
        if errors:
            result.errors_by_type = {"ServerError": errors}
        return result

    cells = [cell("a", 10, 100), cell("a", 20, 200), cell("a", 40, 400),
             cell("b", 10, 250, errors=3), cell("b", 20, 100, errors=2),
             cell("c", 10, 900)]  # fmt: skip
    # b at 10/s failed 1.5% of its calls: not sustained, whatever its latency.
    assert highest_sustained_rates(cells, 300.0) == {"a": 20, "b": 20, "c": None}


# -- the schedule ---------------------------------------------------------------------------------


def test_constant_arrivals_are_evenly_spaced() -> None:
    offsets = arrival_offsets(20.0, 3.0, "constant")
    assert len(offsets) == 60
    assert offsets[0] == 0.0
    assert {round(b - a, 9) for a, b in itertools.pairwise(offsets)} == {0.05}


def test_poisson_arrivals_have_the_exact_count_and_exponential_gaps() -> None:
    offsets = arrival_offsets(50.0, 200.0, "poisson", seed=7)
    assert len(offsets) == 10_000
    assert offsets == sorted(offsets)
    assert offsets[0] >= 0.0
    assert offsets[-1] < 200.0
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.02)
    # Exponential gaps: the standard deviation equals the mean; P(gap > mean) = 1/e.
    assert statistics.stdev(gaps) == pytest.approx(1 / 50, rel=0.05)
    assert sum(gap > 1 / 50 for gap in gaps) / len(gaps) == pytest.approx(math.exp(-1), abs=0.02)
    assert arrival_offsets(50.0, 200.0, "poisson", seed=7) == offsets  # reruns offer the same
    assert arrival_offsets(50.0, 200.0, "poisson", seed=8) != offsets


class _HeldError(RerankError):
    pass


class _HeldClient:
    """Answers no call until every call has been sent: only an open loop can finish."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.started = 0
        self.all_sent = anyio.Event()

    async def rerank(self, query: str, documents: list[str]) -> object:
        self.started += 1
        if self.started == self.expected:
            self.all_sent.set()
        await self.all_sent.wait()
        raise _HeldError("answered only once every call was sent")


async def test_calls_start_on_schedule_while_earlier_ones_are_unanswered() -> None:
    offsets = [0.0, 0.002, 0.004, 0.006, 0.008]
    cell = OpenLoopCell("t", 500.0, "constant", 0.01)
    runs = [TargetRun(_HeldClient(len(offsets)), cell)]  # type: ignore[arg-type]
    with anyio.fail_after(5):
        await run_schedule(runs, offsets, synthetic_payloads(3, None))
    assert cell.sent == 5
    assert cell.errors_by_type == {"_HeldError": 5}
    assert cell.latencies_ms == []
    assert cell.first_start_s < 0.005
    assert 0.008 <= cell.last_start_s < 0.5


# -- targets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a=deepinfra:m@http://127.0.0.1:8001/v1/inference",
      Target("a", "deepinfra", "m", "http://127.0.0.1:8001/v1/inference")),
     ("qwen=deepinfra:Qwen/Qwen3-Reranker-4B",
      Target("qwen", "deepinfra", "Qwen/Qwen3-Reranker-4B")),
     ("c=Cohere", Target("c", "cohere")),
     ("t.e-i_2=tei@https://user:pw@tei.internal:8080", Target("t.e-i_2", "tei", None,
                                                              "https://user:pw@tei.internal:8080"))],
)  # fmt: skip
def test_parse_target(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("deepinfra:m", "no '='"), ("=deepinfra", "the name ''"), ("a b=deepinfra", "the name"),
     ("a=nosuch:m", "unknown provider 'nosuch'"), ("a=deepinfra:m@127.0.0.1:8000", "http://"),
     ("a=deepinfra:m@", "http://")],
)  # fmt: skip
def test_parse_target_rejects(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message) as caught:
        parse_target(text)
    assert "NAME=PROVIDER[:MODEL][@BASE_URL]" in str(caught.value)


# -- payloads -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "low", "high"),
    [("200", "fixed", 200, 0), ("50-400", "uniform", 50, 400),
     ("lognormal:200", "lognormal", 200, 0), ("lognormal:200:0.8", "lognormal", 200, 0)],
)  # fmt: skip
def test_parse_doc_tokens(text: str, kind: str, low: int, high: int) -> None:
    tokens = parse_doc_tokens(text)
    assert (tokens.kind, tokens.low, tokens.high) == (kind, low, high)


@pytest.mark.parametrize("text", ["", "x", "0", "400-50", "lognormal:", "normal:3"])
def test_parse_doc_tokens_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_doc_tokens(text)


def test_synthetic_documents_follow_the_length_distribution() -> None:
    payloads = synthetic_payloads(50, DocTokens("uniform", 100, 300))
    assert len(payloads) == 16
    assert {len(p.documents) for p in payloads} == {50}
    lengths = [len(d) / 4 for p in payloads for d in p.documents]  # 4 characters per token
    assert min(lengths) >= 95
    assert max(lengths) <= 300
    assert statistics.fmean(lengths) == pytest.approx(200, rel=0.05)


def test_documents_from_a_bulk_input_file(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"query": "q1", "documents": ["a", "b", "c"]}\n\n'
        '{"id": 7, "query": "q2", "documents": [{"text": "d", "source": "x"}]}\n'
    )
    payloads = load_payloads(str(path), 2)
    assert [(p.query, p.documents) for p in payloads] == [("q1", ["a", "b"]), ("q2", ["d"])]
    path.write_text('{"query": "q1", "documents": ["a"]}\n{"query": 3}\n')
    with pytest.raises(ValueError, match=r"record 2: 'query' must be a string"):
        load_payloads(str(path), None)


# -- report files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r.txt", "r", "r.png"])
def test_report_path_must_be_html_or_markdown(name: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"\.html or \.md"):
        report_path(name)


@pytest.mark.parametrize("suffix", [".html", ".md"])
def test_report_escapes_and_embeds(tmp_path: Path, suffix: str) -> None:
    report = Report("bench <b>", "rerank-async bench --target 'a=x|y'")
    report.environment = [TableData("Versions", ["", ""], [["python", "3.11"]])]
    report.tables = [TableData("Results", ["target", "p99"], [["a|b", "12"]], frozenset({1}))]
    report.notes = ["a < b"]
    report.images = [("Plot", b"\x89PNG fake")]
    path = tmp_path / f"report{suffix}"
    write_report(str(path), report)
    text = path.read_text()
    assert "data:image/png;base64,iVBORyBmYWtl" in text
    if suffix == ".html":
        assert "bench &lt;b&gt;" in text
        assert "a &lt; b" in text
        assert '<td class="n">12</td>' in text
    else:
        assert "| a\\|b | 12 |" in text
        assert "|---|---:|" in text
        assert "```bash\nrerank-async bench --target 'a=x|y'\n```" in text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["bench", "--api-key", "sk-1", "--rate", "5"], "rerank-async bench --api-key '***' --rate 5"),
     (["bench", "--api-key=sk-1", "--server-api-key", "k2"],
      "rerank-async bench '--api-key=***' --server-api-key '***'"),
     (["bench", "--target", "a=x y"], "rerank-async bench --target 'a=x y'")],
)  # fmt: skip
def test_recorded_command_masks_keys(argv: list[str], expected: str) -> None:
    assert command_line(argparse.Namespace(argv=argv)) == expected
