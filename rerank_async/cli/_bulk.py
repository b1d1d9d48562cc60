"""``rerank-async bulk``: rerank a JSONL file of requests, resumably, with progress and a summary.

One input line is one request, ``{"id"?, "query", "documents": [...], "top_k"?}``; one
output line is one record, written as soon as its request is done (so in completion order,
not input order)::

    {"id": 7, "scores": [...input order...], "ranking": [best index first, ...]}
    {"id": 8, "error": {"type": "RateLimitError", "message": "...", "line": 8}}

Crash safety rests on two rules. Each record is one ``os.write`` of its complete bytes to a
file opened with ``O_APPEND``, with no buffering in between, so a process killed between
writes leaves whole lines only, and Ctrl-C (handled, never raised mid-write) always does.
Only ``kill -9`` landing inside the write of a record larger than a page can leave part of
it (Linux checks for fatal signals between the pages of a write), and only as the last
line: so a run that finds an incomplete last line (that, an older buffered writer, a full
disk) cuts it off and warns before it appends anything. Resuming then only needs the set
of ids already in the output. See ``docs/bulk.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import signal
import stat
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any, Final, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskStatus
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from .._batching import rank_indices
from .._client import RerankClient
from .._exceptions import APIStatusError
from .._many import RerankOutcome, RerankRequest
from ._main import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from ._output import percentile, stderr_console, summary_table

__all__ = [
    "BadLine",
    "BulkSummary",
    "LineMeta",
    "OutputFile",
    "count_lines",
    "error_record",
    "parse_line",
    "run_bulk",
    "success_record",
]

# Input is read in chunks of this size and split into lines; one line may span chunks.
_CHUNK_BYTES: Final = 1 << 20
# Fields of an input document object that the ranked output entries use themselves.
RESERVED_DOCUMENT_FIELDS: Final = ("index", "score")
# Latency percentiles are exact up to this many requests, then estimated from a uniform
# sample of this size (reservoir sampling), so memory stays flat on any input.
_LATENCY_SAMPLE: Final = 20_000
# Malformed lines reported one by one on stderr before the rest are only counted.
_MAX_LINE_REPORTS: Final = 20
EXIT_TERMINATED: Final = 128 + signal.SIGTERM

# Error types of records that come from the input rather than from a request.
INVALID_LINE: Final = "InvalidLine"
DUPLICATE_ID: Final = "DuplicateId"

RequestId = str | int


# -- input ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineMeta:
    """What ``rerank_many`` carries back with each request: where it came from.

    Attributes:
        line: 1-based line number in the input.
        fields: Per document, its fields other than ``text``; ``None`` when every
            document was a plain string.
    """

    line: int
    fields: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    """An input line that is not a valid request; it becomes an error record.

    Attributes:
        id: The line's own id when it could be read, else its line number.
        line: 1-based line number.
        message: What is wrong, one line.
        type: ``InvalidLine`` or ``DuplicateId``.
    """

    id: RequestId
    line: int
    message: str
    type: str = INVALID_LINE


def parse_line(
    raw: bytes, line: int, *, default_top_k: int | None = None
) -> RerankRequest | BadLine | None:
    """Parse one input line.

    Args:
        raw: The line's bytes, without its newline.
        line: Its 1-based line number, which is also the id of a line without one.
        default_top_k: ``top_k`` for a line that gives none.

    Returns:
        The request (its ``metadata`` a `LineMeta`), a `BadLine`, or ``None`` for a
        blank line.
    """
    text = raw.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError for bad UTF-8
        return BadLine(line, line, f"not valid JSON: {_one_line(error)}")
    if not isinstance(value, dict):
        return BadLine(line, line, f"expected a JSON object, got {_json_type(value)}")

    raw_id = value.get("id")
    request_id: RequestId = line
    if raw_id is not None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            return BadLine(
                line, line, f"'id' must be a string or an integer, got {_json_type(raw_id)}"
            )
        request_id = raw_id

    def bad(message: str) -> BadLine:
        return BadLine(request_id, line, message)

    if "query" not in value:
        return bad("missing 'query'")
    query = value["query"]
    if not isinstance(query, str):
        return bad(f"'query' must be a string, got {_json_type(query)}")
    if not query.strip():
        return bad("'query' must not be blank")

    if "documents" not in value:
        return bad("missing 'documents'")
    documents = value["documents"]
    if not isinstance(documents, list):
        return bad(f"'documents' must be a list, got {_json_type(documents)}")
    texts: list[str] = []
    fields: list[dict[str, Any]] | None = None
    for index, document in enumerate(documents):
        if isinstance(document, str):
            texts.append(document)
            if fields is not None:
                fields.append({})
            continue
        if not isinstance(document, dict):
            return bad(
                f"documents[{index}] must be a string or an object with 'text', "
                f"got {_json_type(document)}"
            )
        document_text = document.get("text")
        if not isinstance(document_text, str):
            found = "no 'text'" if "text" not in document else f"{_json_type(document_text)} 'text'"
            return bad(f"documents[{index}] has {found}; it needs a string 'text'")
        reserved = [name for name in RESERVED_DOCUMENT_FIELDS if name in document]
        if reserved:
            return bad(
                f"documents[{index}] has a field {reserved[0]!r}, which the output uses for its "
                "own value; rename it"
            )
        if fields is None:
            fields = [{} for _ in texts]
        texts.append(document_text)
        fields.append({key: item for key, item in document.items() if key != "text"})

    top_k = value.get("top_k")
    if top_k is None:
        top_k = default_top_k
    elif isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        return bad(f"'top_k' must be an integer >= 1, got {json.dumps(top_k)}")
    return RerankRequest(
        query=query,
        documents=texts,
        id=request_id,
        top_k=top_k,
        metadata=LineMeta(line=line, fields=fields),
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def count_lines(path: str) -> int:
    """Lines in a file, a last line without a newline included, read in large chunks."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


