"""bench --rate end to end against local servers on loopback: JSON, reports, usage errors."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.cli import main
from rerank_async.server import RunningServer, ServerConfig, running_server

pytestmark = pytest.mark.integration

JSON_KEYS = {"target", "rate", "achieved_rate", "n", "errors", "p50_ms", "p90_ms", "p99_ms",
             "p999_ms", "max_ms"}  # fmt: skip


@pytest.fixture(scope="module")
def fast() -> Iterator[RunningServer]:
    with running_server(ServerConfig(latency_ms=2.0)) as server:
        yield server


def target(name: str, server: RunningServer) -> str:
    return f"{name}=deepinfra:m@{server.base_url}"


def test_two_targets_json_and_reports(
    fast: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="the report's plots need the plot extra")
    out = tmp_path / "out.json"
    html, md, png = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "r.png"
    with running_server(ServerConfig(latency_ms=20.0)) as slow:
        argv = ["bench", "--target", target("fast", fast), "--target", target("slow", slow),
                "--api-key", "x", "--rate", "10,20", "--duration", "1.5", "--candidates", "8",
                "--doc-tokens", "20-60", "--warmup", "1", "--target-p99", "1000",
                "--json", str(out), "--report", str(html), "--plot", str(png)]  # fmt: skip
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert main([*argv[:-4], "--report", str(md)]) == 0
    data = json.loads(out.read_text())
    assert data["mode"] == "open-loop"
    assert data["command"].startswith("rerank-async bench --target fast=deepinfra:m@http")
    assert data["highest_rate_within_target_p99"] == {"fast": 20.0, "slow": 20.0}
    cells = {(c["target"], c["rate"]): c for c in data["cells"]}
    assert set(cells) == {("fast", 10.0), ("slow", 10.0), ("fast", 20.0), ("slow", 20.0)}
    for (_, rate), cell in cells.items():
        assert set(cell) >= JSON_KEYS
        assert cell["n"] == round(rate * 1.5)
        assert cell["achieved_rate"] == pytest.approx(rate, rel=0.1)
        assert cell["errors"] == 0
        assert cell["p50_ms"] <= cell["p90_ms"] <= cell["p99_ms"] <= cell["max_ms"]
        assert cell["documents_per_call"] == 8
        assert cell["bytes_per_call"] > 8 * 20 * 4  # at least the documents' characters
        assert cell["tokens_per_call"] > 8 * 20
        assert any("p99 and p99.9 rest on" in warning for warning in cell["warnings"])
    for rate in (10.0, 20.0):
        assert cells[("fast", rate)]["p50_ms"] < cells[("slow", rate)]["p50_ms"]
        assert cells[("slow", rate)]["p50_ms"] >= 20.0
    assert "fast: highest rate with p99 within 1000 ms: 20/s" in printed
    assert png.read_bytes().startswith(b"\x89PNG")

    page = html.read_text()
    assert "rerank-async bench --target fast=deepinfra:m@http" in page
    for text in ("Versions", "Machine", "Settings", "Targets", "achieved/s", "p99.9", "slow"):
        assert text in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(b"\x89PNG")
    markdown = md.read_text()
    assert "| target | rate/s | achieved/s |" in markdown
    assert "![Latency CDF per target; p99 against offered rate](data:image/png;base64," in markdown


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--target", "a=deepinfra:m"], "argument --target: 'a=deepinfra:m' is given twice"),
     (["--target", "b=nosuch:m"], "argument --target: 'b=nosuch:m': unknown provider 'nosuch'"),
     (["--target", "b=deepinfra:m@localhost"], "argument --target: 'b=deepinfra:m@localhost': "
                                               "the base URL"),
     (["--rate", "0"], "argument --rate: expected rates > 0"),
     (["--doc-tokens", "9-3"], "argument --doc-tokens"),
     (["--report", "r.pdf"], "argument --report: 'r.pdf': the report must end in .html or .md")],
)  # fmt: skip
def test_bad_flags_are_named_before_any_request(
    fast: RunningServer, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fast.reset_stats()
    argv = ["bench", "--target", f"a=deepinfra:m@{fast.base_url}", "--rate", "5",
            "--duration", "1", *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message.replace("'a=deepinfra:m' is given twice", "the name 'a' is given twice") in (
        " ".join(capsys.readouterr().err.split())
    )
    assert fast.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--target", "a=deepinfra:m@URL"], "--target needs --rate"),
     (["--target", "a=deepinfra:m@URL", "--rate", "5", "--batch-size", "16,32"],
      "--batch-size takes one value with --rate"),
     (["--target", "a=deepinfra:m@URL", "--rate", "5", "--duration", "0"],
      "--duration must be > 0")],
)  # fmt: skip
def test_inconsistent_flags_fail_before_any_request(
    fast: RunningServer, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fast.reset_stats()
    argv = [arg.replace("URL", fast.base_url) for arg in argv]
    assert main(["bench", *argv]) == 1
    assert message in capsys.readouterr().err
    assert fast.stats()["requests"] == 0


@pytest.mark.slow
def test_scheduler_holds_the_rate_for_thirty_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Against the local server in its own process (bench starts it), answering at once.

    A server thread in this process would take the interpreter lock from the scheduler.
    """
    out = tmp_path / "out.json"
    argv = ["bench", "--rate", "50", "--duration", "30", "--candidates", "4",
            "--latency-ms", "0", "--per-doc-latency-ms", "0", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    [cell] = json.loads(out.read_text())["cells"]
    assert cell["target"] == "local"
    assert cell["n"] == 1500
    assert cell["errors"] == 0
    assert cell["achieved_rate"] == pytest.approx(50.0, rel=0.02)
    # From the real start times alone: 1,499 gaps between the first and the last call.
    assert (cell["n"] - 1) / cell["send_window_s"] == pytest.approx(50.0, rel=0.02)
    assert cell["send_lag_p99_ms"] < 50.0


@pytest.mark.slow
def test_a_stall_shows_in_the_open_loop_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's check, shortened: B stalls for 1 s, 1 s into the run; A never does."""
    out = tmp_path / "out.json"
    stalling = ServerConfig(latency_ms=60.0, stall_duration_s=1.0, stall_start_s=1.0)
    with running_server(ServerConfig(latency_ms=20.0)) as a, running_server(stalling) as b:
        argv = ["bench", "--target", target("a", a), "--target", target("b", b),
                "--api-key", "x", "--rate", "20", "--duration", "3", "--candidates", "50",
                "--json", str(out)]  # fmt: skip
        assert main(argv) == 0
    cells = {cell["target"]: cell for cell in json.loads(out.read_text())["cells"]}
    for cell in cells.values():
        assert set(cell) >= JSON_KEYS
        assert cell["achieved_rate"] == pytest.approx(20.0, rel=0.1)
    assert cells["a"]["p50_ms"] < cells["b"]["p50_ms"]
    assert cells["a"]["p99_ms"] < 500.0
    assert cells["b"]["p99_ms"] >= 500.0
