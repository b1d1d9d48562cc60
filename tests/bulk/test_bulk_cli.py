"""``rerank-async bulk`` against the real local server: in-process, and as a killed subprocess."""

from __future__ import annotations

import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.cli import main
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

pytestmark = pytest.mark.integration

WORDS = ["solar", "battery", "storage", "home", "grid", "panel", "roof", "energy", "coffee",
         "marathon", "volcano", "city"]  # fmt: skip
QUERIES = ["solar battery storage", "home energy grid", "coffee city marathon"]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=1)) as running:
        yield running


def make_requests(n: int, *, seed: int, sizes: list[int] | None = None) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        size = sizes[i] if sizes is not None else rng.randint(1, 12)
        documents = [f"{' '.join(rng.choices(WORDS, k=4))} {j}" for j in range(size)]
        requests.append({"id": f"r{i}", "query": QUERIES[i % 3], "documents": documents})
    return requests


def write_jsonl(path: Path, items: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")


def read_records(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "the output ends in a half-written line"
    return [json.loads(line) for line in data.splitlines()]


def expected_scores(request: dict[str, Any]) -> list[float]:
    texts = [d if isinstance(d, str) else d["text"] for d in request["documents"]]
    return [reference_score(request["query"], text) for text in texts]


def bulk(capsys: pytest.CaptureFixture[str], *argv: str, base_url: str) -> tuple[int, str, str]:
    code = main(["bulk", *argv, "--base-url", base_url])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- in-process -----------------------------------------------------------------------------------


def test_records_scores_ranking_and_carried_fields(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    requests: list[dict[str, Any]] = [
        {"id": "france", "query": "capital of France", "top_k": 1,
         "documents": ["Berlin is the capital of Germany.", "Paris is the capital of France."]},
        {"query": "solar storage",
         "documents": [{"text": "coffee roast", "url": "c"}, "solar battery storage",
                       {"text": "solar panel", "meta": {"n": 1}}]},
        {"id": 9, "query": "nothing", "documents": []},
    ]  # fmt: skip
    write_jsonl(tmp_path / "in.jsonl", requests)
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    code, stdout, err = bulk(
        capsys, str(tmp_path / "in.jsonl"), "-o", str(out), "--json-summary", str(summary),
        base_url=server.base_url,
    )  # fmt: skip
    assert code == 0, err
    assert stdout == ""  # records go to the file, the summary to stderr
    assert "Summary" in err
    assert "3 ok · 0 failed · 0 skipped" in err
    records = {record["id"]: record for record in read_records(out)}
    assert set(records) == {"france", 2, 9}  # line 2 has no id: its line number stands in

    france = records["france"]
    assert france["scores"] == expected_scores(requests[0])
    assert france["ranking"] == [1]  # top_k 1: Paris
    assert "documents" not in france
    assert france["input_tokens"] > 0

    solar = records[2]
    assert solar["scores"] == expected_scores(requests[1])
    assert solar["ranking"] == sorted(range(3), key=lambda i: (-solar["scores"][i], i))
    by_index = {entry["index"]: entry for entry in solar["documents"]}
    assert [entry["index"] for entry in solar["documents"]] == solar["ranking"]
    assert by_index[0] == {"index": 0, "score": solar["scores"][0], "url": "c"}
    assert by_index[1] == {"index": 1, "score": solar["scores"][1]}
    assert by_index[2] == {"index": 2, "score": solar["scores"][2], "meta": {"n": 1}}

    assert all(record.pop("fingerprint").startswith("b2v1:") for record in records.values())
    # Every scored line names the model that scored it (a fallback's, when it fell back).
    assert len({record.pop("model") for record in records.values()}) == 1
    assert records[9] == {"id": 9, "scores": [], "ranking": []}
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["requests_ok"] == 3
    assert figures["documents"] == 5
    assert figures["http_requests"] == 2  # the empty request sends nothing
    # A healthy server: the adaptive limit never went down from where a fresh client
    # starts, DeepInfra's default ceiling of 32.
    assert figures["concurrency_limit"] == figures["lowest_concurrency_limit"] == 32
    assert "concurrency limit" in err


def test_malformed_lines_are_reported_by_line_number(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [
        '{"id": "a", "query": "solar", "documents": ["solar panel"]}',
        "{not json",
        "",
        '{"id": "b", "documents": ["x"]}',
        '{"id": "c", "query": "q", "documents": "solar"}',
        '{"id": "a", "query": "solar", "documents": ["again"]}',
        '{"id": "d", "query": "q", "documents": [{"text": "x"}, 5]}',
        '{"id": "e", "query": "solar", "documents": ["solar"]}',
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 1
    assert "Traceback" not in err
    for line, message in [
        (2, "not valid JSON"),
        (4, "missing 'query'"),
        (5, "'documents' must be a list, got a string"),
        (6, 'duplicate id "a"'),
        (7, "documents[1] must be a string or an object with 'text', got a number"),
    ]:
        assert f"{source} line {line}: {message}" in err
    assert "5 error records" in err
    records = read_records(out)
    errors = {record["error"]["line"]: record for record in records if "error" in record}
    assert sorted(errors) == [2, 4, 5, 6, 7]
    assert errors[2]["id"] == 2  # unreadable: the line number is its id
    assert errors[4]["id"] == "b"
    assert errors[6]["error"]["type"] == "DuplicateId"
    assert {errors[n]["error"]["type"] for n in (2, 4, 5, 7)} == {"InvalidLine"}
    assert sorted(r["id"] for r in records if "error" not in r) == ["a", "e"]

    # A rerun resumes: nothing is sent or reported twice, and the exit code still says so.
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 1
    assert "line" not in err.split("Summary")[0]
    assert len(read_records(out)) == len(records)


def test_a_reported_duplicate_does_not_hide_the_first_line(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Killed after line 2's duplicate report but before line 1's result: the rerun must
    # still run line 1, and not report line 2 twice.
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, [{"id": "x", "query": "solar", "documents": ["solar"]}] * 2)
    out.write_text(
        '{"id":"x","error":{"type":"DuplicateId","message":"duplicate","line":2}}\n',
        encoding="utf-8",
    )
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 1  # the duplicate's record is an error record
    assert "1 ok · 0 failed · 1 skipped" in err
    assert "line 2" not in err
    assert [("error" in r) for r in read_records(out)] == [True, False]


def test_resume_sends_only_the_missing_requests(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    requests = make_requests(30, seed=2)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, requests)
    assert bulk(capsys, str(source), "-o", str(out), "-q", base_url=server.base_url)[0] == 0
    kept = read_records(out)[::3]  # as if the first run had stopped after 10 records
    out.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in kept) + b'{"id":"r')
    server.reset_stats()
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 0, err
    assert "removed an incomplete last line" in err
    assert "20 ok · 0 failed · 10 skipped" in err
    assert server.stats()["requests"] == 20  # one small batch per missing request
    records = read_records(out)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in requests)
    by_id = {r["id"]: r for r in requests}
    assert all(r["scores"] == expected_scores(by_id[r["id"]]) for r in records)


def test_retry_failed_reruns_only_the_failures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    requests = make_requests(12, seed=3)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, requests[:6])
    with running_server(ServerConfig(api_key="right")) as guarded:
        url = guarded.base_url
        assert bulk(capsys, str(source), "-o", str(out), "--api-key", "right", base_url=url)[0] == 0
        write_jsonl(source, requests)  # six more lines, sent with a wrong key: they fail
        code, _, err = bulk(capsys, str(source), "-o", str(out), "--api-key", "wrong", base_url=url)
        assert code == 1
        assert "0 ok · 6 failed · 6 skipped" in err
        failed = [r for r in read_records(out) if "error" in r]
        assert {r["error"]["type"] for r in failed} == {"AuthenticationError"}
        assert {r["error"]["status_code"] for r in failed} == {401}

        # Resuming skips failures too; the exit code keeps saying the output has errors.
        guarded.reset_stats()
        code, _, err = bulk(capsys, str(source), "-o", str(out), "--api-key", "right", base_url=url)
        assert code == 1
        assert "error records from earlier runs" in err
        assert guarded.stats()["requests"] == 0

        code, _, err = bulk(
            capsys, str(source), "-o", str(out), "--api-key", "right", "--retry-failed",
            base_url=url,
        )  # fmt: skip
        assert code == 0, err
        assert "6 ok · 0 failed · 6 skipped" in err
        assert guarded.stats()["requests"] == 6
    records = read_records(out)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in requests)
    assert not any("error" in r for r in records)


