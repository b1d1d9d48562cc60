"""``ClientStatistics``: a frozen snapshot of a client's shared state, for tests and metrics.

A leaf, like anyio's ``CapacityLimiterStatistics``: read it, never reach past it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientStatistics"]


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """What a client is doing right now, across all its calls.

    Attributes:
        in_flight: HTTP attempts holding a concurrency slot.
        waiting: Attempts queued for a slot.
        outstanding_batches: Batches planned or running and not yet finished.
        batch_limit: Most documents per request now (``batch_size``, or less
            once a server said a batch was too large).
        max_concurrency: The bound on ``in_flight``.
    """

    in_flight: int
    waiting: int
    outstanding_batches: int
    batch_limit: int
    max_concurrency: int
