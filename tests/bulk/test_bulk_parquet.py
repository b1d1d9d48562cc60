"""``rerank-async bulk`` with Parquet input and output: records, resume, a killed subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rerank_async.server import RunningServer, ServerConfig, running_server

from .test_bulk_cli import bulk, expected_scores, make_requests, read_records, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=4)) as running:
        yield running


def write_parquet(path: Path, rows: list[dict[str, Any]], **options: Any) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path, **options)


def read_output(path: Path) -> list[dict[str, Any]]:
    parts = sorted(path.glob("part-*.parquet"))
    assert not list(path.glob(".part-*")), "a temporary part was left behind"
    return [row for part in parts for row in pq.read_table(part).to_pylist()]


def test_parquet_in_parquet_out(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    requests = make_requests(40, seed=1)
    requests[3]["top_k"] = 2
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_parquet(source, requests, row_group_size=7)  # several row groups
    code, _, err = bulk(capsys, str(source), "-o", str(out), "--part-rows", "15",
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert "40 ok · 0 failed · 0 skipped" in err
    assert len(list(out.glob("part-*.parquet"))) == 3  # 15 + 15 + 10
    rows = read_output(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in requests)
    # Every line names the model that scored it, in its own column.
    (model,) = {row["model"] for row in rows}
    assert model
    by_id = {r["id"]: r for r in requests}
    for row in rows:
        request = by_id[row["id"]]
        assert row["scores"] == expected_scores(request)
        top = sorted(range(len(row["scores"])), key=lambda i: (-row["scores"][i], i))
        assert row["ranking"] == top[: request.get("top_k") or len(top)]
        assert row["error_type"] is None
    # The directory reads as one table, the lock file ignored.
    assert pq.read_table(out).num_rows == 40
    assert pq.read_table(out).schema.names == [
        "id", "fingerprint", "scores", "ranking", "input_tokens", "model", "error_type",
        "error_message", "error_status_code", "error_line",
    ]  # fmt: skip


def test_jsonl_to_parquet_and_parquet_to_jsonl(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    requests = make_requests(10, seed=2)
    write_jsonl(tmp_path / "in.jsonl", requests)
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "a.parquet"),
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert sorted(r["id"] for r in read_output(tmp_path / "a.parquet")) == sorted(
        r["id"] for r in requests
    )
    write_parquet(tmp_path / "in.parquet", requests)
    code, _, err = bulk(capsys, str(tmp_path / "in.parquet"), "-o", str(tmp_path / "b.jsonl"),
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    records = read_records(tmp_path / "b.jsonl")
    by_id = {r["id"]: r for r in requests}
    assert all(r["scores"] == expected_scores(by_id[r["id"]]) for r in records)
    assert len(records) == 10


def test_bad_rows_become_error_rows_and_a_rerun_skips_them(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = [
        {"id": 10, "query": "solar", "documents": ["solar panel"]},
        {"id": 20, "query": None, "documents": ["x"]},
        {"id": 10, "query": "solar", "documents": ["again"]},
        {"id": None, "query": "grid", "documents": ["grid home"]},  # the row number: 4
        {"id": 50, "query": "grid", "documents": None},
    ]
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_parquet(source, rows)
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 1
    assert f"{source} line 2: 'query' must be a string, got null" in err
    assert f"{source} line 3: duplicate id 10" in err
    assert f"{source} line 5: 'documents' must be a list, got null" in err
    found = sorted((r["id"], r["error_type"] or "", r["error_line"] or 0) for r in read_output(out))
    assert found == [(4, "", 0), (10, "", 0), (10, "DuplicateId", 3), (20, "InvalidLine", 2),
                     (50, "InvalidLine", 5)]  # fmt: skip
    assert [r["scores"] for r in read_output(out) if r["id"] == 4] == [expected_scores(rows[3])]

    server.reset_stats()
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 1
    assert "0 ok · 0 failed · 5 skipped" in err
    assert "line" not in err.split("Summary")[0]  # nothing reported twice
    assert server.stats()["requests"] == 0
    assert len(read_output(out)) == 5


def test_mixed_id_types_stop_with_one_line(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, [{"id": "a", "query": "q", "documents": ["d"]},
                         {"query": "q", "documents": ["e"]}])  # fmt: skip
    code, _, err = bulk(capsys, str(source), "-o", str(tmp_path / "o.parquet"), "--max-pending",
                        "1", base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "Parquet output needs ids of one type: id 2 is an integer" in err
    assert "Traceback" not in err
    assert [r["id"] for r in read_output(tmp_path / "o.parquet")] == ["a"]  # kept, committed


def test_setup_errors_are_one_line(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_parquet(tmp_path / "in.parquet", [{"id": 1, "text": "x"}])
    code, _, err = bulk(capsys, str(tmp_path / "in.parquet"), "-o", str(tmp_path / "o.parquet"),
                        base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "no 'query' column (columns: id, text)" in err
    assert not (tmp_path / "o.parquet").exists()  # failed before anything was made
    write_jsonl(tmp_path / "in.jsonl", [{"query": "q", "documents": ["d"]}])
    (tmp_path / "file.parquet").write_bytes(b"not a directory")
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "file.parquet"),
                        base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "is a file; Parquet output is a directory of part files" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = bulk(capsys, str(empty), "-o", str(tmp_path / "x.parquet"),
                        base_url=server.base_url)  # fmt: skip
    assert "a directory with no .parquet files" in err
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "x.parquet"),
                        "--part-rows", "0", base_url=server.base_url)  # fmt: skip
    assert code == 2
    assert "--part-rows must be >= 1" in err


def test_resume_and_retry_failed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    requests = make_requests(12, seed=3)
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_parquet(source, requests[:6])
    with running_server(ServerConfig(api_key="right")) as guarded:
        url = guarded.base_url

        def run(*argv: str) -> tuple[int, str]:
            code, _, err = bulk(capsys, str(source), "-o", str(out), "--part-rows", "4", *argv,
                                base_url=url)  # fmt: skip
            return code, err

        assert run("--api-key", "right")[0] == 0
        write_parquet(source, requests)  # six more rows, sent with a wrong key: they fail
        code, err = run("--api-key", "wrong")
        assert code == 1
        assert "0 ok · 6 failed · 6 skipped" in err
        failed = [r for r in read_output(out) if r["error_type"]]
        assert {(r["error_type"], r["error_status_code"]) for r in failed} == {
            ("AuthenticationError", 401)
        }
        # A part a killed run left half-written is removed; resuming skips the failures.
        (out / ".part-abc.tmp").write_bytes(b"PAR1 half a file")
        guarded.reset_stats()
        code, err = run("--api-key", "right")
        assert code == 1
        assert "removed .part-abc.tmp" in err
        assert "error records from earlier runs" in err
        assert guarded.stats()["requests"] == 0

        code, err = run("--api-key", "right", "--retry-failed")
        assert code == 0, err
        assert "6 ok · 0 failed · 6 skipped" in err
        assert guarded.stats()["requests"] == 6
    rows = read_output(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in requests)
    assert not any(r["error_type"] for r in rows)


def test_a_second_run_on_the_same_output_is_refused(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import fcntl

    out = tmp_path / "out.parquet"
    out.mkdir()
    write_jsonl(tmp_path / "in.jsonl", [{"query": "q", "documents": ["d"]}])
    with open(out / ".rerank-async.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(out),
                            base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "another rerank-async bulk run is writing to this output" in err


# -- a real process, killed -----------------------------------------------------------------------


@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_halfway_then_rerun_gives_every_id_once(
    tmp_path: Path, kill: signal.Signals
) -> None:
    requests = make_requests(300, seed=8)
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_parquet(source, requests)
    command = [
        sys.executable, "-m", "rerank_async.cli", "bulk", str(source), "-o", str(out),
        "--concurrency", "4", "--batch-size", "16", "--part-rows", "10",
    ]  # fmt: skip
    with running_server(ServerConfig(latency_ms=15, capacity=4, seed=2)) as slow:
        argv = [*command, "--base-url", slow.base_url]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(list(out.glob("part-*.parquet"))) < 4:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no parts were written"
            time.sleep(0.005)
        process.send_signal(kill)
        _, stderr = process.communicate(timeout=30)
        before = read_output(out)  # every part that exists is whole
        if kill == signal.SIGINT:
            assert process.returncode == 130, stderr
            assert b"run the same command again to resume" in stderr
        else:
            assert process.returncode == -signal.SIGKILL
        assert 40 <= len(before) < 300
        assert len({r["id"] for r in before}) == len(before)

        summary = tmp_path / "summary.json"
        rerun = subprocess.run([*argv, "--json-summary", str(summary)], capture_output=True,
                               timeout=120, check=False)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    ids = [r["id"] for r in read_output(out)]
    assert len(ids) == len(set(ids)), "a request was answered twice"
    assert set(ids) == {r["id"] for r in requests}, "a request is missing"
    figures = json.loads(summary.read_text(encoding="utf-8"))
    assert figures["requests_skipped"] == len(before)
    assert figures["requests_ok"] == 300 - len(before)
    assert os.path.exists(out / ".rerank-async.lock")


# -- files that are not ours, fingerprints --------------------------------------------------------


@pytest.mark.parametrize("kind", ["notes", "foreign-part", "fifo", "file"])
def test_a_directory_that_is_not_ours_is_left_as_it_is(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path, kind: str
) -> None:
    write_jsonl(tmp_path / "in.jsonl", make_requests(3, seed=1))
    out = tmp_path / "out.parquet"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "file":
        out.write_bytes(b"PAR1 not a directory")
    else:
        out.mkdir()
        if kind == "notes":
            (out / "notes.txt").write_text("mine")
        write_parquet(out / "part-000001.parquet", [{"a": 1, "b": "x"}])
    listing = sorted(os.listdir(out)) if out.is_dir() else None
    content = out.read_bytes() if kind == "file" else None
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(out),
                        base_url=server.base_url)  # fmt: skip
    assert code == (2 if kind == "fifo" else 1)
    assert "Traceback" not in err
    assert str(out) in err
    if kind == "fifo":
        assert "is a pipe (FIFO), not a regular file" in err
    elif kind == "file":
        assert out.read_bytes() == content
    else:
        assert "is not a rerank-async bulk output" in err
        assert sorted(os.listdir(out)) == listing  # not even a lock file was made


def test_overwrite_replaces_a_dataset_but_never_empties_a_folder(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "in.jsonl", make_requests(3, seed=1))
    out = tmp_path / "out.parquet"
    out.mkdir()
    write_parquet(out / "part-000001.parquet", [{"a": 1}])
    (out / "_SUCCESS").write_bytes(b"")
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(out), "--overwrite",
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert sorted(r["id"] for r in read_output(out)) == ["r0", "r1", "r2"]
    (out / "README").write_text("mine")
    listing = sorted(os.listdir(out))
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(out), "--overwrite",
                        base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "holds more than a Parquet dataset (README)" in err
    assert sorted(os.listdir(out)) == listing


def test_changed_rows_are_rescored_and_strict_resume_names_them(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    requests = make_requests(6, seed=3, sizes=[3, 3, 4, 2, 5, 1])
    source, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_parquet(source, requests)
    assert bulk(capsys, str(source), "-o", str(out), "-q", base_url=server.base_url)[0] == 0
    requests[0]["documents"] = list(reversed(requests[0]["documents"]))
    requests[1]["documents"] = [*requests[1]["documents"], "solar panel roof", "grid battery"]
    write_parquet(source, requests)
    parts = sorted(os.listdir(out))
    code, _, err = bulk(capsys, str(source), "-o", str(out), "--strict-resume",
                        base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "--strict-resume: 2 records" in err
    assert '(ids "r0", "r1")' in err
    assert sorted(os.listdir(out)) == parts

    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 0, err
    assert "2 ok · 0 failed · 4 skipped" in err
    rows = read_output(out)
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in requests)  # once each
    by_id = {r["id"]: r for r in requests}
    for row in rows:
        assert row["scores"] == expected_scores(by_id[row["id"]]), row["id"]
        assert row["fingerprint"].startswith("b2v1:")


def test_parts_without_fingerprints_resume_with_a_warning(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_jsonl(tmp_path / "in.jsonl", make_requests(4, seed=2))
    out = tmp_path / "out.parquet"
    assert bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(out), "-q",
                base_url=server.base_url)[0] == 0  # fmt: skip
    for part in out.glob("part-*.parquet"):  # as an older version wrote them
        pq.write_table(pq.read_table(part).drop_columns(["fingerprint"]), part)
    code, _, err = bulk(capsys, str(tmp_path / "in.jsonl"), "-o", str(out),
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert "4 records have no fingerprint" in err
    assert "0 ok · 0 failed · 4 skipped" in err