def test_stdin_and_default_top_k(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    requests = make_requests(5, seed=4, sizes=[6] * 5)
    requests[0]["top_k"] = 4
    data = "".join(json.dumps(r) + "\n" for r in requests).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    out = tmp_path / "out.jsonl"
    code, _, err = bulk(capsys, "-", "-o", str(out), "--top-k", "2", "-q", base_url=server.base_url)
    assert code == 0, err
    assert err == ""  # --quiet: no table, nothing to say
    ranking_sizes = {r["id"]: len(r["ranking"]) for r in read_records(out)}
    assert ranking_sizes == {"r0": 4, "r1": 2, "r2": 2, "r3": 2, "r4": 2}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["-o", "-"], 2, "--output must be a file"),
        (["-o", "{out}", "--top-k", "0"], 2, "--top-k must be >= 1"),
        (["-o", "{in}"], 2, "the output must not be the input"),
        (["-o", "{out}", "--batch-size", "0"], 1, "batch_size must be >= 1"),
        (["-o", "{tmp}/no/such/dir/out.jsonl"], 1, "No such file or directory"),
    ],
)
def test_usage_and_setup_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, make_requests(2, seed=5))
    names = {"in": str(source), "out": str(tmp_path / "out.jsonl"), "tmp": str(tmp_path)}
    argv = [arg.format(**names) for arg in argv]
    got, stdout, err = bulk(capsys, str(source), *argv, base_url="http://127.0.0.1:9/v1/inference")
    assert (got, stdout) == (code, "")
    assert err.count("\n") == 1
    assert message in err
    assert source.read_text(encoding="utf-8").count("\n") == 2  # the input is never touched


