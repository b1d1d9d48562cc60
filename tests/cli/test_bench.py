"""rerank-async bench: the sweep, the recommendation, JSON and plot output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.cli import main
from rerank_async.cli._bench import CellResult, best_cell
from rerank_async.cli._bench_args import int_list
from rerank_async.server import ServerConfig, running_server


def cell(
    batch_size: int, concurrency: int, documents: int, wall_s: float, p99: float
) -> CellResult:
    return CellResult(
        batch_size=batch_size,
        concurrency=concurrency,
        candidates=100,
        documents=documents,
        wall_s=wall_s,
        call_ms={"p50": p99 / 2, "p90": p99, "p99": p99, "max": p99},
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, (64, 8)),  # most documents/s overall
        (150.0, (32, 8)),  # the fastest cell within the p99 target
        (60.0, (16, 4)),
        (10.0, None),  # nothing qualifies
    ],
)
def test_best_cell(target: float | None, expected: tuple[int, int] | None) -> None:
    cells = [
        cell(16, 4, 1000, 1.0, 50.0),
        cell(32, 8, 3000, 1.0, 120.0),
        cell(64, 8, 5000, 1.0, 300.0),
        cell(64, 16, 0, 1.0, 0.0),  # every call failed
    ]
    best = best_cell(cells, target)
    assert (None if best is None else (best.batch_size, best.concurrency)) == expected


@pytest.mark.parametrize(("text", "values"), [("16", [16]), ("16,32, 64", [16, 32, 64])])
def test_int_list(text: str, values: list[int]) -> None:
    assert int_list(text) == values


@pytest.mark.parametrize("text", ["", "a,b", "0,4", "-1"])
def test_int_list_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        int_list(text)


@pytest.mark.integration
def test_bench_against_an_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra")
    report, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    with running_server(ServerConfig(latency_ms=2, capacity=4)) as server:
        code = main(
            ["bench", "--base-url", server.base_url, "--batch-size", "8,32",
             "--concurrency", "1,4", "--candidates", "64", "--requests", "3", "--warmup", "1",
             "--json", str(report), "--plot", str(plot), "--target-p99", "5000"]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "best within p99 5000 ms: batch_size=" in out
    data = json.loads(report.read_text())
    assert len(data["cells"]) == 4
    for result in data["cells"]:
        assert result["documents"] == 3 * 64
        assert result["failed_calls"] == 0
        assert result["http_requests"] >= 3 * 64 // result["batch_size"]
        assert result["call_ms"]["p50"] <= result["call_ms"]["p99"]
        assert result["server_runtime_ms_p50"] is not None
        assert 1 <= result["concurrency_limit"] <= result["concurrency"]
    assert "limit" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.integration
def test_bench_starts_its_own_server(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("aiohttp", reason="--engine aiohttp needs the aiohttp extra")
    code = main(
        ["bench", "--batch-size", "16", "--concurrency", "2", "--candidates", "32",
         "--requests", "2", "--warmup", "0", "--latency-ms", "1", "--engine", "aiohttp"]
    )  # fmt: skip
    assert code == 0
    assert "best: batch_size=16 concurrency=2" in capsys.readouterr().out
