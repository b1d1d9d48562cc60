"""``CallState``: the mutable state of one ``rerank`` call, shared by its batch tasks."""

from __future__ import annotations

import math

from anyio.abc import TaskGroup

from ._batching import ScoreSlots, dedupe, fan_out
from .providers import BatchScores

__all__ = ["CallState", "batch_range_bounds"]


def batch_range_bounds(document_range: tuple[int, int]) -> tuple[int, int]:
    """``(first, last)`` inclusive indices of a ``(start, stop)`` range, for messages."""
    return document_range[0], document_range[1] - 1


class CallState:
    """What one call's batches write to: score slots, counters, the first error.

    Args:
        query: The call's query.
        unique: The documents to send (deduplicated when dedupe found any).
        positions: For each caller document, its slot in ``unique``; ``None``
            when ``unique`` is the caller's list itself.
    """

    __slots__ = (
        "batches",
        "deadline",
        "error",
        "first_index",
        "hedges",
        "input_tokens",
        "positions",
        "query",
        "requests",
        "retries",
        "slots",
        "task_group",
        "unique",
    )

    task_group: TaskGroup

    def __init__(self, *, query: str, unique: list[str], positions: list[int] | None) -> None:
        self.query = query
        self.unique = unique
        self.positions = positions
        self.slots = ScoreSlots(len(unique))
        self.deadline = math.inf
        self.error: Exception | None = None
        self.batches = 0
        self.requests = 0
        self.retries = 0
        self.hedges = 0
        self.input_tokens: int | None = None
        # Where each distinct document first appears, so messages name the
        # caller's indices rather than positions in the deduplicated list.
        self.first_index: list[int] | None = None
        if positions is not None:
            self.first_index = [0] * len(unique)
            seen = 0
            for index, slot in enumerate(positions):
                if slot == seen:
                    self.first_index[slot] = index
                    seen += 1

    @classmethod
    def for_documents(cls, query: str, documents: list[str], *, dedupe_them: bool) -> CallState:
        """A call's state, sending identical documents once when ``dedupe_them``."""
        if dedupe_them:
            unique, positions = dedupe(documents)
            if len(unique) < len(documents):  # without duplicates, skip the fan-out copy
                return cls(query=query, unique=unique, positions=positions)
        return cls(query=query, unique=documents, positions=None)

    def caller_scores(self) -> list[float]:
        """Every caller document's score, in the caller's order; all slots must be filled."""
        unique_scores = self.slots.complete()
        return unique_scores if self.positions is None else fan_out(unique_scores, self.positions)

    def document_range(self, start: int, stop: int) -> tuple[int, int]:
        """The caller's ``(start, stop)`` for slots ``start:stop`` of ``unique``."""
        if self.first_index is None:
            return start, stop
        return self.first_index[start], self.first_index[stop - 1] + 1

    def record(self, start: int, result: BatchScores) -> None:
        """Write a batch's scores from slot ``start`` on and add its token count."""
        self.slots.fill(start, result.scores)
        if result.input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + result.input_tokens

    def fail(self, error: Exception) -> None:
        """Keep the first error and cancel the call's other batches."""
        if self.error is None:
            self.error = error
            self.task_group.cancel_scope.cancel()

    def documents_scored(self) -> int:
        """How many of the caller's documents have a score so far."""
        if self.positions is None:
            return self.slots.filled
        return sum(1 for slot in self.positions if self.slots.is_filled(slot))
