"""``rerank-async bulk --ray`` on the session's Ray cluster, against the real local server."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rerank_async.cli import main
from rerank_async.server import ServerConfig, running_server

from ..bulk.test_bulk_cli import expected_scores, make_requests, write_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.usefixtures("ray_cluster")
def test_jsonl_to_parquet_on_ray(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    requests = make_requests(200, seed=4)
    requests[5]["documents"] = []
    source, out, summary = tmp_path / "in.jsonl", tmp_path / "out.parquet", tmp_path / "s.json"
    write_jsonl(source, requests)
    with running_server(ServerConfig(seed=6, error_503_rate=0.05)) as server:
        code = main(["bulk", str(source), "-o", str(out), "--ray", "--actors", "2",
                     "--concurrency", "4", "--retry-initial-delay", "0", "--base-url",
                     server.base_url, "--json-summary", str(summary)])  # fmt: skip
        assert server.stats()["max_in_flight"] <= 4
    err = capsys.readouterr().err
    assert code == 0, err
    assert "200 ok · 0 failed" in err
    table = pq.read_table(out)
    assert table.column_names == ["id", "scores", "error", "error_type"]
    rows = table.to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in requests)
    by_id = {r["id"]: r for r in requests}
    for row in rows:
        assert row["scores"] == expected_scores(by_id[row["id"]])
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["requests_ok"] == 200
    assert figures["documents"] == sum(len(r["documents"]) for r in requests)


def test_usage_errors_name_the_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"id": 1, "query": "q", "documents": ["d"]}])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.parquet").write_bytes(b"")
    for argv, message in [
        (["-", "-o", "o"], "--ray reads a file or directory, not stdin"),
        ([str(source), "-o", "o", "--retry-failed"], "--retry-failed does not apply with --ray"),
        ([str(source), "-o", "o", "--actors", "0"], "--actors must be >= 1, got 0"),
        ([str(source), "-o", "o", "--actor-cpus", "0"], "--actor-cpus must be > 0"),
        ([str(source), "-o", "o", "--actors", "5", "--concurrency", "4"],
         "--concurrency 4 cannot be divided across 5 actors"),
        ([str(source), "-o", str(tmp_path / "full")], "exists; --ray writes a new Parquet"),
    ]:  # fmt: skip
        assert main(["bulk", *argv, "--ray"]) == 2
        assert message in capsys.readouterr().err
