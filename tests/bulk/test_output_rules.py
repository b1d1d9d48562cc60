"""bulk never alters a file it did not write, and a rerun never keeps a stale score.

Files that are not bulk's (someone's notes, an input file, a device, a pipe) are refused
before a byte changes; records carry a fingerprint of what they answered, so a line whose
request changed under the same id is scored again (or, with --strict-resume, named).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rerank_async.cli._bulk_output import OutputFile
from rerank_async.server import RunningServer, ServerConfig, running_server

from .test_bulk_cli import bulk, expected_scores, make_requests, read_records, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=5)) as running:
        yield running


def run_cli(
    *argv: str, limit_bytes: int | None = None, file_size: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """``rerank-async`` as a subprocess, with an address-space or file-size limit if given."""

    def limit() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        if file_size is not None:
            # A write past the limit then writes what fits and fails, as on a full disk
            # (SIGXFSZ ignored, as Python itself does).
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return subprocess.run(
        [sys.executable, "-m", "rerank_async.cli", *argv],
        capture_output=True,
        timeout=timeout,
        preexec_fn=limit,
        check=False,
    )


# -- files that are not ours ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"shopping: milk, eggs\nremember the dentist",  # no final newline: nothing is "cut"
        b"\xff\xfe binary \x00 data",
        b'{"id": "q1", "query": "solar", "documents": ["a"]}\n',  # an input file, not an output
        b'{"id":1,"scores":[0.5],"ranking":[0]}\nthen my own notes\n',
    ],
    ids=["notes", "binary", "input-file", "record-then-notes"],
)
def test_a_file_that_is_not_ours_is_left_byte_identical(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes
) -> None:
    source, notes = tmp_path / "in.jsonl", tmp_path / "notes.txt"
    write_jsonl(source, make_requests(3, seed=1))
    notes.write_bytes(content)
    before = os.stat(notes)
    code, _, err = bulk(capsys, str(source), "-o", str(notes), base_url=server.base_url)
    assert code == 1
    assert f"{notes} is not a rerank-async bulk output" in err
    assert "--overwrite" in err
    assert "Traceback" not in err
    assert notes.read_bytes() == content
    assert os.stat(notes).st_ino == before.st_ino
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "notes.txt"]  # no temporary file


def test_overwrite_replaces_a_file_that_is_not_ours(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source, notes = tmp_path / "in.jsonl", tmp_path / "notes.txt"
    requests = make_requests(3, seed=1)
    write_jsonl(source, requests)
    notes.write_bytes(b"old notes\n")
    code, _, err = bulk(capsys, str(source), "-o", str(notes), "--overwrite",
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert "--overwrite: emptied it" in err
    assert sorted(r["id"] for r in read_records(notes)) == ["r0", "r1", "r2"]


def test_dev_full_is_refused_up_front_under_a_memory_limit(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, make_requests(2, seed=1))
    done = run_cli(
        "bulk", str(source), "-o", "/dev/full", "--base-url", "http://127.0.0.1:9/v1",
        limit_bytes=1 << 31, timeout=60,
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "the output /dev/full is a character device, not a regular file" in err
    assert "Traceback" not in err
    assert "MemoryError" not in err
    assert err.count("\n") == 1


def test_a_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    source, fifo = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(source, make_requests(2, seed=1))
    os.mkfifo(fifo)
    done = run_cli("bulk", str(source), "-o", str(fifo), "--base-url", "http://127.0.0.1:9/v1",
                   timeout=60)  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert f"the output {fifo} is a pipe (FIFO), not a regular file" in err
    assert "Traceback" not in err


def test_an_output_that_turns_into_a_device_after_the_check_is_refused(tmp_path: Path) -> None:
    # The path is checked up front; the open descriptor is checked again (a race).
    with pytest.raises(ValueError, match="is a character device"):
        OutputFile.open("/dev/null", retry_failed=False, warn=lambda _: None)


def test_a_full_disk_gives_one_line_and_a_complete_rerun(
    server: RunningServer, tmp_path: Path
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests = make_requests(40, seed=2)
    write_jsonl(source, requests)
    argv = ["bulk", str(source), "-o", str(out), "--base-url", server.base_url, "-q"]
    full = run_cli(*argv, file_size=4096)  # room for ~15 records
    err = full.stderr.decode()
    assert full.returncode == 1, err
    assert str(out) in err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    data = out.read_bytes()
    assert data.endswith(b"\n")  # the record cut by the full disk was taken back out
    before = [json.loads(line) for line in data.splitlines()]
    assert 0 < len(before) < 40

    rerun = run_cli(*argv)
    assert rerun.returncode == 0, rerun.stderr
    ids = [r["id"] for r in read_records(out)]
    assert sorted(ids) == sorted(r["id"] for r in requests)  # every id once


# -- fingerprints ---------------------------------------------------------------------------------


def changed(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same ids; q0's documents swapped, q1 grown from its documents to two more."""
    edited = [dict(r) for r in requests]
    edited[0]["documents"] = list(reversed(edited[0]["documents"]))
    edited[1]["documents"] = [*edited[1]["documents"], "solar panel roof", "grid battery"]
    return edited


