"""bulk's pieces without a server: input lines, output records, the output file on disk."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from rerank_async import RerankRequest
from rerank_async.cli._bulk_input import BadLine, LineMeta, count_lines, parse_line
from rerank_async.cli._bulk_output import OutputFile
from rerank_async.cli._bulk_records import error_record, success_record


def parse(value: object, line: int = 7, **kwargs: Any) -> RerankRequest | BadLine | None:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_line(raw, line, **kwargs)


# -- input lines ----------------------------------------------------------------------------------


def test_string_documents() -> None:
    request = parse({"id": "a", "query": "q", "documents": ["x", "y"], "top_k": 1})
    assert isinstance(request, RerankRequest)
    assert (request.id, request.query, list(request.documents), request.top_k) == (
        "a", "q", ["x", "y"], 1,
    )  # fmt: skip
    assert request.metadata == LineMeta(line=7, fields=None)


def test_object_documents_carry_their_other_fields() -> None:
    documents = ["plain", {"text": "t", "url": "u", "rank": 3}, {"text": "s"}]
    line = {"query": "q", "documents": documents}
    request = parse(line, line=12)
    assert isinstance(request, RerankRequest)
    assert request.id == 12  # no id: the line number stands in
    assert list(request.documents) == ["plain", "t", "s"]
    assert request.metadata == LineMeta(line=12, fields=[{}, {"url": "u", "rank": 3}, {}])


@pytest.mark.parametrize(
    ("line", "default", "expected"),
    [({"query": "q", "documents": []}, 5, 5), ({"query": "q", "documents": [], "top_k": 2}, 5, 2),
     ({"query": "q", "documents": [], "id": None}, None, None)],
)  # fmt: skip
def test_top_k_default_and_null_id(
    line: dict[str, Any], default: int | None, expected: int | None
) -> None:
    request = parse(line, default_top_k=default)
    assert isinstance(request, RerankRequest)
    assert request.top_k == expected
    assert request.id == 7


@pytest.mark.parametrize("raw", [b"", b"   ", b"\r", b"\t \r"])
def test_blank_lines_are_skipped(raw: bytes) -> None:
    assert parse_line(raw, 3) is None


@pytest.mark.parametrize(
    ("raw", "bad_id", "message"),
    [
        (b'{"query": "q", "documents": [', 7, "not valid JSON"),
        (b'{"query": "caf\xe9", "documents": []}', 7, "not valid JSON"),  # Latin-1, not UTF-8
        (b'["q", ["a"]]', 7, "expected a JSON object, got a list"),
        (b'{"id": 1.5, "query": "q", "documents": []}', 7, "'id' must be a string or an integer"),
        (b'{"id": true, "query": "q", "documents": []}', 7, "got a boolean"),
        (b'{"id": "a", "documents": ["x"]}', "a", "missing 'query'"),
        (b'{"id": 4, "query": 4, "documents": ["x"]}', 4, "'query' must be a string, got a number"),
        (b'{"query": "  ", "documents": ["x"]}', 7, "'query' must not be blank"),
        (b'{"query": "q"}', 7, "missing 'documents'"),
        (b'{"query": "q", "documents": "x"}', 7, "'documents' must be a list, got a string"),
        (b'{"query": "q", "documents": {"text": "x"}}', 7, "must be a list, got an object"),
        (b'{"query": "q", "documents": ["a", 3]}', 7, "documents[1] must be a string or an object"),
        (b'{"query": "q", "documents": [null]}', 7, "got null"),
        (b'{"query": "q", "documents": [{"body": "x"}]}', 7, "documents[0] has no 'text'"),
        (b'{"query": "q", "documents": [{"text": 1}]}', 7, "documents[0] has a number 'text'"),
        (b'{"query": "q", "documents": [{"text": "x", "score": 1}]}', 7, "field 'score'"),
        (b'{"query": "q", "documents": [{"text": "x", "index": 1}]}', 7, "field 'index'"),
        (b'{"query": "q", "documents": [], "top_k": 0}', 7, "'top_k' must be an integer >= 1"),
        (b'{"query": "q", "documents": [], "top_k": "3"}', 7, 'got "3"'),
    ],
)
def test_malformed_lines(raw: bytes, bad_id: object, message: str) -> None:
    bad = parse_line(raw, 7)
    assert isinstance(bad, BadLine)
    assert bad.line == 7
    assert bad.id == bad_id  # the line's own id when it could be read
    assert message in bad.message
    assert "\n" not in bad.message


def test_count_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    for content, lines in ((b"", 0), (b"a\n", 1), (b"a\nb", 2), (b"a\n\nb\n", 3)):
        path.write_bytes(content)
        assert count_lines(str(path)) == lines


# -- records --------------------------------------------------------------------------------------


def test_success_record_ranks_and_cuts_to_top_k() -> None:
    meta = LineMeta(line=1, fields=[{"url": "a"}, {}, {"url": "c", "n": [1]}])
    record = success_record("r", [0.2, 0.9, 0.2], top_k=2, meta=meta, input_tokens=12)
    assert record == {
        "id": "r",
        "scores": [0.2, 0.9, 0.2],  # input order, never cut
        "ranking": [1, 0],  # best first; a tie keeps the lower index first
        "documents": [{"index": 1, "score": 0.9}, {"index": 0, "score": 0.2, "url": "a"}],
        "input_tokens": 12,
    }
    assert next(iter(record)) == "id"


def test_success_record_of_plain_strings_has_no_documents() -> None:
    record = success_record(3, [0.1, 0.5], top_k=None, meta=LineMeta(line=3), input_tokens=None)
    assert record == {"id": 3, "scores": [0.1, 0.5], "ranking": [1, 0]}


def test_error_record() -> None:
    record = error_record(
        "x", type_name="RateLimitError", message="HTTP 429", line=4, status_code=429
    )
    assert record == {
        "id": "x",
        "error": {"type": "RateLimitError", "message": "HTTP 429", "status_code": 429, "line": 4},
    }
    assert list(record) == ["id", "error"]


# -- the output file ------------------------------------------------------------------------------


def open_output(path: Path, *, retry_failed: bool = False) -> tuple[OutputFile, Any, list[str]]:
    warnings: list[str] = []
    output, done = OutputFile.open(str(path), retry_failed=retry_failed, warn=warnings.append)
    return output, done, warnings


def test_each_record_is_one_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    output, done, warnings = open_output(path)
    assert (done.ok, done.failed, warnings) == ({}, {}, [])
    output.write({"id": "é", "scores": [0.5], "ranking": [0]})
    output.write({"id": 2, "error": {"type": "X", "message": "m\nn"}})
    output.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["id"] for line in lines[:-1]] == ["é", 2]
    assert lines[0].startswith('{"id":"é",'.encode())  # compact, UTF-8, id first


def test_lone_surrogates_are_written_escaped(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    output, _, _ = open_output(path)
    output.write({"id": "\ud800", "scores": []})
    output.close()
    assert json.loads(path.read_bytes())["id"] == "\ud800"


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b'{"id":1,"scores":[]}\n{"id":2,"sco', b'{"id":1,"scores":[]}\n'),
        (b'{"id":1,"sco', b""),
        (b'{"id":1,"scores":[]}\n' + b"\0" * 4000, b'{"id":1,"scores":[]}\n'),  # power cut
        (
            b'{"id":1,"scores":[]}\n{"id":2,"scores":[' + b"0.5," * 50_000,  # > 1 block
            b'{"id":1,"scores":[]}\n',
        ),
    ],
)
def test_an_incomplete_last_line_is_cut_with_a_warning(
    tmp_path: Path, content: bytes, kept: bytes
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    output, done, warnings = open_output(path)
    output.close()
    assert path.read_bytes() == kept
    assert len(warnings) == 1
    assert "removed an incomplete last line" in warnings[0]
    assert f"({len(content) - len(kept):,} bytes)" in warnings[0]
    assert set(done.ok) == ({1} if kept else set())


def test_resume_reads_every_id(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    records = [
        {"id": 1, "scores": [], "ranking": []},
        {"id": 'a "quoted" \\ id', "scores": [0.1], "ranking": [0]},
        {"id": -3, "error": {"type": "ServerError", "message": "HTTP 503", "line": 9}},
        {"id": "d", "error": {"type": "DuplicateId", "message": "dup", "line": 12}},
        {"id": "e", "error": "a hand-written error"},
    ]
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
    # A record written by hand, with spaces, still counts.
    text += '{ "scores": [], "id": "hand" }\n\n'
    path.write_text(text, encoding="utf-8")
    output, done, warnings = open_output(path)
    output.close()
    assert warnings == []
    assert set(done.ok) == {1, 'a "quoted" \\ id', "hand"}
    assert set(done.failed) == {-3, "e"}
    assert done.duplicate_lines == {12}  # a duplicate's record marks its line, not its id
    assert (done.records, done.error_records) == (6, 3)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2 is not valid JSON"),
        ('{"scores": []}', "line 2 has no string or"),
        ('{"id": 3, "query": "q"}', "line 2 has neither 'scores' nor 'error'"),
    ],
)
def test_an_output_that_is_not_ours_is_refused(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id":1,"scores":[]}\n' + line + "\n", encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(ValueError, match=message):
        open_output(path)
    assert path.read_bytes() == before


def test_retry_failed_drops_error_records_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    ok_lines = ['{"id":1,"scores":[0.5],"ranking":[0]}\n', '{ "id": "b", "scores": [] }\n']
    error_lines = [
        '{"id":2,"error":{"type":"ServerError","message":"HTTP 503","line":2}}\n',
        '{"error": {"type": "X", "message": "m"}, "id": "c"}\n',
    ]
    path.write_text(ok_lines[0] + error_lines[0] + ok_lines[1] + error_lines[1], encoding="utf-8")
    path.chmod(0o640)
    inode = path.stat().st_ino
    output, done, _ = open_output(path, retry_failed=True)
    output.write({"id": 2, "scores": [], "ranking": []})  # appends to the new file
    output.close()
    appended = '{"id":2,"scores":[],"ranking":[]}\n'
    assert path.read_text(encoding="utf-8") == "".join(ok_lines) + appended
    assert set(done.ok) == {1, "b"}
    assert done.failed == {}
    assert path.stat().st_ino != inode  # replaced, not edited in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary file left behind


def test_two_runs_cannot_share_an_output(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first, _, _ = open_output(path)
    try:
        with pytest.raises(OSError, match="another rerank-async bulk run"):
            open_output(path)
    finally:
        first.close()
    second, _, _ = open_output(path)  # the lock goes with the first run
    second.close()
