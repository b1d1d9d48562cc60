"""Writing ``rerank-async bulk`` output: one crash-safe record per line, and resume state.

An existing output is read, read-only, from its first byte to its last before anything
in it changes: every complete line must be a bulk record, and a last line without its
line break must be the start of one (``{"id":``, as every record begins). Only then is
such a line cut off, error records dropped (``--retry-failed``) or old records of
rescored ids removed. Anything else is not bulk's file, and is left byte for byte as it
was. The records themselves are the signature (no header line, no sidecar file): the
output stays plain JSONL for every reader, and its proof of origin travels with it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from typing import Any, Final

from .._checks import is_int
from ._bulk_files import check_regular, fsync_directory, lock, not_ours
from ._bulk_input import RequestId
from ._bulk_records import DUPLICATE_ID, DoneIds
from ._common import one_line

__all__ = ["OutputFile"]

# A record as this module writes it: the id, its fingerprint, then "scores" or "error".
_RECORD_HEAD: Final = re.compile(
    rb'\{"id":(-?\d+|"(?:[^"\\]|\\.)*")(?:,"fingerprint":"([^"\\]*)")?,"(scores|error)":'
)
# How every record this module writes begins: the test for a line cut by a crash.
_RECORD_START: Final = b'{"id":'
# A longer line is no record of ours (5,000 documents with their fields take ~1 MiB); the
# bound keeps the scan of someone else's file (one endless line) from filling memory.
_MAX_LINE_BYTES: Final = 256 << 20
_RESUME_HINT: Final = "once there is room, run the same command again to resume"


def _encode(record: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape: keep it escaped
        return (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")


class OutputFile:
    """The output JSONL: checked and scanned on open, appended to one whole record at a time.

    Holds an exclusive ``flock`` while open, so two runs cannot append to one file.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._superseded: set[RequestId] = set()
        self.written = 0

    @classmethod
    def open(
        cls,
        path: str,
        *,
        retry_failed: bool,
        warn: Callable[[str], None],
        overwrite: bool = False,
    ) -> tuple[OutputFile, DoneIds]:
        """Open (or create) the output, check it is bulk's, repair it, and read its records.

        Args:
            path: The output file.
            retry_failed: Drop the error records first (atomically, by rewriting the
                file beside itself), so their requests run again.
            warn: Called with a one-line message when the file is repaired.
            overwrite: Empty an existing file, whatever it holds, instead of resuming.

        Returns:
            The open file and what it holds.

        Raises:
            OSError: The file cannot be opened or is locked by another run.
            OutputRefusedError: It is not a regular file, or not a bulk output; it was
                not changed.
        """
        fd = _open_locked(path)
        try:
            if overwrite:
                if os.fstat(fd).st_size:
                    warn(f"{path}: --overwrite: emptied it; every line runs")
                os.ftruncate(fd, 0)
                return cls(path, fd), DoneIds()
            done, partial = _scan(path, fd)  # read-only: raises before any change
            if partial:
                os.ftruncate(fd, os.fstat(fd).st_size - partial)
                warn(
                    f"{path}: removed an incomplete last line ({partial:,} bytes) left by an "
                    "interrupted write; its request runs again"
                )
            if retry_failed and done.error_records:
                fd = _rewrite(path, fd, lambda head, _: head[2] is None)
                done, _ = _scan(path, fd)
            if done.repeated:
                fd = _keep_last_records(path, fd, done.repeated)
                warn(
                    f"{path}: {len(done.repeated):,} ids had an old record beside a newer one "
                    "(a run stopped before it removed them): removed the old ones"
                )
                done, _ = _scan(path, fd)
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
        try:
            written = os.write(self._fd, data)
        except OSError as error:  # ENOSPC with nothing written, EFBIG, EIO: name the file
            raise OSError(error.errno, f"{error.strerror}; {_RESUME_HINT}", self.path) from error
        if written != len(data):
            # Only a full disk (or a file size limit) writes part of a regular-file write.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - written)
            raise OSError(
                errno.ENOSPC,
                f"{os.strerror(errno.ENOSPC)} (a record fitted {written} of its {len(data)} "
                f"bytes, and was taken back out); {_RESUME_HINT}",
                self.path,
            )
        self.written += 1

    def supersede(self, request_id: RequestId) -> None:
        """Note that this run scores ``request_id`` again: its old record goes at `close`."""
        self._superseded.add(request_id)

    def close(self) -> None:
        """Remove the old records of rescored ids (their last record stays), then unlock."""
        if self._fd < 0:
            return
        try:
            if self._superseded:
                self._fd = _keep_last_records(self.path, self._fd, self._superseded)
                self._superseded.clear()
        finally:
            os.close(self._fd)  # also releases the lock
            self._fd = -1


