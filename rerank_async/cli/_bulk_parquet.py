"""Parquet output for ``rerank-async bulk``: a crash-safe dataset directory.

A Parquet file is only readable once its footer is written, so a process killed while
writing one leaves nothing usable. The output is therefore a **directory of part files**
(``OUT.parquet/part-000001.parquet``, ...), the layout Spark, pyarrow.dataset, DuckDB,
pandas and Ray all read as one table. Records are buffered in memory and written as one
part (one row group) at a time: to a hidden temporary file in the directory, flushed to
disk, then renamed into place with ``os.replace``. A part is therefore either whole or
absent; a SIGKILL loses only the records still buffered, and those requests run again on
resume, exactly as records never written to a JSONL output do. See ``docs/bulk.md``.

An existing directory is bulk's when it holds nothing but bulk's names (``part-NNNNNN.parquet``,
``.rerank-async.lock``, ``.part-*.tmp``) and every part has bulk's columns; that is checked,
reading footers only, before the lock file is made or a leftover removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import time
from collections.abc import Callable
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._bulk_files import (
    OutputRefusedError,
    clear_parquet_directory,
    clutter_problem,
    dataset_clutter,
    fsync_directory,
    lock,
    not_ours,
    special_file_problem,
)
from ._bulk_input import RequestId
from ._bulk_records import DUPLICATE_ID, DoneIds

__all__ = ["ParquetOutput"]

# A part is written once the buffer holds ``part_rows`` records (default 10,000), or this
# many scores (the memory bound: with their rankings, ~15 MiB of Python objects), or its
# oldest record is this old
# (so a slow run still commits its records now and then).
FLUSH_SCORES: Final = 200_000
FLUSH_SECONDS: Final = 30.0
_PART: Final = re.compile(r"part-(\d{6,})\.parquet")
_LOCK_NAME: Final = ".rerank-async.lock"
_TEMP_PREFIX: Final = ".part-"
_SCAN_COLUMNS: Final = ["id", "fingerprint", "error_type", "error_line"]


def _schema(id_type: pa.DataType) -> pa.Schema:
    return pa.schema(
        [
            ("id", id_type),
            ("fingerprint", pa.string()),
            ("scores", pa.list_(pa.float64())),
            ("ranking", pa.list_(pa.int64())),
            ("input_tokens", pa.int64()),
            # Who scored the line (a fallback's model, when it fell back).
            ("model", pa.string()),
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
        self._superseded: set[RequestId] = set()

    @classmethod
    def open(
        cls,
        path: str,
        *,
        retry_failed: bool,
        warn: Callable[[str], None],
        part_rows: int = 10_000,
        overwrite: bool = False,
    ) -> tuple[ParquetOutput, DoneIds]:
        """Open (or create) the output directory, tidy it, and read the ids it holds.

        Args:
            path: The output directory.
            retry_failed: Drop the error rows first (part by part, each rewritten beside
                itself and renamed over it), so their requests run again.
            warn: Called with a one-line message when leftovers of a killed run are removed.
            part_rows: Records per part file, at most.
            overwrite: Replace what is there (a file, or a directory's Parquet files).

        Returns:
            The open output and the ids it holds.

        Raises:
            OSError: The directory cannot be made or is locked by another run.
            OutputRefusedError: ``path`` is a file, a device, or a directory that bulk did
                not write; nothing in it was changed.
        """
        _check_ours(path, overwrite=overwrite, warn=warn)
        os.makedirs(path, exist_ok=True)
        lock_fd = _lock_directory(path)
        try:
            if overwrite:
                clear_parquet_directory(path, keep=frozenset({_LOCK_NAME}))
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
            if done.repeated:
                _keep_last_rows(parts, done.repeated)
                warn(
                    f"{path}: {len(done.repeated):,} ids had an old row beside a newer one "
                    "(a run stopped before it removed them): removed the old ones"
                )
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
        columns["fingerprint"].append(record.get("fingerprint"))
        if error is None:
            scores: list[float] = record["scores"]
            columns["scores"].append(scores)
            columns["ranking"].append(record["ranking"])
            columns["input_tokens"].append(record.get("input_tokens"))
            columns["model"].append(record.get("model"))
            self._scores += len(scores)
            for name in ("error_type", "error_message", "error_status_code", "error_line"):
                columns[name].append(None)
        else:
            columns["scores"].append(None)
            columns["ranking"].append(None)
            columns["input_tokens"].append(None)
            columns["model"].append(None)
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

    def supersede(self, request_id: RequestId) -> None:
        """Note that this run scores ``request_id`` again: its old row goes at `close`."""
        self._superseded.add(request_id)

    def close(self) -> None:
        """Write what is buffered, remove old rows of rescored ids, then release the lock."""
        if self._lock_fd < 0:
            return
        try:
            self.flush()
            if self._superseded:
                _keep_last_rows(_parts(self.path), self._superseded)
                self._superseded.clear()
        finally:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _check_ours(path: str, *, overwrite: bool, warn: Callable[[str], None]) -> None:
    """Refuse, changing nothing, an output path that is not bulk's Parquet directory.

    Raises:
        OutputRefusedError: It is a file (unless ``overwrite``, which removes a regular
            file), a device, or a directory with other files or parts of another shape.
    """
    special = special_file_problem(path)
    if special is not None:
        raise OutputRefusedError(special)
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        if not overwrite:
            raise OutputRefusedError(
                f"{path} is a file; Parquet output is a directory of part files (see "
                "docs/bulk.md): name another output, or pass --overwrite to replace it"
            )
        os.unlink(path)
        warn(f"{path}: --overwrite: removed the file to make the output directory")
        return
    if overwrite:
        clutter = dataset_clutter(path)
        if clutter:  # checked before the lock file is made: refused means untouched
            raise OutputRefusedError(clutter_problem(path, clutter))
        return
    foreign = sorted(
        name
        for name in os.listdir(path)
        if not (_PART.fullmatch(name) or name == _LOCK_NAME or name.startswith(_TEMP_PREFIX))
    )
    if foreign:
        raise not_ours(path, f"it holds {', '.join(foreign[:5])}")
    wanted = set(_schema(pa.string()).names) - {"fingerprint", "model"}  # older parts lack them
    for part in _parts(path):
        try:
            names = set(pq.read_schema(part).names)
        except (OSError, pa.ArrowInvalid) as error:
            raise not_ours(path, f"{os.path.basename(part)} is not Parquet: {error}") from error
        if not wanted <= names:
            missing = ", ".join(sorted(wanted - names))
            raise not_ours(path, f"{os.path.basename(part)} has no {missing} column")


def _lock_directory(path: str) -> int:
    fd = os.open(os.path.join(path, _LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
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
        if columns is not None:  # an older part has no fingerprint column: read what is there
            names = set(pq.read_schema(part).names)
            columns = [name for name in columns if name in names or name == "id"]
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
        table = _read_part(part, _SCAN_COLUMNS)
        if id_type is None:
            id_type = table.schema.field("id").type
        fingerprints = (
            table.column("fingerprint").to_pylist()
            if "fingerprint" in table.column_names
            else [None] * table.num_rows
        )
        for request_id, fingerprint, error_type, line in zip(
            table.column("id").to_pylist(),
            fingerprints,
            table.column("error_type").to_pylist(),
            table.column("error_line").to_pylist(),
            strict=True,
        ):
            done.add(request_id, fingerprint, error_type=error_type, line=line)
    return done, id_type


def _keep_last_rows(parts: list[str], ids: set[RequestId]) -> None:
    """Rewrite the parts so that, of each id in ``ids``, only its last row stays."""
    last: dict[RequestId, tuple[int, int]] = {}
    for number, part in enumerate(parts):
        for row, (request_id, error_type, line) in enumerate(_heads(part)):
            if request_id in ids and not (error_type == DUPLICATE_ID and isinstance(line, int)):
                last[request_id] = (number, row)
    for number, part in enumerate(parts):
        keep = [
            request_id not in last
            or (error_type == DUPLICATE_ID and isinstance(line, int))
            or last[request_id] == (number, row)
            for row, (request_id, error_type, line) in enumerate(_heads(part))
        ]
        if all(keep):
            continue
        kept = _read_part(part).filter(pa.array(keep))
        if kept.num_rows == 0:
            os.unlink(part)  # atomic: the part's rows are all gone, or all still there
            fsync_directory(os.path.dirname(part))
        else:
            _write_atomically(kept, part)


def _heads(part: str) -> zip[tuple[Any, Any, Any]]:
    table = _read_part(part, ["id", "error_type", "error_line"])
    return zip(
        table.column("id").to_pylist(),
        table.column("error_type").to_pylist(),
        table.column("error_line").to_pylist(),
        strict=True,
    )
