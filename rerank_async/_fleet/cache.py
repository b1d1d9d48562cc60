"""``ScoreCache``: scores already obtained, by a content hash of what was scored.

The key of one score covers the provider, the model, the instruction, the query
and the document (``CacheContext``), so that two models (or two instructions)
never share an entry: scores of different models are not comparable. Only scores
a server returned are stored.

Without ``path`` the entries live in an in-memory LRU; with ``path``, in a SQLite
file of digests, no plaintext (``ScoreFile``).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from pathlib import Path
from typing import Final

from .._checks import check_int
from .cache_file import ScoreCacheError, ScoreFile
from .cache_keys import CacheContext

__all__ = ["CacheContext", "ScoreCache", "ScoreCacheError"]

DEFAULT_MAX_ENTRIES: Final = 100_000
# Connections a forked child inherited: held, never used nor closed (see ScoreCache._file).
_FORKED_AWAY: Final[list[ScoreFile]] = []


class ScoreCache:
    """Scores kept across calls: an in-memory LRU, or a SQLite file shared across runs.

    Pass one to ``RerankClient(cache=...)``; several clients (of any models) and
    several processes (with ``path``) may share it. A call sends only the pairs
    the cache lacks and merges the rest in order.

    Args:
        path: A file to keep the scores in (created if missing); ``None`` keeps them
            in memory for the life of the object.
        max_entries: Most scores kept; the least recently used go first in memory,
            the oldest written in a file.

    Raises:
        TypeError, ValueError: A bad argument (the message names it).
        ScoreCacheError: From the first call that uses it, when ``path`` is not a
            score cache of ours or is damaged; the message names the file.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str, a path or None, not {type(path).__name__}")
        check_int("max_entries", max_entries, minimum=1)
        self._path = None if path is None else Path(path)
        self._max_entries = max_entries
        self._memory: OrderedDict[Hashable, float] = OrderedDict()
        self._db: ScoreFile | None = None
        self._users = 0

    @property
    def path(self) -> Path | None:
        """The file, or ``None`` for an in-memory cache."""
        return self._path

    @property
    def max_entries(self) -> int:
        """Most scores kept."""
        return self._max_entries

    def __repr__(self) -> str:
        return f"ScoreCache(path={self._path!r}, max_entries={self._max_entries})"

    def lookup(self, context: CacheContext, documents: Sequence[str]) -> list[float | None]:
        """The stored score of each document under ``context``, ``None`` where there is none.

        Raises:
            ScoreCacheError: The file is not ours, or is damaged.
        """
        if self._path is not None:
            return self._file().lookup(context, documents)
        memory = self._memory
        keys = context.pairs(documents)
        found = list(map(memory.get, keys))
        for key, score in zip(keys, found, strict=True):
            if score is not None:
                memory.move_to_end(key)
        return found

    def store(
        self, context: CacheContext, documents: Sequence[str], scores: Sequence[float]
    ) -> None:
        """Keep ``scores[i]`` for ``documents[i]`` under ``context``; the oldest go once
        over ``max_entries``.

        Raises:
            ScoreCacheError: The file is not ours, or is damaged.
        """
        if not documents:
            return
        if self._path is not None:
            self._file().store(context, documents, scores)
            return
        memory = self._memory
        # New keys go to the end; a key stored again keeps its place (it was just
        # looked up, and missed, so it is rare).
        memory.update(zip(context.pairs(documents), scores, strict=True))
        while len(memory) > self._max_entries:
            memory.popitem(last=False)

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Held by each call while it looks up and stores: when the last one in flight
        ends, the file is written, so that the next client (or process) finds what a
        lone call stored; calls that overlap, as in bulk work, write in batches.

        Raises:
            ScoreCacheError: The file could not be written.
        """
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            if self._users == 0 and self._db is not None:
                self._db.flush()

    def flush(self) -> None:
        """Write the scores a file cache holds back to the file (``RerankClient.aclose``
        does); nothing to do in memory.

        Raises:
            ScoreCacheError: The file could not be written.
        """
        if self._db is not None:
            self._db.flush()

    def close(self) -> None:
        """Flush and close the file (a later use opens it again); nothing to do in memory."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def _file(self) -> ScoreFile:
        if self._db is not None and self._db.pid != os.getpid():
            # Forked: SQLite forbids using a connection across fork(), and closing it in
            # the child may checkpoint the parent's WAL; it is kept open, never used,
            # and the child opens its own.
            _FORKED_AWAY.append(self._db)
            self._db = None
        if self._db is None:
            assert self._path is not None
            self._db = ScoreFile(self._path, max_entries=self._max_entries, pid=os.getpid())
        return self._db