class _ChunkSource:
    """Chunks of the input, read without stalling the event loop.

    Regular files and in-memory streams are read inline: a read never waits. Pipes and
    terminals are read by a daemon thread, so a slow producer on stdin never blocks the
    requests in flight, and a thread stuck in ``read`` never keeps the process alive.
    """

    def __init__(self, stream: _Binary) -> None:
        self._stream = stream
        self._stopped = False
        self._scope: anyio.CancelScope | None = None
        self._threaded = not _never_blocks(stream)
        self._send, self._receive = anyio.create_memory_object_stream[bytes | OSError](1)
        self._started = False

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called."""
        return self._stopped

    def stop(self) -> None:
        """Stop reading: a pending read returns ``b""`` at once."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def read(self) -> bytes:
        if self._stopped:
            return b""
        if not self._threaded:
            return _read_some(self._stream)
        if not self._started:
            self._started = True
            token = anyio.lowlevel.current_token()
            threading.Thread(
                target=self._pump, args=(token,), name="rerank-async-bulk-input", daemon=True
            ).start()
        with anyio.CancelScope() as scope:
            self._scope = scope
            item = await self._receive.receive()
        self._scope = None
        if scope.cancelled_caught or self._stopped:
            return b""
        if isinstance(item, OSError):
            raise item
        return item

    def _pump(self, token: anyio.lowlevel.EventLoopToken) -> None:
        # os.read on the descriptor, not the buffered file: a daemon thread blocked inside
        # a BufferedReader holds its lock, and interpreter shutdown then aborts on it.
        fd = self._stream.fileno()
        while True:
            item: bytes | OSError
            try:
                item = os.read(fd, _CHUNK_BYTES)
            except OSError as error:
                item = error
            try:
                anyio.from_thread.run(self._send.send, item, token=token)
            except Exception:  # the run is over or stopped reading: nobody wants more
                return
            if not item or isinstance(item, OSError):
                return

    def close(self) -> None:
        self._receive.close()
        self._send.close()