def _open_locked(path: str) -> int:
    # O_NONBLOCK: a pipe that appeared since the path was checked must not hang the open;
    # O_NOCTTY: nor may a terminal become the process's. Neither exists on Windows.
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    flags |= getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags, 0o644)
    try:
        check_regular(fd, path)
        lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


# What the scan needs of one record: id, fingerprint, error type (None: a success), line.
_Head = tuple[RequestId, str | None, str | None, object]


def _scan(path: str, fd: int) -> tuple[DoneIds, int]:
    """Read every record, changing nothing; returns them and the length of a cut last line.

    Raises:
        OutputRefusedError: A line is not a bulk record.
    """
    done = DoneIds()
    partial = 0
    with open(os.dup(fd), "rb") as handle:
        handle.seek(0)
        for number, line in enumerate(iter(lambda: handle.readline(_MAX_LINE_BYTES + 1), b""), 1):
            if not line.endswith(b"\n"):
                if len(line) > _MAX_LINE_BYTES:
                    raise not_ours(path, f"line {number} is longer than 256 MiB")
                # A record cut by a crash (only the last line can be one), or the run of
                # NUL bytes a power cut can leave where the file grew but its data did not.
                if not (line.startswith(_RECORD_START) or not line.strip(b"\0")):
                    raise not_ours(path, f"its last line {number} is not a record")
                partial = len(line)
                break
            if not line.strip():
                continue
            request_id, fingerprint, error_type, error_line = _head(line, number, path)
            done.add(request_id, fingerprint, error_type=error_type, line=error_line)
    return done, partial


def _head(line: bytes, number: int, path: str) -> _Head:
    head = _RECORD_HEAD.match(line)
    if head is not None and head.group(3) == b"scores":
        # A success record as written here: its scores need not be decoded to resume.
        raw = head.group(2)
        fingerprint = None if raw is None else raw.decode()
        return json.loads(head.group(1)), fingerprint, None, None
    record = _load_record(line, number, path)
    fingerprint = record.get("fingerprint")
    fingerprint = fingerprint if isinstance(fingerprint, str) else None
    if "error" not in record:
        return record["id"], fingerprint, None, None
    error = record["error"]
    error_type = error.get("type") if isinstance(error, dict) else None
    error_line = error.get("line") if isinstance(error, dict) else None
    return record["id"], fingerprint, error_type if isinstance(error_type, str) else "?", error_line


def _load_record(line: bytes, number: int, path: str) -> dict[str, Any]:
    try:
        record: object = json.loads(line)
    except ValueError as error:
        raise not_ours(path, f"line {number} is not valid JSON: {one_line(error)}") from error
    if not isinstance(record, dict):
        raise not_ours(path, f"line {number} is not a JSON object")
    request_id = record.get("id")
    if not (isinstance(request_id, str) or is_int(request_id)):
        raise not_ours(path, f"line {number} has no string or integer 'id'")
    if not isinstance(record.get("scores"), list) and "error" not in record:
        raise not_ours(path, f"line {number} has neither 'scores' nor 'error'")
    return record


def _keep_last_records(path: str, fd: int, ids: set[RequestId]) -> int:
    """Rewrite the output keeping, of each id in ``ids``, only its last record."""
    last: dict[RequestId, int] = {}
    with open(os.dup(fd), "rb") as handle:
        handle.seek(0)
        for number, line in enumerate(handle, 1):
            if line.strip():
                request_id, _, error_type, error_line = _head(line, number, path)
                if request_id in ids and not _marks_a_line(error_type, error_line):
                    last[request_id] = number

    def keep(head: _Head, number: int) -> bool:
        request_id, _, error_type, error_line = head
        if request_id not in last or _marks_a_line(error_type, error_line):
            return True
        return last[request_id] == number

    return _rewrite(path, fd, keep)


def _marks_a_line(error_type: str | None, error_line: object) -> bool:
    # A DuplicateId record stands for its input line, not for its id's request.
    return error_type == DUPLICATE_ID and isinstance(error_line, int)


def _rewrite(path: str, fd: int, keep: Callable[[_Head, int], bool]) -> int:
    """Rewrite the output with the records ``keep`` accepts; returns the new file's descriptor.

    ``keep`` gets each record's head and line number. The new file is written beside the
    old one, locked, flushed to disk, and then moved over it with ``os.replace``: a crash
    at any point leaves either file whole.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temp_fd, temp_path = tempfile.mkstemp(prefix=".bulk-", suffix=".tmp", dir=directory)
    try:
        os.close(temp_fd)
        new_fd = _open_locked(temp_path)
        try:
            with open(path, "rb") as old, open(new_fd, "ab", closefd=False) as new:
                for number, line in enumerate(old, start=1):
                    if not line.strip():
                        continue
                    head = _head(line, number, path)
                    if keep(head, number):
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
