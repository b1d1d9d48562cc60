"""File-system steps that the JSONL, Parquet and Ray outputs of ``rerank-async bulk`` share.

The rule they serve: bulk never alters a file it did not write. An output path that
names a device, a pipe or a socket is refused before anything is opened (reading
``/dev/full`` or ``/dev/zero`` back to resume would never end); what is there already is
checked to be bulk's own, read-only, before a byte of it changes.

A leaf of the bulk modules: it imports nothing from them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from typing import Final

from ._common import MissingExtraError

__all__ = [
    "PARQUET_SUFFIXES",
    "OutputRefusedError",
    "check_regular",
    "clear_parquet_directory",
    "clutter_problem",
    "dataset_clutter",
    "fsync_directory",
    "is_parquet",
    "lock",
    "not_ours",
    "special_file_problem",
]

PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_OVERWRITE_HINT: Final = "name another output, or pass --overwrite to replace it"


class OutputRefusedError(ValueError):
    """The output exists and is not bulk's own (or cannot be one); nothing was changed."""


def is_parquet(path: str) -> bool:
    """Parquet by the path's extension (or an existing directory); needs the extra.

    Decided without importing pyarrow, so a JSONL run never pays for it.
    """
    if not (path.lower().endswith(PARQUET_SUFFIXES) or os.path.isdir(path)):
        return False
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(f"{error}: install rerank-async[parquet]") from error
    return True


def special_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be an output, when it names something other than a file or folder.

    Returns:
        One line naming the output and what it is, or ``None`` (absent, a regular
        file, a directory, or not readable here: opening it will say why).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return (
        f"the output {path} is {_kind(mode)}, not a regular file: bulk reads its output back "
        "to resume a run, so it writes only to a regular file (or, for Parquet, a directory)"
    )


def check_regular(fd: int, path: str) -> None:
    """Refuse an open output that is not a regular file (it changed since the path's check).

    Raises:
        OutputRefusedError: It is a device, a pipe, a socket or a directory.
    """
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise OutputRefusedError(
            f"the output {path} is {_kind(mode)}, not a regular file; name a file"
        )


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def not_ours(path: str, why: str) -> OutputRefusedError:
    """The error for an existing output that bulk did not write; it names the way out."""
    return OutputRefusedError(
        f"{path} is not a rerank-async bulk output ({why}); it was left as it is: {_OVERWRITE_HINT}"
    )


def lock(fd: int, path: str) -> None:
    """Take an exclusive ``flock`` on ``fd``, so two runs never write to one output.

    Raises:
        OSError: Another run holds it (``EBUSY``).
    """
    if sys.platform == "win32":  # no flock; the run is still crash-safe, just not exclusive
        return
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        raise OSError(
            errno.EBUSY, "another rerank-async bulk run is writing to this output", path
        ) from error


def dataset_clutter(path: str) -> list[str]:
    """The entries of a directory that ``--overwrite`` would not delete (sorted).

    Only files ending in ``.parquet`` / ``.pq``, bulk's dot-files (``.rerank-async.lock``,
    ``.part-*.tmp``) and other writers' markers (``_SUCCESS``, ``_metadata``, ``.crc``)
    are a dataset's; anything else (a subdirectory, a README) is not.
    """
    return sorted(
        name
        for name in os.listdir(path)
        if not os.path.isfile(os.path.join(path, name))
        or not (
            name.lower().endswith(PARQUET_SUFFIXES)
            or name in (".rerank-async.lock", "_SUCCESS", "_common_metadata", "_metadata")
            or (name.startswith(".part-") and name.endswith(".tmp"))
            or name.endswith(".crc")
        )
    )


def clutter_problem(path: str, clutter: list[str]) -> str:
    """Why ``--overwrite`` refuses a directory: it holds more than a Parquet dataset."""
    return (
        f"{path} holds more than a Parquet dataset ({', '.join(clutter[:5])}); --overwrite "
        "replaces only Parquet files and never empties a folder: name another output"
    )


def clear_parquet_directory(path: str, *, keep: frozenset[str] = frozenset()) -> None:
    """``--overwrite`` of a Parquet output directory: delete its dataset files.

    Raises:
        OutputRefusedError: The directory holds more than a dataset (`dataset_clutter`);
            nothing was deleted.
    """
    clutter = dataset_clutter(path)
    if clutter:
        raise OutputRefusedError(clutter_problem(path, clutter))
    for name in os.listdir(path):
        if name not in keep:
            os.unlink(os.path.join(path, name))
    fsync_directory(path)


def fsync_directory(directory: str) -> None:
    """Flush a directory's entries to disk, so that a rename into it survives a power cut."""
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