def _read_some(stream: _Binary) -> bytes:
    read1 = getattr(stream, "read1", None)
    data = read1(_CHUNK_BYTES) if read1 is not None else stream.read(_CHUNK_BYTES)
    return bytes(data)


def _never_blocks(stream: _Binary) -> bool:
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory stream
        return True
    return stat.S_ISREG(os.fstat(fd).st_mode)


async def _input_lines(source: _ChunkSource) -> AsyncIterator[tuple[int, bytes]]:
    """``(line number, bytes)`` per input line, newline removed; memory: one chunk + one line."""
    pending = bytearray()
    number = 0
    while chunk := await source.read():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            number += 1
            if pending:
                pending += chunk[start:end]
                line = bytes(pending)
                pending.clear()
            else:
                line = chunk[start:end]
            yield number, line
            start = end + 1
        pending += chunk[start:]
    if pending and not source.stopped:
        yield number + 1, bytes(pending)


# -- output ---------------------------------------------------------------------------------------


def success_record(
    request_id: RequestId,
    scores: list[float],
    *,
    top_k: int | None,
    meta: LineMeta | None,
    input_tokens: int | None,
) -> dict[str, Any]:
    """The output record of a request that succeeded.

    ``ranking`` lists input indices best first (ties: lower index first), cut to
    ``top_k``; when the documents were objects, ``documents`` lists their other fields
    in the same order, each with its ``index`` and ``score``.
    """
    ranking = rank_indices(scores, top_k)
    record: dict[str, Any] = {"id": request_id, "scores": scores, "ranking": ranking}
    if meta is not None and meta.fields is not None:
        fields = meta.fields
        record["documents"] = [{"index": i, "score": scores[i], **fields[i]} for i in ranking]
    if input_tokens is not None:
        record["input_tokens"] = input_tokens
    return record


def error_record(
    request_id: RequestId,
    *,
    type_name: str,
    message: str,
    line: int | None,
    status_code: int | None = None,
) -> dict[str, Any]:
    """The output record of a request that failed or a line that was malformed."""
    error: dict[str, Any] = {"type": type_name, "message": message}
    if status_code is not None:
        error["status_code"] = status_code
    if line is not None:
        error["line"] = line
    # "id" then "error" first: OutputFile's fast scan relies on this order.
    return {"id": request_id, "error": error}


