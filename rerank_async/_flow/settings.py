"""What ``Admission`` is configured with and what it reports: plain records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass

from .endpoint_model import EndpointEstimate

__all__ = ["AdmissionStatistics", "LoadSettings"]


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How a client limits the load it puts on a server.

    Attributes:
        max_concurrency: The most requests in flight (the adaptive limit's ceiling).
        adaptive: Whether the limit follows the server; ``False`` keeps it at
            ``max_concurrency``.
        max_requests_per_minute: Client-side request rate limit, or ``None``.
        max_tokens_per_minute: Client-side token rate limit, or ``None``.
        retry_budget_ratio: Retries allowed per first attempt; ``None``: no budget.
        retry_budget_floor: Retries allowed per second regardless of traffic.
        max_pause: Most seconds one signal may pause the whole client.
        outage_patience: Most seconds an outage is waited out (``OutageGate``).
    """

    max_concurrency: int
    adaptive: bool = True
    max_requests_per_minute: float | None = None
    max_tokens_per_minute: float | None = None
    retry_budget_ratio: float | None = 0.2
    retry_budget_floor: float = 2.0
    max_pause: float = 60.0
    outage_patience: float = 0.0


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """The load limits' state at one moment (see ``RerankClient.statistics()``)."""

    concurrency_limit: int
    in_flight: int
    waiting: int
    retry_budget_left: float | None
    paused_until: float | None
    requests_this_minute: int | None
    tokens_this_minute: int | None
    endpoint: EndpointEstimate | None = None
    outage_since: float | None = None
    outage_probes: int = 0