def test_missing_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = bulk(
        capsys, str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out.jsonl"),
        base_url="http://127.0.0.1:9/v1/inference",
    )  # fmt: skip
    assert code == 1
    assert err == f"rerank-async: error: No such file or directory: {tmp_path / 'nope.jsonl'}\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_progress_display_on_a_terminal(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=150)
    monkeypatch.setattr("rerank_async.cli._bulk.stderr_console", lambda: terminal)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, make_requests(40, seed=10))
    assert main(["bulk", str(source), "-o", str(out), "--base-url", server.base_url]) == 0
    text = screen.getvalue()
    assert "40/40 requests · ETA 0:00:00 ·" in text
    assert "docs/s · 0 retries · 0 errors" in text
    assert "Summary" in text


@pytest.mark.slow
def test_2000_mixed_requests_through_15_percent_faults(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Mostly small requests, log-uniform up to 300 documents, plus a few large ones up to
    # 5,000: every size class in the issue, about 120k short documents in all.
    rng = random.Random(42)
    sizes = [max(1, round(math.exp(rng.uniform(0, math.log(300))))) for _ in range(1988)]
    sizes += [5000, 4000, 3000, 2500, 2000, 1500, 1200, 1000, 900, 800, 700, 600]
    rng.shuffle(sizes)
    requests = make_requests(len(sizes), seed=6, sizes=sizes)
    source, out, summary = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "s.json"
    write_jsonl(source, requests)
    config = ServerConfig(
        error_503_rate=0.05, error_429_rate=0.05, retry_after_s=0, drop_rate=0.05, seed=7
    )
    with running_server(config) as faulty:
        code, _, err = bulk(
            capsys, str(source), "-o", str(out), "--json-summary", str(summary),
            "--batch-size", "256", "--concurrency", "16", "--max-retries", "12",
            "--retry-initial-delay", "0", base_url=faulty.base_url,
        )  # fmt: skip
        stats = faulty.stats()
    assert code == 0, err
    records = read_records(out)
    ids = [record["id"] for record in records]
    assert len(ids) == len(set(ids)) == 2000  # every request answered exactly once
    assert set(ids) == {request["id"] for request in requests}
    by_id = {request["id"]: request for request in requests}
    for record in records:
        assert record["scores"] == expected_scores(by_id[record["id"]]), record["id"]
    injected = sum(n for status, n in stats["status_counts"].items() if status != "200")
    injected += stats["dropped"]
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert injected > 100
    assert figures["retries"] == injected  # every fault was retried, none was lost
    assert figures["requests_ok"] == 2000
    assert figures["documents"] == sum(sizes)


# -- a real process, killed -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_server() -> Iterator[RunningServer]:
    # Slow enough that a run of 300 requests takes a few seconds: room to kill it halfway.
    with running_server(ServerConfig(latency_ms=15, capacity=4, seed=2)) as running:
        yield running


def start_bulk(
    source: Path, out: Path, base_url: str, *extra: str, stdin: int | None = None
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "rerank_async.cli", "bulk", str(source), "-o", str(out),
        "--base-url", base_url, "--concurrency", "4", "--batch-size", "16", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ}
    )


