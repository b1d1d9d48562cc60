"""Pure functions for splitting a call into batches and merging the scores back.

Nothing here does I/O or imports from the rest of the package, so every rule
is testable as a table or a property.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import TypeVar

__all__ = [
    "Deduper",
    "ScoreSlots",
    "dedupe",
    "fan_out",
    "has_duplicates",
    "plan_batches",
    "rank_indices",
    "split_by_budget",
]


def plan_batches(
    n_documents: int,
    *,
    batch_size: int,
    min_batch_size: int,
    free_slots: int,
    max_spread: int | None = None,
) -> list[tuple[int, int]]:
    """Split ``range(n_documents)`` into balanced, contiguous ``(start, stop)`` spans.

    The fewest requests that respect ``batch_size`` is ``ceil(n / batch_size)``.
    When that leaves concurrency slots idle, the call is spread over up to
    ``free_slots`` requests (none smaller than ``min_batch_size``) so that it
    finishes in one round trip instead of waiting on a few large batches.
    Sizes differ by at most one: 100 documents at 32 give 25/25/25/25.

    Args:
        n_documents: How many documents to split.
        batch_size: Most documents per request (>= 1).
        min_batch_size: Fewest documents per request when spreading (>= 1).
        free_slots: Requests that could start now without waiting (>= 1).
        max_spread: Spreading makes at most this many times the fewest
            requests (``None``: no such cap).

    Returns:
        Spans in document order; empty for zero documents.
    """
    if n_documents <= 0:
        return []
    n_batches = -(-n_documents // batch_size)
    if n_batches < free_slots:
        spread = min(free_slots, n_documents // max(min_batch_size, 1))
        if max_spread is not None:
            spread = min(spread, max_spread * n_batches)
        n_batches = max(n_batches, spread)
    base, extra = divmod(n_documents, n_batches)
    spans: list[tuple[int, int]] = []
    start = 0
    for i in range(n_batches):
        stop = start + base + (1 if i < extra else 0)
        spans.append((start, stop))
        start = stop
    return spans


def split_by_budget(
    spans: Sequence[tuple[int, int]], costs: Sequence[int], budget: int
) -> list[tuple[int, int]]:
    """Cut spans further so that no request's summed cost exceeds ``budget``.

    Providers with a token budget per request (Voyage: query tokens x documents
    + document tokens <= 600K) need this on top of the count limit. Each span is
    packed greedily and in order; a single document over the budget still gets a
    request of its own, so the server, not the client, decides its fate.

    Args:
        spans: ``(start, stop)`` spans from ``plan_batches``.
        costs: Cost of each document, by index.
        budget: Most total cost per request (>= 1).
    """
    result: list[tuple[int, int]] = []
    for start, stop in spans:
        piece_start, total = start, 0
        for index in range(start, stop):
            cost = costs[index]
            if total + cost > budget and index > piece_start:
                result.append((piece_start, index))
                piece_start, total = index, 0
            total += cost
        result.append((piece_start, stop))
    return result


def has_duplicates(documents: Sequence[str]) -> bool:
    """Whether any document appears twice: one C-speed set build, no per-item Python loop.

    Most calls have no duplicates; checking first lets them skip ``dedupe``'s
    loop (5.5 µs against 0.8 µs for 32 short documents, measured).
    """
    return len(set(documents)) != len(documents)


class Deduper:
    """``dedupe`` fed in pieces, so a large call can yield to the event loop between them.

    Hashing 40 MB of text (20,000 documents of 2 KB) takes tens of milliseconds;
    in one piece it would stall every other task on the loop.
    """

    __slots__ = ("_first_seen", "positions", "unique")

    def __init__(self) -> None:
        self._first_seen: dict[str, int] = {}
        self.unique: list[str] = []
        self.positions: list[int] = []

    def add(self, documents: Iterable[str]) -> None:
        """Take the next documents of the call, in order."""
        first_seen, unique, positions = self._first_seen, self.unique, self.positions
        for document in documents:
            slot = first_seen.get(document)
            if slot is None:
                slot = len(unique)
                first_seen[document] = slot
                unique.append(document)
            positions.append(slot)


def dedupe(documents: Sequence[str]) -> tuple[list[str], list[int]]:
    """Collapse identical documents so each distinct text is scored once.

    Returns:
        ``(unique, positions)``: ``unique`` keeps first occurrences in order, and
        ``documents[i] == unique[positions[i]]`` for every ``i``.
    """
    deduper = Deduper()
    deduper.add(documents)
    return deduper.unique, deduper.positions


class ScoreSlots:
    """A score list sized in advance that every batch fills exactly once.

    Batches complete in any order; writing a slot twice, or reading the result
    with a slot still empty, is a bug and raises instead of returning a score
    on the wrong document.
    """

    __slots__ = ("_filled", "_scores")

    def __init__(self, size: int) -> None:
        self._scores: list[float | None] = [None] * size
        self._filled = 0

    @property
    def filled(self) -> int:
        """How many slots hold a score."""
        return self._filled

    def is_filled(self, index: int) -> bool:
        """Whether slot ``index`` holds a score."""
        return self._scores[index] is not None

    def fill(self, start: int, scores: Sequence[float]) -> None:
        """Store ``scores`` at ``start, start + 1, ...``."""
        stop = start + len(scores)
        if start < 0 or stop > len(self._scores):
            raise IndexError(f"span [{start}, {stop}) is outside 0..{len(self._scores)}")
        if self._scores[start:stop].count(None) != stop - start:  # C speed, no generator
            raise RuntimeError(f"span [{start}, {stop}) was already scored")
        self._scores[start:stop] = scores
        self._filled += len(scores)

    def snapshot(self) -> list[float | None]:
        """A copy of the slots as they are: a score, or ``None`` where none came."""
        return list(self._scores)

    def complete(self) -> list[float]:
        """Return every score, checking that no slot was left empty."""
        if self._filled != len(self._scores):
            missing = [i for i, score in enumerate(self._scores) if score is None]
            raise RuntimeError(f"{len(missing)} document(s) have no score, first {missing[0]}")
        return self._scores  # type: ignore[return-value]  # all filled, checked above


T = TypeVar("T")


def fan_out(unique_scores: Sequence[T], positions: Iterable[int]) -> list[T]:
    """Give every original position the score (or gap) of its distinct document."""
    return [unique_scores[slot] for slot in positions]


def rank_indices(scores: Sequence[float], top_k: int | None = None) -> list[int]:
    """Indices by score, best first; equal scores keep the lower index first."""

    def order(index: int) -> tuple[float, int]:
        return (-scores[index], index)

    indices = range(len(scores))
    if top_k is not None and top_k < len(scores):
        # O(n log k): a top-10 of 10,000 candidates needs no full sort.
        return heapq.nsmallest(top_k, indices, key=order)
    return sorted(indices, key=order)
