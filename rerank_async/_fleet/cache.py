"""``ScoreCache``: scores already obtained, by a content hash of what was scored.

The key of one score is a BLAKE2b digest of the provider, the model, the
instruction, the query and the document, so that the file holds no plaintext
and two models (or two instructions) never share an entry: scores of different
models are not comparable. Only scores a server returned are stored.

Without ``path`` the entries live in an in-memory LRU. With ``path`` they live in
a SQLite file in WAL mode (stdlib ``sqlite3``: readers never block the writer, and
several processes may share one file, each write one short transaction; scores are
written in batches: when no call is using the cache any more, at the latest a second
after they were stored, and when the client closes). Each
row carries a CRC of its key and score, so a damaged row is dropped and scored
again, never served (SQLite has no page checksums of its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, cast

from .._checks import check_int
from .._constants import LOGGER_NAME

__all__ = ["CacheContext", "ScoreCache", "ScoreCacheError"]

logger = logging.getLogger(LOGGER_NAME)

DEFAULT_MAX_ENTRIES: Final = 100_000
# What a file of ours says about itself in its ``meta`` table.
FILE_FORMAT: Final = "rerank_async.score_cache"
FILE_VERSION: Final = "1"
# Keys per SELECT: below SQLite's oldest limit of 999 bound parameters.
_KEYS_PER_QUERY: Final = 500
# A file is trimmed back to max_entries once it holds this share more (one DELETE per
# many writes instead of one per write).
_TRIM_SLACK: Final = 0.1
# Scores held back before one write: a file is written at most this long after a store,
# and always by flush() (RerankClient.aclose) and close().
_FLUSH_ROWS: Final = 4096
_FLUSH_S: Final = 1.0
_PAGE_CACHE_KIB: Final = 32 * 1024
_MMAP_BYTES: Final = 256 * 1024 * 1024
_SCORE: Final = struct.Struct("<d")
# Connections a forked child inherited: held, never used nor closed (see ScoreCache._file).
_FORKED_AWAY: Final[list[_ScoreFile]] = []
_SCHEMA: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE scores (key BLOB PRIMARY KEY, score REAL NOT NULL,"
    " crc INTEGER NOT NULL, written INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX scores_written ON scores (written)",
)


class ScoreCacheError(Exception):
    """A cache file that cannot be used: not ours, damaged, or unreadable.

    Attributes:
        path: The file.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"score cache {str(path)!r}: {message}")
        self.path = path


