"""Parquet for ``rerank-async bulk``: rows in, and a crash-safe dataset directory out.

A Parquet file is only readable once its footer is written, so a process killed while
writing one leaves nothing usable. The output is therefore a **directory of part files**
(``OUT.parquet/part-000001.parquet``, ...), the layout Spark, pyarrow.dataset, DuckDB,
pandas and Ray all read as one table. Records are buffered in memory and written as one
part (one row group) at a time: to a hidden temporary file in the directory, flushed to
disk, then renamed into place with ``os.replace``. A part is therefore either whole or
absent; a SIGKILL loses only the records still buffered, and those requests run again on
resume, exactly as records never written to a JSONL output do. See ``docs/bulk.md``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import anyio.to_thread
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .._many import RerankRequest
from ._bulk_files import fsync_directory
from ._bulk_input import BadLine, RequestId, parse_value
from ._bulk_output import DUPLICATE_ID, DoneIds

__all__ = [
    "ParquetOutput",
    "ParquetSource",
    "count_parquet_rows",
    "is_parquet",
    "output_columns",
]

PARQUET_SUFFIXES: Final = (".parquet", ".pq")
# Input rows decoded at a time (one Arrow record batch).
_READ_ROWS: Final = 1024
# A part is written once the buffer holds ``part_rows`` records (default 10,000), or this
# many scores (the memory bound: with their rankings, ~15 MiB of Python objects), or its
# oldest record is this old
# (so a slow run still commits its records now and then).
FLUSH_SCORES: Final = 200_000
FLUSH_SECONDS: Final = 30.0
_PART: Final = re.compile(r"part-(\d{6,})\.parquet")
_LOCK_NAME: Final = ".rerank-async.lock"
_TEMP_PREFIX: Final = ".part-"
# The columns of an input row that a request reads; any others are ignored.
_INPUT_COLUMNS: Final = ("id", "query", "documents", "top_k")


def is_parquet(path: str) -> bool:
    """Whether ``path`` names Parquet: by its extension, or an existing directory."""
    return path.lower().endswith(PARQUET_SUFFIXES) or os.path.isdir(path)


def _input_files(path: str) -> list[str]:
    if not os.path.isdir(path):
        return [path]
    files = sorted(
        os.path.join(path, name)
        for name in os.listdir(path)
        if name.lower().endswith(PARQUET_SUFFIXES) and not name.startswith((".", "_"))
    )
    if not files:
        raise ValueError(f"{path}: a directory with no .parquet files")
    return files


def count_parquet_rows(path: str) -> int:
    """Rows of a Parquet file or directory, from the footers alone."""
    return sum(pq.ParquetFile(name).metadata.num_rows for name in _input_files(path))


# -- input ----------------------------------------------------------------------------------------


class ParquetSource:
    """The rows of a Parquet file (or a directory of them, in name order), one batch at a time.

    Row numbers (1-based, continuing across files) stand for JSONL line numbers: they are
    the ids of rows without one, and the ``line`` of error records.
    """

    def __init__(self, path: str, *, default_top_k: int | None) -> None:
        self.path = path
        self._default_top_k = default_top_k
        self._stopped = False
        self._files = _input_files(path)
        self._columns: list[list[str]] = []
        for name in self._files:  # every schema checked before any request
            columns = pq.ParquetFile(name).schema_arrow.names
            for required in ("query", "documents"):
                if required not in columns:
                    raise ValueError(
                        f"{name}: no {required!r} column (columns: {', '.join(columns)})"
                    )
            self._columns.append([c for c in _INPUT_COLUMNS if c in columns])

    @property
    def stopped(self) -> bool:
        """Whether `stop` was called."""
        return self._stopped

    def stop(self) -> None:
        """Read no more rows."""
        self._stopped = True

    def close(self) -> None:
        self._stopped = True

    async def records(self) -> AsyncIterator[tuple[int, RerankRequest | BadLine | None]]:
        """``(row number, request or bad row)`` per row; one record batch in memory."""
        number = 0
        for name, columns in zip(self._files, self._columns, strict=True):
            with pq.ParquetFile(name) as handle:
                batches = handle.iter_batches(batch_size=_READ_ROWS, columns=columns)
                while not self._stopped:
                    # Decoding is CPU and disk work: off the loop, so requests keep flowing.
                    batch = await anyio.to_thread.run_sync(next, batches, None)
                    if batch is None:
                        break
                    for row in batch.to_pylist():
                        number += 1
                        yield number, parse_value(row, number, default_top_k=self._default_top_k)


# -- output ---------------------------------------------------------------------------------------


def _schema(id_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            ("id", id_type),
            ("scores", pa.list_(pa.float64())),
            ("ranking", pa.list_(pa.int64())),
            ("input_tokens", pa.int64()),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
            ("error_status_code", pa.int64()),
            ("error_line", pa.int64()),
        ]
    )


class ParquetOutput:
    """The output dataset directory: scanned on open, appended to one whole part at a time.

    Holds an exclusive ``flock`` on a lock file inside it while open, so two runs cannot
    write to one output.
    """

    def __init__(
        self,
        path: str,
        lock_fd: int,
        *,
        id_type: pa.DataType | None,
        next_part: int,
        part_rows: int,
    ) -> None:
        self.path = path
        self.part_rows = part_rows
        self.written = 0
        self._lock_fd = lock_fd
        self._id_type = id_type
        self._next_part = next_part
        self._columns: dict[str, list[Any]] = {name: [] for name in _schema(pa.string()).names}
        self._scores = 0
        self._oldest = 0.0

    @classmethod
    def open(
        cls,
        path: str,
        *,
        retry_failed: bool,
        warn: Callable[[str], None],
        part_rows: int = 10_000,
    ) -> tuple[ParquetOutput, DoneIds]:
        """Open (or create) the output directory, tidy it, and read the ids it holds.

        Args:
            path: The output directory.
            retry_failed: Drop the error rows first (part by part, each rewritten beside
                itself and renamed over it), so their requests run again.
            warn: Called with a one-line message when leftovers of a killed run are removed.
            part_rows: Records per part file, at most.

        Returns:
            The open output and the ids it holds.

        Raises:
            OSError: The directory cannot be made or is locked by another run.
            ValueError: ``path`` is a file, or a part is not a bulk output.
        """
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(
                f"{path} is a file; Parquet output is a directory of part files (see "
                "docs/bulk.md): remove it or name another output"
            )
        os.makedirs(path, exist_ok=True)
        lock_fd = _lock_directory(path)
        try:
            for name in os.listdir(path):
                if name.startswith(_TEMP_PREFIX):
                    os.unlink(os.path.join(path, name))
                    warn(f"{path}: removed {name}, a part an interrupted run did not finish")
            parts = _parts(path)
            if retry_failed:
                for part in parts:
                    _drop_error_rows(part)
                parts = _parts(path)
            done, id_type = _scan(parts)
            numbers = [int(_number(part)) for part in parts]
        except BaseException:
            os.close(lock_fd)
            raise
        output = cls(
            path,
            lock_fd,
            id_type=id_type,
            next_part=max(numbers, default=0) + 1,
            part_rows=part_rows,
        )
        return output, done

    def write(self, record: dict[str, Any]) -> None:
        """Buffer one record (see `success_record` / `error_record`); write a part when due.

        Raises:
            OSError: Writing a part failed, or the record's id has the other type than
                this output's (Parquet columns have one type).
        """
        request_id: RequestId = record["id"]
        self._check_id(request_id)
        columns = self._columns
        error = record.get("error")
        columns["id"].append(request_id)
        if error is None:
            scores: list[float] = record["scores"]
            columns["scores"].append(scores)
            columns["ranking"].append(record["ranking"])
            columns["input_tokens"].append(record.get("input_tokens"))
            self._scores += len(scores)
            for name in ("error_type", "error_message", "error_status_code", "error_line"):
                columns[name].append(None)
        else:
            columns["scores"].append(None)
            columns["ranking"].append(None)
            columns["input_tokens"].append(None)
            columns["error_type"].append(error["type"])
            columns["error_message"].append(error["message"])
            columns["error_status_code"].append(error.get("status_code"))
            columns["error_line"].append(error.get("line"))
        if len(columns["id"]) == 1:
            self._oldest = time.monotonic()
        if (
            len(columns["id"]) >= self.part_rows
            or self._scores >= FLUSH_SCORES
            or time.monotonic() - self._oldest >= FLUSH_SECONDS
        ):
            self.flush()

    def _check_id(self, request_id: RequestId) -> None:
        kind = pa.string() if isinstance(request_id, str) else pa.int64()
        if self._id_type is None:
            self._id_type = kind
            return
        if kind != self._id_type:
            have = "strings" if self._id_type == pa.string() else "integers"
            shown = "a string" if kind == pa.string() else "an integer"
            raise OSError(
                errno.EINVAL,
                f"Parquet output needs ids of one type: id {request_id!r} is {shown}, but "
                f"this output's ids are {have} (lines without an id use their line number, "
                "an integer); give every input line an id of one type",
                self.path,
            )

    def flush(self) -> None:
        """Write the buffered records as one part file, atomically; nothing when empty."""
        count = len(self._columns["id"])
        if count == 0:
            return
        assert self._id_type is not None  # set by the first write
        table = pa.table(self._columns, schema=_schema(self._id_type))
        _write_atomically(table, os.path.join(self.path, f"part-{self._next_part:06d}.parquet"))
        self._next_part += 1
        self.written += count
        self._columns = {name: [] for name in self._columns}
        self._scores = 0

    def close(self) -> None:
        """Write what is buffered, then release the lock."""
        if self._lock_fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1


def output_columns() -> list[str]:
    """The output's column names, in order."""
    return list(_schema(pa.string()).names)


