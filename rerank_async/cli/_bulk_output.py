"""Writing ``rerank-async bulk`` output: one crash-safe record per line, and resume state."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from .._batching import rank_indices
from .._checks import is_int
from ._bulk_files import fsync_directory
from ._bulk_input import LineMeta, RequestId
from ._common import one_line

__all__ = ["DoneIds", "OutputFile", "error_record", "success_record"]


# Error types of records that come from the input rather than from a request.
DUPLICATE_ID: Final = "DuplicateId"


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
    fsync_directory(directory)
    os.close(fd)
    return new_fd


def _is_error_record(line: bytes, number: int, path: str) -> bool:
    head = _RECORD_HEAD.match(line)
    if head is not None:
        return head.group(2) is not None
    return bool(line.strip()) and "error" in _load_record(line, number, path)


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
            f"{where} is not valid JSON ({one_line(error)}); is it a bulk output file?"
        ) from error
    if not isinstance(record, dict) or not _is_request_id(record.get("id")):
        raise ValueError(f"{where} is not a bulk output record (no string or integer 'id')")
    return record


def _is_request_id(value: object) -> bool:
    return isinstance(value, str) or is_int(value)