@pytest.fixture
def first_run(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> tuple[Path, Path, list[dict[str, Any]]]:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests = make_requests(6, seed=3, sizes=[3, 3, 4, 2, 5, 1])
    write_jsonl(source, requests)
    code, _, err = bulk(capsys, str(source), "-o", str(out), "-q", base_url=server.base_url)
    assert code == 0, err
    write_jsonl(source, changed(requests))
    return source, out, changed(requests)


def test_changed_documents_under_the_same_ids_are_rescored(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    first_run: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    source, out, requests = first_run
    server.reset_stats()
    summary = out.with_name("summary.json")
    code, _, err = bulk(capsys, str(source), "-o", str(out), "--json-summary", str(summary),
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert "2 ok · 0 failed · 4 skipped" in err
    assert "rescored (input changed)" in err
    assert server.stats()["requests"] == 2
    records = read_records(out)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in requests)  # once each
    by_id = {r["id"]: r for r in requests}
    for record in records:
        assert record["scores"] == expected_scores(by_id[record["id"]]), record["id"]
    assert json.loads(summary.read_text())["requests_rescored"] == 2


def test_strict_resume_names_the_stale_records_and_keeps_them(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    first_run: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    source, out, _ = first_run
    before = out.read_bytes()
    server.reset_stats()
    code, _, err = bulk(capsys, str(source), "-o", str(out), "--strict-resume",
                        base_url=server.base_url)  # fmt: skip
    assert code == 1
    assert "--strict-resume: 2 records" in err
    assert '(ids "r0", "r1")' in err
    assert server.stats()["requests"] == 0
    assert out.read_bytes() == before


def test_a_model_change_rescores_everything(
    server: RunningServer,
    capsys: pytest.CaptureFixture[str],
    first_run: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    source, out, _ = first_run
    code, _, err = bulk(capsys, str(source), "-o", str(out), "--model", "other/model", "-q",
                        "--json-summary", str(out.with_name("s.json")),
                        base_url=server.base_url)  # fmt: skip
    assert code == 0, err
    assert json.loads(out.with_name("s.json").read_text())["requests_rescored"] == 6
    assert len(read_records(out)) == 6


def test_old_outputs_without_fingerprints_resume_with_a_warning(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests = make_requests(5, seed=4)
    write_jsonl(source, requests)
    assert bulk(capsys, str(source), "-o", str(out), "-q", base_url=server.base_url)[0] == 0
    old = [{k: v for k, v in r.items() if k != "fingerprint"} for r in read_records(out)]
    out.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in old))
    server.reset_stats()
    code, _, err = bulk(capsys, str(source), "-o", str(out), base_url=server.base_url)
    assert code == 0, err
    assert "5 records have no fingerprint" in err
    assert "0 ok · 0 failed · 5 skipped" in err
    assert server.stats()["requests"] == 0


def test_a_run_stopped_before_its_tidy_up_keeps_the_newer_record(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    lines = [
        {"id": "a", "fingerprint": "b2v1:old", "scores": [0.1], "ranking": [0]},
        {"id": "b", "fingerprint": "b2v1:b", "scores": [0.2], "ranking": [0]},
        {"id": "b", "error": {"type": "DuplicateId", "message": "dup", "line": 4}},
        {"id": "a", "fingerprint": "b2v1:new", "scores": [0.9], "ranking": [0]},
    ]
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))
    warnings: list[str] = []
    output, done = OutputFile.open(str(path), retry_failed=False, warn=warnings.append)
    output.close()
    assert done.ok == {"a": "b2v1:new", "b": "b2v1:b"}
    assert done.duplicate_lines == {4}
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["b", "b", "a"]
    assert "1 ids had an old record beside a newer one" in warnings[0]


def test_a_failed_line_that_changed_is_rescored_and_its_error_record_goes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    requests = make_requests(4, seed=6, sizes=[2, 3, 2, 3])
    write_jsonl(source, requests)
    with running_server(ServerConfig(api_key="right")) as guarded:
        url = guarded.base_url
        code, _, _ = bulk(capsys, str(source), "-o", str(out), "--api-key", "wrong", base_url=url)
        assert code == 1
        assert all("error" in r for r in read_records(out))
        write_jsonl(source, changed(requests))  # r0 and r1 changed: they run again
        code, _, err = bulk(capsys, str(source), "-o", str(out), "--api-key", "right", "-q",
                            base_url=url)  # fmt: skip
        assert code == 1  # r2 and r3 keep their error records (a plain rerun keeps errors)
        assert "2 error records" in err
    records = {r["id"]: r for r in read_records(out)}
    assert len(records) == 4 == len(read_records(out))
    assert {i for i, r in records.items() if "error" not in r} == {"r0", "r1"}
