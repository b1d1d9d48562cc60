"""Parquet input for ``rerank-async bulk``: the rows of a file or a directory of files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Final

import anyio.to_thread
import pyarrow.parquet as pq

from .._many import RerankRequest
from ._bulk_files import PARQUET_SUFFIXES
from ._bulk_input import BadLine, parse_value

__all__ = ["ParquetSource", "count_parquet_rows"]

# Input rows decoded at a time (one Arrow record batch).
_READ_ROWS: Final = 1024
# The columns of an input row that a request reads; any others are ignored.
_INPUT_COLUMNS: Final = ("id", "query", "documents", "top_k")


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