def _encode(record: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: keep it escaped
        return (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")


# A record as this module writes it: the id first, then "error" for an error record.
_RECORD_HEAD: Final = re.compile(rb'\{"id":(-?\d+|"(?:[^"\\]|\\.)*")(?=[,}])(,"error":)?')


@dataclass
class DoneIds:
    """What an existing output already holds, for resuming.

    Attributes:
        ok: Ids with a success record.
        failed: Ids with an error record.
        duplicate_lines: Input lines already reported as duplicate ids (their ids are
            in neither set).
        records: Records in the file.
        error_records: Error records in the file.
    """

    ok: set[RequestId] = field(default_factory=set)
    failed: set[RequestId] = field(default_factory=set)
    duplicate_lines: set[int] = field(default_factory=set)
    records: int = 0
    error_records: int = 0


class OutputFile:
    """The output JSONL: repaired and scanned on open, appended to one whole record at a time.

    Holds an exclusive ``flock`` while open, so two runs cannot append to one file.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.written = 0

    @classmethod
    def open(
        cls, path: str, *, retry_failed: bool, warn: Callable[[str], None]
    ) -> tuple[OutputFile, DoneIds]:
        """Open (or create) the output, cut an incomplete last line, and read its ids.

        Args:
            path: The output file.
            retry_failed: Drop the error records first (atomically, by rewriting the
                file beside itself), so their requests run again.
            warn: Called with a one-line message when a partial line is removed.

        Returns:
            The open file and the ids it holds.

        Raises:
            OSError: The file cannot be opened or is locked by another run.
            ValueError: A line of the file is not a bulk output record.
        """
        fd = _open_locked(path)
        try:
            removed = _cut_partial_line(fd)
            if removed:
                warn(
                    f"{path}: removed an incomplete last line ({removed:,} bytes) left by an "
                    "interrupted write; its request runs again"
                )
            if retry_failed:
                fd = _drop_error_records(path, fd)
            done = _scan(path, fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd), done

    def write(self, record: dict[str, Any]) -> None:
        """Append one record as one ``write`` of its complete line.

        Raises:
            OSError: The write failed; a partly written record is taken back out first.
        """
        data = _encode(record)
        written = os.write(self._fd, data)
        if written != len(data):
            # Only a full disk (or a file size limit) writes part of a regular-file write.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
            raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes", self.path)
        self.written += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1


def _open_locked(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock(fd: int, path: str) -> None:
    if sys.platform == "win32":  # no flock; the run is still crash-safe, just not exclusive
        return
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        raise OSError(
            errno.EBUSY, "another rerank-async bulk run is writing to this output", path
        ) from error


def _cut_partial_line(fd: int) -> int:
    """Truncate the file after its last newline; returns the bytes removed."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    return size - keep


def _drop_error_records(path: str, fd: int) -> int:
    """Rewrite the output without its error records; returns the new file's descriptor.

    The new file is written beside the old one, locked, flushed to disk, and then moved
    over it with ``os.replace``: a crash at any point leaves either file whole.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temp_fd, temp_path = tempfile.mkstemp(prefix=".bulk-", suffix=".tmp", dir=directory)
    try:
        os.close(temp_fd)
        new_fd = _open_locked(temp_path)
        try:
            with open(path, "rb") as old, open(new_fd, "ab", closefd=False) as new:
                for number, line in enumerate(old, start=1):
                    if not _is_error_record(line, number, path):
                        new.write(line)
            with contextlib.suppress(OSError):
                os.fchmod(new_fd, stat.S_IMODE(os.fstat(fd).st_mode))
            os.fsync(new_fd)
            os.replace(temp_path, path)
        except BaseException:
            os.close(new_fd)
            raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        raise
    _fsync_directory(directory)
    os.close(fd)
    return new_fd


def _is_error_record(line: bytes, number: int, path: str) -> bool:
    head = _RECORD_HEAD.match(line)
    if head is not None:
        return head.group(2) is not None
    return bool(line.strip()) and "error" in _load_record(line, number, path)


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _scan(path: str, fd: int) -> DoneIds:
    done = DoneIds()
    with open(os.dup(fd), "rb") as handle:
        handle.seek(0)
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            done.records += 1
            head = _RECORD_HEAD.match(line)
            if head is not None and head.group(2) is None:
                done.ok.add(json.loads(head.group(1)))
                continue
            record = _load_record(line, number, path)
            request_id = record["id"]
            if "error" in record:
                done.error_records += 1
                error = record["error"]
                is_duplicate = isinstance(error, dict) and error.get("type") == DUPLICATE_ID
                line_number = error.get("line") if is_duplicate else None
                if isinstance(line_number, int):
                    # Done is that line, not the id: the first line with the id may still
                    # have been in flight when the run stopped.
                    done.duplicate_lines.add(line_number)
                else:
                    done.failed.add(request_id)
            else:
                done.ok.add(request_id)
    return done


def _load_record(line: bytes, number: int, path: str) -> dict[str, Any]:
    where = f"{path} line {number}" if number else path
    try:
        record: object = json.loads(line)
    except ValueError as error:
        raise ValueError(
            f"{where} is not valid JSON ({_one_line(error)}); is it a bulk output file?"
        ) from error
    if not isinstance(record, dict) or not _is_request_id(record.get("id")):
        raise ValueError(f"{where} is not a bulk output record (no string or integer 'id')")
    return record


def _is_request_id(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


# -- the run --------------------------------------------------------------------------------------


class _Reservoir:
    """A uniform sample of at most ``size`` values (Vitter's algorithm R) and the exact max."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self.max = 0.0
        self._random = random.Random(0)

    def add(self, value: float) -> None:
        self.seen += 1
        self.max = max(self.max, value)
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value


@dataclass
class BulkSummary:
    """The figures of one run, for the summary table and ``--json-summary``."""

    ok: int = 0
    failed: int = 0
    malformed: int = 0
    skipped: int = 0
    blank: int = 0
    earlier_errors: int = 0
    documents: int = 0
    http_requests: int = 0
    retries: int = 0
    wall_s: float = 0.0
    interrupted_by: str | None = None
    errors_by_type: Counter[str] = field(default_factory=Counter)
    latency: _Reservoir = field(default_factory=lambda: _Reservoir(_LATENCY_SAMPLE))

    @property
    def done(self) -> int:
        """Requests (and malformed lines) finished in this run."""
        return self.ok + self.failed + self.malformed

    def latency_ms(self, fraction: float) -> float:
        if fraction >= 1.0:
            return self.latency.max * 1000.0 if self.latency.seen else float("nan")
        return percentile(self.latency.values, fraction) * 1000.0

    def as_json(self) -> dict[str, Any]:
        wall = self.wall_s
        return {
            "requests_ok": self.ok,
            "requests_failed": self.failed,
            "lines_malformed": self.malformed,
            "requests_skipped": self.skipped,
            "earlier_errors_kept": self.earlier_errors,
            "documents": self.documents,
            "wall_s": round(wall, 3),
            "documents_per_s": round(self.documents / wall, 1) if wall > 0 else None,
            "requests_per_s": round(self.done / wall, 1) if wall > 0 else None,
            "latency_ms": {
                name: (round(value, 2) if value == value else None)  # NaN -> null
                for name, value in (
                    ("p50", self.latency_ms(0.5)),
                    ("p90", self.latency_ms(0.9)),
                    ("p99", self.latency_ms(0.99)),
                    ("max", self.latency_ms(1.0)),
                )
            },
            "http_requests": self.http_requests,
            "retries": self.retries,
            "errors_by_type": dict(self.errors_by_type),
            "interrupted_by": self.interrupted_by,
        }


class _StatusColumn(ProgressColumn):
    """``done/total requests · ETA · documents · documents/s · retries · errors``, on one line.

    One column that never wraps: on a narrow terminal its end is cut with an ellipsis.
    """

    def render(self, task: Task) -> Text:
        fields = task.fields
        documents: int = fields["documents"]
        elapsed = task.elapsed or 0.0
        rate = documents / elapsed if elapsed > 0 else 0.0
        done = f"{int(task.completed):,}"
        if task.total is None:
            head = f"{done} requests"
        else:
            remaining = task.time_remaining
            eta = "-:--:--" if remaining is None else str(timedelta(seconds=int(remaining)))
            head = f"{done}/{int(task.total):,} requests · ETA {eta}"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(head)
        text.append(
            f" · {documents:,} docs · {rate:,.0f} docs/s · {fields['retries']:,} retries · "
        )
        errors: int = fields["errors"]
        text.append(f"{errors:,} errors", style="bold red" if errors else "")
        return text


class _Display:
    """The progress bar on stderr, or nothing when stderr is not a terminal or with ``--quiet``."""

    def __init__(self, console: Console, *, enabled: bool, count_lines_of: str | None) -> None:
        self.console = console
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]bulk"), BarColumn(bar_width=16), _StatusColumn(),
            console=console, disable=not enabled,
        )  # fmt: skip
        self._task: TaskID = self._progress.add_task(
            "bulk", total=None, documents=0, retries=0, errors=0
        )
        self._lines: int | None = None
        self._not_to_run = 0
        if enabled and count_lines_of is not None:
            # Counted beside the run, so a large input starts at once; until the count is
            # in, the total shows as unknown. A daemon thread: Ctrl-C never waits for it.
            threading.Thread(
                target=self._count, args=(count_lines_of,), name="rerank-async-bulk-count",
                daemon=True,
            ).start()  # fmt: skip

    def _count(self, path: str) -> None:
        with contextlib.suppress(OSError):
            self._lines = count_lines(path)  # one attribute store: safe to read from the loop

    def __enter__(self) -> _Display:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled:
            self._progress.stop()

    def not_to_run(self) -> None:
        """One line of the input turned out to need no request (skipped or blank)."""
        self._not_to_run += 1

    def show(self, summary: BulkSummary) -> None:
        if self.enabled:
            lines = self._lines
            self._progress.update(
                self._task,
                total=None if lines is None else max(lines - self._not_to_run, summary.done),
                completed=summary.done,
                documents=summary.documents,
                retries=summary.retries,
                errors=summary.failed + summary.malformed,
            )

    def say(self, message: str, *, style: str = "") -> None:
        self.console.print(Text(message, style=style), soft_wrap=True)


@dataclass
class _Options:
    input: str
    output: str
    default_top_k: int | None
    max_pending: int | None
    quiet: bool


class _BulkRun:
    """One run: feeds lines to ``rerank_many``, writes records, watches for Ctrl-C."""

    def __init__(
        self,
        options: _Options,
        client: RerankClient,
        source: _ChunkSource,
        output: OutputFile,
        done: DoneIds,
        display: _Display,
    ) -> None:
        self.options = options
        self.client = client
        self.source = source
        self.output = output
        self.done = done
        self.display = display
        self.summary = BulkSummary(earlier_errors=done.error_records)
        self.seen: set[RequestId] = set()
        self.submitted = 0
        self.line_reports = 0
        self.signal: int | None = None
        self.work_scope: anyio.CancelScope | None = None
        self._input_name = "stdin" if options.input == "-" else options.input

    async def run(self) -> None:
        started = time.perf_counter()
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            # Signal handlers can only be set from the main thread (and not on Windows).
            if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
                await group.start(self._watch_signals)
            try:
                with anyio.CancelScope() as self.work_scope:
                    await self._work()
            except Exception as error:  # raised below, outside the task group (no ExceptionGroup)
                failure = error
            finally:
                group.cancel_scope.cancel()
        self.summary.wall_s = time.perf_counter() - started
        if failure is not None:
            raise failure

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        # While this receiver is open, Ctrl-C raises no KeyboardInterrupt: it cannot land
        # between the bytes of a record, and the first one stops the run gently.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is None:
                    self.signal = signum
                    self.source.stop()
                    in_flight = self.submitted - self.summary.ok - self.summary.failed
                    self.display.say(
                        f"rerank-async: {signal.Signals(signum).name}: reading no more input; "
                        f"finishing {in_flight:,} requests in flight "
                        "(Ctrl-C again to stop at once)",
                        style="yellow",
                    )
                elif self.work_scope is not None:
                    self.work_scope.cancel()

    async def _work(self) -> None:
        write_error: OSError | None = None
        async with self.client:
            async with self.client.rerank_many(
                self._requests(), max_pending=self.options.max_pending
            ) as outcomes:
                async for outcome in outcomes:
                    try:
                        self._record_outcome(outcome)
                    except OSError as error:  # raised after the block: no ExceptionGroup
                        write_error = error
                        break
        if write_error is not None:
            raise write_error

    async def _requests(self) -> AsyncIterator[RerankRequest]:
        summary, display = self.summary, self.display
        async for number, raw in _input_lines(self.source):
            if self.source.stopped:
                return
            parsed = parse_line(raw, number, default_top_k=self.options.default_top_k)
            if parsed is None:
                summary.blank += 1
                display.not_to_run()
                continue
            key = parsed.id
            assert key is not None  # parse_line always sets one
            if key in self.seen:
                if number in self.done.duplicate_lines:
                    self._skip()
                else:
                    self._bad_line(BadLine(key, number, _duplicate_message(key), DUPLICATE_ID))
                continue
            self.seen.add(key)
            if key in self.done.ok:
                self.done.ok.discard(key)  # seen now holds it; keep one set per id, not two
                self._skip()
                continue
            if key in self.done.failed:
                self.done.failed.discard(key)
                self._skip()
                continue
            if isinstance(parsed, BadLine):
                self._bad_line(parsed)
                continue
            self.submitted += 1
            yield parsed
            # Let the request just started reach its first await before reading on, as
            # rerank_many does for a plain iterable: measured ~1.6x faster on small requests
            # than starting a burst of them at once.
            await anyio.lowlevel.checkpoint()

    def _skip(self) -> None:
        self.summary.skipped += 1
        self.display.not_to_run()
        self.display.show(self.summary)

    def _bad_line(self, bad: BadLine) -> None:
        self.output.write(
            error_record(bad.id, type_name=bad.type, message=bad.message, line=bad.line)
        )
        summary = self.summary
        summary.malformed += 1
        summary.errors_by_type[bad.type] += 1
        self.line_reports += 1
        if self.line_reports <= _MAX_LINE_REPORTS:
            self.display.say(
                f"rerank-async: {self._input_name} line {bad.line}: {bad.message}", style="yellow"
            )
        elif self.line_reports == _MAX_LINE_REPORTS + 1:
            self.display.say(
                f"rerank-async: more malformed lines; their error records in {self.output.path} "
                "say which",
                style="yellow",
            )
        self.display.show(summary)

    def _record_outcome(self, outcome: RerankOutcome) -> None:
        summary = self.summary
        request = outcome.request
        meta = request.metadata if request is not None else None
        line_meta = meta if isinstance(meta, LineMeta) else None
        summary.latency.add(outcome.elapsed_s)
        if outcome.result is not None:
            result = outcome.result
            self.output.write(
                success_record(
                    outcome.id,
                    result.scores,
                    top_k=result.top_k,
                    meta=line_meta,
                    input_tokens=result.usage.input_tokens,
                )
            )
            summary.ok += 1
            summary.documents += len(result.scores)
            summary.http_requests += result.usage.requests
            summary.retries += result.usage.retries
        else:
            error = outcome.error if outcome.error is not None else RuntimeError("no result")
            self.output.write(
                error_record(
                    outcome.id,
                    type_name=type(error).__name__,
                    message=_one_line(error),
                    line=line_meta.line if line_meta is not None else None,
                    status_code=error.status_code if isinstance(error, APIStatusError) else None,
                )
            )
            summary.failed += 1
            summary.errors_by_type[type(error).__name__] += 1
        self.display.show(summary)


def _duplicate_message(key: RequestId) -> str:
    shown = json.dumps(key, ensure_ascii=False)
    return f"duplicate id {shown}: an earlier line has it; this line is not run"


def _one_line(error: BaseException) -> str:
    return " ".join((str(error) or type(error).__name__).split())


# -- the command ----------------------------------------------------------------------------------


def run_bulk(args: argparse.Namespace) -> int:
    """Run ``rerank-async bulk``; returns the exit code."""
    console = stderr_console()
    problem = _usage_problem(args)
    if problem is not None:
        console.print(Text(f"rerank-async bulk: error: {problem}"), soft_wrap=True)
        return EXIT_USAGE
    options = _Options(
        input=args.input,
        output=args.output,
        default_top_k=args.top_k,
        max_pending=args.max_pending,
        quiet=args.quiet,
    )

    def warn(message: str) -> None:
        console.print(Text(f"rerank-async: warning: {message}", style="yellow"), soft_wrap=True)

    with _open_input(args.input) as stream:
        countable = args.input != "-" and _never_blocks(stream)
        client = _client_from_args(args)
        output, done = OutputFile.open(args.output, retry_failed=args.retry_failed, warn=warn)
        try:
            display = _Display(
                console,
                enabled=console.is_terminal and not args.quiet,
                count_lines_of=args.input if countable else None,
            )
            source = _ChunkSource(stream)
            bulk = _BulkRun(options, client, source, output, done, display)
            try:
                with display:
                    anyio.run(bulk.run)
            finally:
                source.close()
        finally:
            output.close()
    summary = bulk.summary
    if bulk.signal is not None:
        summary.interrupted_by = signal.Signals(bulk.signal).name
    if not args.quiet:
        console.print(summary_table(_summary_rows(summary), title="Summary"))
    if args.json_summary:
        with open(args.json_summary, "w", encoding="utf-8") as handle:
            json.dump(summary.as_json(), handle, indent=2)
            handle.write("\n")
    return _finish(summary, options, output, console)


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.output == "-":
        return "--output must be a file: a rerun reads it back to resume"
    for flag, value in (("--top-k", args.top_k), ("--max-pending", args.max_pending)):
        if value is not None and value < 1:
            return f"{flag} must be >= 1, got {value}"
    if args.retry_initial_delay < 0:
        return f"--retry-initial-delay must be >= 0, got {args.retry_initial_delay}"
    if args.input != "-" and os.path.exists(args.output):
        with contextlib.suppress(OSError):
            if os.path.samefile(args.input, args.output):
                return "the output must not be the input file"
    return None


@contextlib.contextmanager
def _open_input(path: str) -> Iterator[_Binary]:
    if path == "-":
        buffer: _Binary | None = getattr(sys.stdin, "buffer", None)
        yield buffer if buffer is not None else _TextAsBytes(sys.stdin)
        return
    with open(path, "rb", buffering=0) as handle:
        yield handle


class _Binary(Protocol):
    """What the input is read through: a binary file, stdin's buffer, or `_TextAsBytes`."""

    def read(self, size: int, /) -> bytes: ...

    def fileno(self) -> int: ...


class _TextAsBytes:
    """A text stream seen as bytes (stdin replaced by a ``StringIO``, as in tests)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def fileno(self) -> int:
        return self._stream.fileno()

    def read(self, size: int) -> bytes:
        return self._stream.read(size).encode("utf-8")


def _client_from_args(args: argparse.Namespace) -> RerankClient:
    return RerankClient(
        model=args.model,
        api_key=args.api_key,
        base_url=args.base_url,
        batch_size=args.batch_size,
        max_concurrency=args.concurrency,
        max_retries=args.max_retries,
        timeout=args.timeout,
        retry_initial_delay=args.retry_initial_delay,
    )


def _summary_rows(summary: BulkSummary) -> list[tuple[str, str]]:
    wall = summary.wall_s
    rate = (
        f"{summary.documents / wall:,.0f} documents/s · {summary.done / wall:,.1f} requests/s"
        if wall > 0
        else "-"
    )
    rows = [
        ("requests",
         f"{summary.ok:,} ok · {summary.failed:,} failed · {summary.skipped:,} skipped"),
        ("malformed lines", f"{summary.malformed:,}"),
        ("documents scored", f"{summary.documents:,}"),
        ("wall time", f"{wall:.2f} s"),
        ("throughput", rate),
        ("latency p50 / p90 / p99 / max",
         " / ".join(_ms(summary.latency_ms(p)) for p in (0.5, 0.9, 0.99, 1.0)) + " ms"),
        ("HTTP requests", f"{summary.http_requests:,} ({summary.retries:,} retries)"),
    ]  # fmt: skip
    if summary.errors_by_type:
        rows.append(
            (
                "errors",
                " · ".join(f"{name} {n:,}" for name, n in summary.errors_by_type.most_common()),
            )
        )
    if summary.earlier_errors:
        rows.append(("error records from earlier runs", f"{summary.earlier_errors:,}"))
    return rows


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def _finish(summary: BulkSummary, options: _Options, output: OutputFile, console: Console) -> int:
    def say(message: str) -> None:
        console.print(Text(f"rerank-async: {message}"), soft_wrap=True)

    if summary.interrupted_by is not None:
        say(
            f"{summary.interrupted_by}: stopped with {output.written:,} new records in "
            f"{options.output}; run the same command again to resume"
        )
        return EXIT_TERMINATED if summary.interrupted_by == "SIGTERM" else EXIT_INTERRUPTED
    errors = summary.failed + summary.malformed + summary.earlier_errors
    if errors:
        say(
            f"{errors:,} error records in {options.output}; rerun with --retry-failed to run "
            "those lines again"
        )
        return EXIT_FAILURE
    return EXIT_OK