class CacheContext:
    """What every key of one call shares: provider, model, instruction and query.

    In memory a key is ``(context, document)`` itself: exact, and about 0.1 us a
    document where hashing costs 0.3-0.5 (the target is 5% of the client's CPU per
    document, about 9 us; benchmarks/bench_fleet.py). In a file it is a digest, so
    that the file holds no plaintext: the context's hash continued by the document
    (``hashlib``'s ``copy``), the context hashed once however many documents there are.
    """

    __slots__ = ("_head", "_prefix")

    def __init__(self, provider: str, model: str, instruction: str | None, query: str) -> None:
        self._head = (provider, model, instruction, query)
        self._prefix: hashlib.blake2b | None = None

    def pairs(self, documents: Iterable[str]) -> list[Hashable]:
        """The in-memory key of each document, in order."""
        head = self._head
        return [(head, document) for document in documents]

    def keys(self, documents: Iterable[str]) -> list[bytes]:
        """One 16-byte digest per document, in order: the file's keys."""
        prefix = self._prefix
        if prefix is None:
            # JSON with explicit lengths: no two different tuples encode alike.
            text = json.dumps(self._head, ensure_ascii=False)
            prefix = hashlib.blake2b(digest_size=16, person=b"rerank-async")
            prefix.update(text.encode("utf-8", "surrogatepass"))
            self._prefix = prefix
        # A copy of the hashed prefix beats hashing it again, a keyed BLAKE2b (0.65 us
        # a document against 0.3) and SHA-1 on the concatenation (measured).
        copy = prefix.copy
        keys: list[bytes] = []
        append = keys.append
        for document in documents:
            digest = copy()
            digest.update(document.encode("utf-8", "surrogatepass"))
            append(digest.digest())
        return keys


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
        self._db: _ScoreFile | None = None
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

    def keys(self, context: CacheContext, documents: Iterable[str]) -> Sequence[Hashable]:
        """The key of each document under ``context``, for ``lookup`` and ``store``."""
        return context.pairs(documents) if self._path is None else context.keys(documents)

    def lookup(self, keys: Sequence[Hashable]) -> list[float | None]:
        """The stored score of each key, ``None`` where there is none.

        Raises:
            ScoreCacheError: The file is not ours, or is damaged.
        """
        if self._path is None:
            memory = self._memory
            found = list(map(memory.get, keys))
            for key, score in zip(keys, found, strict=True):
                if score is not None:
                    memory.move_to_end(key)
            return found
        return self._file().lookup(cast("Sequence[bytes]", keys))

    def store(self, keys: Sequence[Hashable], scores: Sequence[float]) -> None:
        """Keep ``scores[i]`` under ``keys[i]``; the oldest go once over ``max_entries``.

        Raises:
            ScoreCacheError: The file is not ours, or is damaged.
        """
        if not keys:
            return
        if self._path is None:
            memory = self._memory
            # New keys go to the end; a key stored again keeps its place (it was just
            # looked up, and missed, so it is rare).
            memory.update(zip(keys, scores, strict=True))
            while len(memory) > self._max_entries:
                memory.popitem(last=False)
            return
        self._file().store(cast("Sequence[bytes]", keys), scores)

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

    def _file(self) -> _ScoreFile:
        if self._db is not None and self._db.pid != os.getpid():
            # Forked: SQLite forbids using a connection across fork(), and closing it in
            # the child may checkpoint the parent's WAL; it is kept open, never used,
            # and the child opens its own.
            _FORKED_AWAY.append(self._db)
            self._db = None
        if self._db is None:
            assert self._path is not None
            self._db = _ScoreFile(self._path, max_entries=self._max_entries)
        return self._db