def _lock_directory(path: str) -> int:
    fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if sys.platform == "win32":  # no flock; still crash-safe, just not exclusive
        return fd
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        os.close(fd)
        raise OSError(
            errno.EBUSY, "another rerank-async bulk run is writing to this output", path
        ) from error
    return fd


def _number(part: str) -> str:
    match = _PART.fullmatch(os.path.basename(part))
    assert match is not None  # _parts lists only matching names
    return match.group(1)


def _parts(path: str) -> list[str]:
    return sorted(os.path.join(path, n) for n in os.listdir(path) if _PART.fullmatch(n))


def _write_atomically(table: pa.Table, final: str) -> None:
    directory = os.path.dirname(final)
    fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=directory)
    try:
        with open(fd, "wb") as handle:
            pq.write_table(table, handle, row_group_size=max(table.num_rows, 1))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(directory)


def _read_part(part: str, columns: list[str] | None = None) -> pa.Table:
    try:
        table = pq.read_table(part, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowKeyError, KeyError) as error:
        raise ValueError(
            f"{part} is not a bulk output part ({error}); is it a bulk output?"
        ) from error
    if "id" not in table.column_names:
        raise ValueError(f"{part} is not a bulk output part (no 'id' column)")
    return table


def _drop_error_rows(part: str) -> None:
    table = _read_part(part)
    errors = table.column("error_type").is_valid()
    if not pc.any(errors).as_py():
        return
    kept = table.filter(pc.invert(errors))
    if kept.num_rows == 0:
        os.unlink(part)  # atomic: the part's rows are all gone, or all still there
        fsync_directory(os.path.dirname(part))
        return
    _write_atomically(kept, part)


def _scan(parts: list[str]) -> tuple[DoneIds, pa.DataType | None]:
    done = DoneIds()
    id_type: pa.DataType | None = None
    for part in parts:
        table = _read_part(part, ["id", "error_type", "error_line"])
        if id_type is None:
            id_type = table.schema.field("id").type
        for request_id, error_type, line in zip(
            table.column("id").to_pylist(),
            table.column("error_type").to_pylist(),
            table.column("error_line").to_pylist(),
            strict=True,
        ):
            done.records += 1
            if error_type is None:
                done.ok.add(request_id)
                continue
            done.error_records += 1
            if error_type == DUPLICATE_ID and isinstance(line, int):
                # Done is that line, not the id (as in the JSONL output).
                done.duplicate_lines.add(line)
            else:
                done.failed.add(request_id)
    return done, id_type
