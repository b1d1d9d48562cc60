"""Reading ``rerank-async bulk`` input: JSONL lines, lazily, into requests or bad lines."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel

from .._checks import InvalidRecordError, check_record
from .._many import RerankRequest
from ._common import one_line

__all__ = [
    "RESERVED_DOCUMENT_FIELDS",
    "BadLine",
    "LineMeta",
    "RequestId",
    "count_lines",
    "parse_line",
    "parse_value",
]

# Input is read in chunks of this size and split into lines; one line may span chunks.
_CHUNK_BYTES: Final = 1 << 20
# Fields of an input document object that the ranked output entries use themselves.
RESERVED_DOCUMENT_FIELDS: Final = ("index", "score")

# Error types of records that come from the input rather than from a request.
INVALID_LINE: Final = "InvalidLine"

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
        return BadLine(line, line, f"not valid JSON: {one_line(error)}")
    return parse_value(value, line, default_top_k=default_top_k)


def parse_value(
    value: object, line: int, *, default_top_k: int | None = None
) -> RerankRequest | BadLine:
    """Check one decoded input record (a JSONL line's object, or a Parquet row as a dict).

    Args:
        value: The decoded record.
        line: Its 1-based line (or row) number, which is also the id of one without.
        default_top_k: ``top_k`` for a record that gives none.

    Returns:
        The request (its ``metadata`` a `LineMeta`), or a `BadLine`.
    """
    try:
        record = check_record(value, reserved_fields=RESERVED_DOCUMENT_FIELDS)
    except InvalidRecordError as error:
        bad_id = line if error.record_id is None else error.record_id
        return BadLine(bad_id, line, str(error))
    top_k = record.top_k if record.top_k is not None else default_top_k
    return RerankRequest(
        query=record.query,
        documents=record.documents,
        id=line if record.id is None else record.id,
        top_k=top_k,
        metadata=LineMeta(line=line, fields=record.fields),
    )


def count_lines(path: str) -> int:
    """Lines in a file, a last line without a newline included, read in large chunks."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


class ChunkSource:
    """Chunks of the input, read without stalling the event loop.

    Regular files and in-memory streams are read inline: a read never waits. Pipes and
    terminals are read by a daemon thread, so a slow producer on stdin never blocks the
    requests in flight, and a thread stuck in ``read`` never keeps the process alive.
    """

    def __init__(self, stream: _Binary) -> None:
        self._stream = stream
        self._stopped = False
        self._scope: anyio.CancelScope | None = None
        self._threaded = not never_blocks(stream)
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


def never_blocks(stream: _Binary) -> bool:
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation: an in-memory stream
        return True
    return stat.S_ISREG(os.fstat(fd).st_mode)


async def input_lines(source: ChunkSource) -> AsyncIterator[tuple[int, bytes]]:
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


@contextlib.contextmanager
def open_input(path: str) -> Iterator[_Binary]:
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
