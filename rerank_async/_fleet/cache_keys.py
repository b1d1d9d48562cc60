"""``CacheContext``: the keys of one call's scores in a ``ScoreCache``.

A score's key covers the provider, the model, the instruction, the query and the
document: scores of different models (or instructions) are not comparable and
never share an entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Iterable

__all__ = ["CacheContext"]


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

    def digest(self) -> bytes:
        """The context's own 16-byte digest: a file's record that it holds scores of it."""
        return self._hashed_prefix().digest()

    def keys(self, documents: Iterable[str]) -> list[bytes]:
        """One 16-byte digest per document, in order: the file's keys."""
        # A copy of the hashed prefix beats hashing it again, a keyed BLAKE2b (0.65 us
        # a document against 0.3) and SHA-1 on the concatenation (measured).
        copy = self._hashed_prefix().copy
        keys: list[bytes] = []
        append = keys.append
        for document in documents:
            digest = copy()
            digest.update(document.encode("utf-8", "surrogatepass"))
            append(digest.digest())
        return keys

    def _hashed_prefix(self) -> hashlib.blake2b:
        prefix = self._prefix
        if prefix is None:
            # JSON with explicit lengths: no two different tuples encode alike.
            text = json.dumps(self._head, ensure_ascii=False)
            prefix = hashlib.blake2b(digest_size=16, person=b"rerank-async")
            prefix.update(text.encode("utf-8", "surrogatepass"))
            self._prefix = prefix
        return prefix
