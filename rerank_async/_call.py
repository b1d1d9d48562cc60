"""``CallState``: one call's mutable state, and ``run_to_deadline``, the one way a call runs.

Plain calls (``_runner``) and packed calls (``_packed``) both run their work through
``run_to_deadline``: one deadline, the first error kept, and ``error.partial`` on
every failure.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
from anyio.abc import TaskGroup

from ._batching import Deduper, ScoreSlots, dedupe, fan_out, has_duplicates
from ._exceptions import DeadlineExceededError, RerankError, is_endpoint_wide
from ._partial import PartialScores
from .providers import BatchScores

__all__ = ["LARGE_CALL_CHARS", "CallState", "batch_range_bounds", "run_to_deadline"]

# Characters of text above which a call's whole-call passes (dedupe's hashing) run a
# slice per turn of the event loop: hashing 40 MB takes tens of milliseconds, measured.
LARGE_CALL_CHARS: Final = 1_000_000
# Characters hashed per turn when deduplicating a large call.
_TURN_CHARS: Final = 250_000


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
        "instruction",
        "large",
        "positions",
        "query",
        "requests",
        "retries",
        "slots",
        "spread",
        "task_group",
        "unique",
    )

    def __init__(
        self,
        *,
        query: str,
        unique: list[str],
        positions: list[int] | None,
        large: bool = False,
        spread: bool = True,
    ) -> None:
        # Set while the call's batches run in a task group; a one-batch call has none.
        self.task_group: TaskGroup | None = None
        # Over LARGE_CALL_CHARS of text: its batches start one per turn of the event loop.
        self.large = large
        self.query = query
        # The call's instruction, sent in the provider's own field; None: none.
        self.instruction: str | None = None
        # Whether the planner may spread the call over idle slots (not for a resume).
        self.spread = spread
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
    async def for_documents(
        cls, query: str, documents: list[str], *, dedupe_them: bool, spread: bool = True
    ) -> CallState:
        """A call's state, sending identical documents once when ``dedupe_them``.

        Most calls have no duplicates, and a C-speed set check skips dedupe's
        loop for them. A large call is deduplicated a slice per turn of the
        event loop, so that hashing megabytes of text stalls no other task.
        """
        chars = sum(map(len, documents))
        large = chars >= LARGE_CALL_CHARS
        if not dedupe_them:
            return cls(query=query, unique=documents, positions=None, large=large, spread=spread)
        if not large:
            if not has_duplicates(documents):
                return cls(query=query, unique=documents, positions=None, spread=spread)
            unique, positions = dedupe(documents)
            return cls(query=query, unique=unique, positions=positions, spread=spread)
        deduper = Deduper()
        step = max(1, len(documents) * _TURN_CHARS // chars)
        for start in range(0, len(documents), step):
            deduper.add(documents[start : start + step])
            await anyio.lowlevel.checkpoint()
        if len(deduper.unique) == len(documents):
            return cls(query=query, unique=documents, positions=None, large=True, spread=spread)
        return cls(
            query=query,
            unique=deduper.unique,
            positions=deduper.positions,
            large=True,
            spread=spread,
        )

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

    def partial_scores(self) -> PartialScores:
        """What the call has scored so far, in the caller's order (``None`` where missing)."""
        kept = self.slots.snapshot()
        return PartialScores.from_scores(
            kept if self.positions is None else fan_out(kept, self.positions)
        )

    def fail(self, error: Exception) -> None:
        """Keep the first error. The other batches keep going, so that their scores
        are kept, unless the error holds for every batch of the endpoint."""
        if self.error is None:
            self.error = error
        if self.task_group is not None and (
            not isinstance(error, RerankError) or is_endpoint_wide(error)
        ):
            self.task_group.cancel_scope.cancel()

    def documents_scored(self) -> int:
        """How many of the caller's documents have a score so far."""
        if self.positions is None:
            return self.slots.filled
        return sum(1 for slot in self.positions if self.slots.is_filled(slot))


async def run_to_deadline(
    call: CallState,
    work: Callable[[], Awaitable[None]],
    *,
    deadline_seconds: float | None,
    url: str,
    model: str,
    n_documents: int,
) -> None:
    """Run a call's ``work`` under its deadline, then raise how it failed, if it did.

    ``work`` records failures with ``call.fail``. Afterwards the first one is
    raised, or ``DeadlineExceededError`` when the deadline passed first; either
    carries ``partial``, every score obtained in time.

    Args:
        call: The call's state; ``call.deadline`` is set for the retry verdicts.
        work: Scores the call into its slots.
        deadline_seconds: The call's ``total_timeout``, or ``None``.
        url, model: For the deadline's message.
        n_documents: The caller's document count, for the deadline's message.
    """
    if deadline_seconds is None:
        # No deadline, no cancel scope: entering and leaving one costs CPU per call.
        await work()
        passed = False
    else:
        with anyio.move_on_after(deadline_seconds) as deadline_scope:
            call.deadline = deadline_scope.deadline
            await work()
        passed = deadline_scope.cancelled_caught
    if call.error is not None:
        raise _with_partial(call.error, call)
    if passed:
        assert deadline_seconds is not None  # a scope was entered only with a deadline
        scored = call.documents_scored()
        raise _with_partial(
            DeadlineExceededError(
                f"total_timeout of {deadline_seconds} s passed with {scored} of "
                f"{n_documents} documents scored [POST {url}, model {model}]",
                url=url,
                model=model,
                documents_scored=scored,
                total_timeout=deadline_seconds,
            ),
            call,
        )


def _with_partial(error: Exception, call: CallState) -> Exception:
    """``error`` carrying what ``call`` scored before it failed (``error.partial``)."""
    if isinstance(error, RerankError):
        error.partial = call.partial_scores()
    return error