def wait_for_records(out: Path, process: subprocess.Popen[bytes], at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= at_least:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.005)
    pytest.fail("the bulk process wrote no records")


@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.slow
def test_killed_halfway_then_rerun_completes_the_file(
    slow_server: RunningServer, tmp_path: Path, kill: signal.Signals
) -> None:
    requests = make_requests(300, seed=8)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, requests)
    process = start_bulk(source, out, slow_server.base_url)
    wait_for_records(out, process, at_least=40)
    process.send_signal(kill)
    _, stderr = process.communicate(timeout=30)
    data = out.read_bytes()
    if kill == signal.SIGINT:
        assert process.returncode == 130
        assert b"run the same command again to resume" in stderr
        assert b"Traceback" not in stderr
        assert data.endswith(b"\n")  # Ctrl-C never cuts a record
    else:
        assert process.returncode == -signal.SIGKILL
        # kill -9 inside a write that crosses a page boundary may leave part of the last
        # record (docs/bulk.md); everything before it is whole, and the rerun cuts it off.
        data = data[: data.rfind(b"\n") + 1]
    before = [json.loads(line) for line in data.splitlines()]  # every line valid JSON
    assert 40 <= len(before) < 300

    summary = tmp_path / "summary.json"
    rerun = start_bulk(source, out, slow_server.base_url, "--json-summary", str(summary))
    _, stderr = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, stderr
    ids = [record["id"] for record in read_records(out)]
    assert len(ids) == len(set(ids)), "a request was answered twice"
    assert set(ids) == {request["id"] for request in requests}, "a request is missing"
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["requests_skipped"] == len(before)
    assert figures["requests_ok"] == 300 - len(before)


@pytest.mark.slow
def test_a_second_sigint_stops_at_once(slow_server: RunningServer, tmp_path: Path) -> None:
    requests = make_requests(200, seed=9, sizes=[200] * 200)  # 13 batches each: slow to finish
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, requests)
    process = start_bulk(source, out, slow_server.base_url)
    wait_for_records(out, process, at_least=1)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert b"Ctrl-C again to stop at once" in stderr
    assert len(read_records(out)) < 200


def test_sigint_while_stdin_is_still_open(server: RunningServer, tmp_path: Path) -> None:
    # The producer has more to say but has not said it yet: Ctrl-C must not wait for it.
    out = tmp_path / "out.jsonl"
    process = start_bulk(Path("-"), out, server.base_url, stdin=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write(
        b"".join(json.dumps(r).encode() + b"\n" for r in make_requests(30, seed=11))
    )
    process.stdin.flush()
    wait_for_records(out, process, at_least=30)
    process.send_signal(signal.SIGINT)
    try:
        assert process.wait(timeout=10) == 130  # stdin still open: no EOF to stop on
    finally:
        process.stdin.close()
    assert process.stderr is not None
    with process.stderr, process.stdout or io.BytesIO():
        stderr = process.stderr.read()
    assert b"Fatal Python error" not in stderr
    assert b"Traceback" not in stderr
    assert len(read_records(out)) == 30
