"""File-system steps that the JSONL and Parquet outputs of ``rerank-async bulk`` share.

A leaf of the bulk modules: it imports nothing from them.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["fsync_directory"]


def fsync_directory(directory: str) -> None:
    """Flush a directory's entries to disk, so that a rename into it survives a power cut."""
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
