"""``ScoreFile``: the SQLite file behind a ``ScoreCache`` with a path.

stdlib ``sqlite3`` in WAL mode: readers never block the writer, and several
processes may share one file, each write one short transaction. Scores are
written in batches: when no call is using the cache any more, at the latest a
second after they were stored, and when the client closes.

Two tables of digests, no plaintext (``CacheContext``):

* ``contexts``: one row per (provider, model, instruction, query) with scores in
  the file, stamped when last written. A call whose context is not there misses
  whole without hashing or probing its documents: a cold run's lookups cost one
  query a call, not one B-tree probe a document (1.8 us a document, 19% of the
  client's CPU, when every score was keyed by its digest alone;
  benchmarks/bench_fleet.py). Over ``max_entries``, the contexts written longest
  ago go first, each with its scores.
* ``scores``: one row per (context, document), keyed by the context's id and the
  pair's digest, so that one call's rows lie side by side; with a CRC of the
  digest and the score, so that a damaged row is dropped and scored again, never
  served (SQLite has no page checksums of its own). The digest covers the
  context too: a row under a wrong context id is never found.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from .._constants import LOGGER_NAME
from .cache_keys import CacheContext

__all__ = ["FILE_FORMAT", "FILE_VERSION", "ScoreCacheError", "ScoreFile"]

logger = logging.getLogger(LOGGER_NAME)

# What a file of ours says about itself in its ``meta`` table. Version 1 had no
# ``contexts`` table: such a file is rebuilt (its scores are only misses then).
FILE_FORMAT: Final = "rerank_async.score_cache"
FILE_VERSION: Final = "2"
_OLDER_VERSIONS: Final = frozenset({"1"})
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
_SCHEMA: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE contexts (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE,"
    " written INTEGER NOT NULL)",
    "CREATE TABLE scores (context INTEGER NOT NULL, key BLOB NOT NULL, score REAL NOT NULL,"
    " crc INTEGER NOT NULL, PRIMARY KEY (context, key)) WITHOUT ROWID",
)


class ScoreCacheError(Exception):
    """A cache file that cannot be used: not ours, damaged, or unreadable.

    Attributes:
        path: The file.
    """

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"score cache {str(path)!r}: {message}")
        self.path = path


class ScoreFile:
    """One process's connection to a cache file, opened and checked on first use."""

    def __init__(self, path: Path, *, max_entries: int, pid: int) -> None:
        self._path = path
        self._max_entries = max_entries
        self.pid = pid
        # Scores stored but not yet written, by context digest: read by lookups,
        # written by flush.
        self._pending: dict[bytes, dict[bytes, float]] = {}
        self._pending_rows = 0
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
            with self._transaction():
                self._check_or_create()
            (rows,) = connection.execute("SELECT count(*) FROM scores").fetchone()
            return int(rows)

    def _check_or_create(self) -> None:
        """Create the tables in a new file, rebuild one of an older version, refuse the
        rest (within the caller's transaction)."""
        connection = self._connection
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if tables:
            meta = (
                dict(connection.execute("SELECT name, value FROM meta")) if "meta" in tables else {}
            )
            if meta.get("format") != FILE_FORMAT or "scores" not in tables:
                raise ScoreCacheError(
                    self._path,
                    "is a SQLite file but not a rerank_async score cache; "
                    "pass another path (it is left as it is)",
                )
            version = meta.get("version")
            if version == FILE_VERSION:
                return
            if version not in _OLDER_VERSIONS:
                raise ScoreCacheError(
                    self._path,
                    f"has format version {version!r}, this version reads "
                    f"{FILE_VERSION!r} (a newer rerank_async wrote it?); pass another path",
                )
            logger.warning(
                "score cache %s: format version %s is older than %s; emptied and rebuilt "
                "(its scores will be fetched again)",
                self._path,
                version,
                FILE_VERSION,
            )
            for table in tables:
                connection.execute(f'DROP TABLE "{table}"')
        # One statement each: executescript would commit the transaction.
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("format", FILE_FORMAT), ("version", FILE_VERSION)]
        )

    def lookup(self, context: CacheContext, documents: Sequence[str]) -> list[float | None]:
        digest = context.digest()
        pending = self._pending.get(digest)
        context_id = self._context_id(digest)
        if context_id is None and pending is None:
            return [None] * len(documents)
        keys = context.keys(documents)
        found: dict[bytes, float] = {}
        if context_id is not None:
            found = self._read(
                context_id, [key for key in keys if key not in pending] if pending else keys
            )
        if pending:
            found.update((key, pending[key]) for key in keys if key in pending)
        return [found.get(key) for key in keys]

    def _context_id(self, digest: bytes) -> int | None:
        """The file's id for this context, ``None`` when it holds no scores of it (asked
        each time: another process may have written it since this one last looked)."""
        with self._errors_named("could not be read (damaged?)"):
            row = self._connection.execute(
                "SELECT id FROM contexts WHERE key = ?", (digest,)
            ).fetchone()
        return None if row is None else int(row[0])

    def _read(self, context_id: int, keys: Sequence[bytes]) -> dict[bytes, float]:
        """The intact scores of ``keys`` under one context; a damaged row is left out."""
        found: dict[bytes, float] = {}
        damaged = 0
        with self._errors_named("could not be read (damaged?)"):
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = keys[start : start + _KEYS_PER_QUERY]
                marks = ",".join("?" * len(chunk))
                for key, score, crc in self._connection.execute(
                    "SELECT key, score, crc FROM scores"  # noqa: S608 - marks only
                    f" WHERE context = ? AND key IN ({marks})",
                    (context_id, *chunk),
                ):
                    if (
                        isinstance(key, bytes)
                        and isinstance(score, float)
                        and crc == _crc(key, score)
                    ):
                        found[key] = score
                    else:
                        damaged += 1
        if damaged:
            logger.warning(
                "score cache %s: %d damaged entries ignored (scored again)", self._path, damaged
            )
        return found

    def store(
        self, context: CacheContext, documents: Sequence[str], scores: Sequence[float]
    ) -> None:
        self._pending.setdefault(context.digest(), {}).update(
            zip(context.keys(documents), scores, strict=True)
        )
        self._pending_rows += len(documents)
        if self._pending_rows >= _FLUSH_ROWS or time.monotonic() - self._flushed > _FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the held-back scores in one transaction: SQLite's cost is per page
        touched, so many rows a transaction (64 rows cost 8.5 us a row, 4,096 rows
        2.8 us, measured), and each context's rows side by side (2.2 us a row against
        4.9 for the same rows keyed by their digest alone, measured)."""
        self._flushed = time.monotonic()
        if not self._pending:
            return
        written = time.time_ns()
        pending, self._pending, self._pending_rows = self._pending, {}, 0
        with self._errors_named("could not be written"), self._transaction() as connection:
            for digest, scores in pending.items():
                context_id = self._written_context(digest, written)
                connection.executemany(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                    [(context_id, key, score, _crc(key, score)) for key, score in scores.items()],
                )
                self._rows += len(scores)
            if self._rows > self._max_entries * (1 + _TRIM_SLACK):
                self._trim()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, rolled back on any error. ``BEGIN IMMEDIATE`` takes
        the write lock at once: another process's writer waits for it (the
        connection's timeout) instead of failing halfway."""
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _written_context(self, digest: bytes, written: int) -> int:
        """The id of this context's row, added or stamped ``written`` (within the
        caller's transaction; no UPSERT, which SQLite builds before 3.24 lack)."""
        connection = self._connection
        cursor = connection.execute(
            "INSERT OR IGNORE INTO contexts (key, written) VALUES (?, ?)", (digest, written)
        )
        if cursor.rowcount == 1 and cursor.lastrowid is not None:
            return cursor.lastrowid
        connection.execute("UPDATE contexts SET written = ? WHERE key = ?", (written, digest))
        (context_id,) = connection.execute(
            "SELECT id FROM contexts WHERE key = ?", (digest,)
        ).fetchone()
        return int(context_id)

    def _trim(self) -> None:
        """Back to ``max_entries``: the contexts written longest ago go first, each with
        all its scores (within the caller's transaction)."""
        connection = self._connection
        (rows,) = connection.execute("SELECT count(*) FROM scores").fetchone()
        excess = int(rows) - self._max_entries
        if excess > 0:
            doomed: list[tuple[int]] = []
            for (context_id,) in connection.execute(
                "SELECT id FROM contexts ORDER BY written, id"
            ).fetchall():
                if excess <= 0:
                    break
                (count,) = connection.execute(
                    "SELECT count(*) FROM scores WHERE context = ?", (context_id,)
                ).fetchone()
                excess -= int(count)
                rows -= int(count)
                doomed.append((context_id,))
            connection.executemany("DELETE FROM scores WHERE context = ?", doomed)
            connection.executemany("DELETE FROM contexts WHERE id = ?", doomed)
        self._rows = int(rows)

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
