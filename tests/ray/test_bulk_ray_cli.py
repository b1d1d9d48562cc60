"""``rerank-async bulk --ray`` on the session's Ray cluster, against the real local server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rerank_async.cli import main
from rerank_async.server import ServerConfig, running_server

from ..bulk.test_bulk_cli import expected_scores, make_requests, read_records, write_jsonl

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
    assert table.column_names == ["id", "fingerprint", "scores", "error", "error_type"]
    rows = table.to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in requests)
    by_id = {r["id"]: r for r in requests}
    for row in rows:
        assert row["scores"] == expected_scores(by_id[row["id"]])
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["requests_ok"] == 200
    assert figures["documents"] == sum(len(r["documents"]) for r in requests)

    # The fingerprints are bulk's own: a local run of the same lines writes the same ones.
    with running_server(ServerConfig(seed=6)) as server:
        local = tmp_path / "local.jsonl"
        assert main(["bulk", str(source), "-o", str(local), "-q", "--base-url",
                     server.base_url]) == 0  # fmt: skip
        by_id = {r["id"]: r["fingerprint"] for r in read_records(local)}
        assert {r["id"]: r["fingerprint"] for r in rows} == by_id

        # A second run refuses the output; --overwrite replaces it.
        argv = ["bulk", str(source), "-o", str(out), "--ray", "--actors", "1", "--concurrency",
                "2", "--base-url", server.base_url, "-q"]  # fmt: skip
        assert main(argv) == 2
        assert "pass --overwrite to replace it" in capsys.readouterr().err
        assert main([*argv, "--overwrite"]) == 0
    assert sorted(pq.read_table(out).column("id").to_pylist()) == sorted(by_id)


def test_usage_errors_name_the_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"id": 1, "query": "q", "documents": ["d"]}])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.parquet").write_bytes(b"")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    os.mkfifo(tmp_path / "fifo")
    for argv, message in [
        (["-", "-o", "o"], "--ray reads a file or directory, not stdin"),
        ([str(source), "-o", "o", "--retry-failed"], "--retry-failed does not apply with --ray"),
        ([str(source), "-o", "o", "--actors", "0"], "--actors must be >= 1, got 0"),
        ([str(source), "-o", "o", "--actor-cpus", "0"], "--actor-cpus must be > 0"),
        ([str(source), "-o", "o", "--actors", "5", "--concurrency", "4"],
         "--concurrency 4 cannot be divided across 5 actors"),
        ([str(source), "-o", str(tmp_path / "full")], "exists; --ray writes a new Parquet"),
        ([str(source), "-o", "o", "--strict-resume"], "--strict-resume does not apply"),
        ([str(source), "-o", "/dev/full"], "the output /dev/full is a character device"),
        ([str(source), "-o", str(tmp_path / "fifo")], "is a pipe (FIFO), not a regular file"),
        ([str(source), "-o", str(tmp_path / "mine"), "--overwrite"],
         "holds more than a Parquet dataset (notes.txt)"),
    ]:  # fmt: skip
        assert main(["bulk", *argv, "--ray"]) == 2
        assert message in capsys.readouterr().err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    assert os.listdir(tmp_path / "full") == ["x.parquet"]
