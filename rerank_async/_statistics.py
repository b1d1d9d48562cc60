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
        in_flight: HTTP attempts holding a concurrency slot (a slot freed by a
            fast overload answer counts until it is released).
        waiting: Attempts queued for a slot or held by the shared pause.
        outstanding_batches: Batches planned or running and not yet finished.
        batch_limit: Most documents per request now (``batch_size``, or less
            once a server said a batch was too large).
        max_concurrency: The ceiling of ``concurrency_limit``.
        concurrency_limit: Attempts allowed in flight now: the adaptive limit,
            or ``max_concurrency`` when ``adaptive_concurrency=False``.
        retry_budget_left: Retries the budget would grant now; ``None`` without one.
        paused_until: ``anyio.current_time()`` before which nothing is sent (a
            shared ``Retry-After`` or an outage pause), or ``None``.
        requests_this_minute: Requests counted by ``max_requests_per_minute`` in
            the current minute; ``None`` without that limit.
        tokens_this_minute: Tokens counted by ``max_tokens_per_minute`` (estimates
            corrected by reported usage); ``None`` without that limit.
    """

    in_flight: int
    waiting: int
    outstanding_batches: int
    batch_limit: int
    max_concurrency: int
    concurrency_limit: int
    retry_budget_left: float | None = None
    paused_until: float | None = None
    requests_this_minute: int | None = None
    tokens_this_minute: int | None = None