class _ScoreFile:
    """The SQLite file behind a ``ScoreCache`` with a path, opened on first use."""

    def __init__(self, path: Path, *, max_entries: int) -> None:
        self._path = path
        self._max_entries = max_entries
        self.pid = os.getpid()
        # Scores stored but not yet written: read by lookups, written by flush.
        self._pending: dict[bytes, float] = {}
        self._flushed = time.monotonic()
        try:
            # isolation_level=None: each write is one explicit BEGIN IMMEDIATE ... COMMIT;
            # timeout: wait this long for another process's write, not fail at once.
            self._connection = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise ScoreCacheError(path, f"cannot be opened: {error}") from error
        try:
            self._rows = self._open_checked()
        except BaseException:
            self._connection.close()
            raise

    def _open_checked(self) -> int:
        with self._errors_named("is not a score cache, or is damaged"):
            connection = self._connection
            connection.execute("PRAGMA journal_mode=WAL")
            # WAL in NORMAL sync stays consistent on a crash; a lost last write is a miss.
            connection.execute("PRAGMA synchronous=NORMAL")
            # Lookups of random keys read one page each: a larger page cache and reads
            # through mmap halve their cost on a 100,000-row file (3.4 to 1.3 us a key
            # missing, 4.7 to 1.8 found, measured). Both grow only as pages are read.
            connection.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
            connection.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            connection.execute("BEGIN IMMEDIATE")
            try:
                tables = {
                    name
                    for (name,) in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )
                }
                if not tables:
                    # One statement each: executescript would commit the transaction.
                    for statement in _SCHEMA:
                        connection.execute(statement)
                    connection.executemany(
                        "INSERT INTO meta VALUES (?, ?)",
                        [("format", FILE_FORMAT), ("version", FILE_VERSION)],
                    )
                    connection.execute("COMMIT")
                    return 0
                meta = (
                    dict(connection.execute("SELECT name, value FROM meta"))
                    if ("meta" in tables)
                    else {}
                )
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            if meta.get("format") != FILE_FORMAT or "scores" not in tables:
                raise ScoreCacheError(
                    self._path,
                    "is a SQLite file but not a rerank_async score cache; "
                    "pass another path (it is left as it is)",
                )
            if meta.get("version") != FILE_VERSION:
                raise ScoreCacheError(
                    self._path,
                    f"has format version {meta.get('version')!r}, this version reads "
                    f"{FILE_VERSION!r}; pass another path",
                )
            (rows,) = connection.execute("SELECT count(*) FROM scores").fetchone()
            return int(rows)

    def lookup(self, keys: Sequence[bytes]) -> list[float | None]:
        pending = self._pending
        found: dict[bytes, float] = {}
        damaged: list[bytes] = []
        unwritten = [key for key in keys if key not in pending] if pending else keys
        with self._errors_named("could not be read (damaged?)"):
            for start in range(0, len(unwritten), _KEYS_PER_QUERY):
                chunk = unwritten[start : start + _KEYS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                for key, score, crc in self._connection.execute(
                    f"SELECT key, score, crc FROM scores WHERE key IN ({marks})",  # noqa: S608 - marks only
                    chunk,
                ):
                    if (
                        isinstance(key, bytes)
                        and isinstance(score, float)
                        and crc == _crc(key, score)
                    ):
                        found[key] = score
                    else:
                        damaged.append(key)
        if damaged:
            logger.warning(
                "score cache %s: %d damaged entries ignored (scored again)",
                self._path,
                len(damaged),
            )
        if pending:
            found.update((key, pending[key]) for key in keys if key in pending)
        return [found.get(key) for key in keys]

    def store(self, keys: Sequence[bytes], scores: Sequence[float]) -> None:
        self._pending.update(zip(keys, scores, strict=True))
        if len(self._pending) >= _FLUSH_ROWS or time.monotonic() - self._flushed > _FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the held-back scores in one transaction: SQLite's cost is per page
        touched, and random keys touch one page each (64 rows a transaction cost
        8.5 us a row, 4,096 rows 2.8 us, measured)."""
        self._flushed = time.monotonic()
        if not self._pending:
            return
        written = time.time_ns()
        rows = [(key, score, _crc(key, score), written) for key, score in self._pending.items()]
        self._pending = {}
        connection = self._connection
        with self._errors_named("could not be written"):
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)
                self._rows += len(rows)
                if self._rows > self._max_entries * (1 + _TRIM_SLACK):
                    self._trim()
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def _trim(self) -> None:
        """Drop the oldest rows over ``max_entries`` (within the caller's transaction)."""
        connection = self._connection
        (rows,) = connection.execute("SELECT count(*) FROM scores").fetchone()
        excess = int(rows) - self._max_entries
        if excess > 0:
            connection.execute(
                "DELETE FROM scores WHERE key IN (SELECT key FROM scores ORDER BY written LIMIT ?)",
                (excess,),
            )
        self._rows = min(int(rows), self._max_entries)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._connection.close()

    def _errors_named(self, what: str) -> _NamedErrors:
        return _NamedErrors(self._path, what)


class _NamedErrors:
    """Turns a ``sqlite3.DatabaseError`` into a ``ScoreCacheError`` naming the file."""

    __slots__ = ("_path", "_what")

    def __init__(self, path: Path, what: str) -> None:
        self._path = path
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlite3.DatabaseError):
            raise ScoreCacheError(self._path, f"{self._what}: {exc}") from exc


def _crc(key: bytes, score: float) -> int:
    return zlib.crc32(_SCORE.pack(score), zlib.crc32(key))
