"""The server's counters: ``ServerStats`` as ``GET /stats`` reports them, and their keeper."""

from __future__ import annotations

import time
from typing import TypedDict

__all__ = ["ServerStats", "StatsKeeper"]


class ServerStats(TypedDict):
    """Counters of ``GET /stats``, about inference requests only.

    Attributes:
        requests: Inference requests received, whatever their outcome.
        documents: Documents in requests whose body was valid.
        in_flight: Requests inside the handler now, including those waiting for capacity.
        max_in_flight: Highest ``in_flight`` since start or reset.
        processing: Requests holding a capacity slot now (simulated work).
        max_processing: Highest ``processing`` since start or reset; ``<= capacity``.
        status_counts: Responses by status code (as a string); dropped ones are not counted.
        dropped: Connections dropped on purpose.
        malformed: 200 responses sent with a broken body on purpose.
        refusals: Requests turned away by the limit knobs, by reason
            (``max_in_flight``, ``rate_limit``, ``outage``).
        first_request_s: ``time.monotonic()`` of the first request since start or
            reset, or ``None``; with ``last_request_s``, the request rate.
        last_request_s: ``time.monotonic()`` of the latest request, or ``None``.
    """

    requests: int
    documents: int
    in_flight: int
    max_in_flight: int
    processing: int
    max_processing: int
    status_counts: dict[str, int]
    dropped: int
    malformed: int
    refusals: dict[str, int]
    first_request_s: float | None
    last_request_s: float | None


class StatsKeeper:
    """Mutable counters; touched only from the server's event loop, so no lock."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.processing = 0
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.documents = 0
        self.max_in_flight = self.in_flight
        self.max_processing = self.processing
        self.status_counts: dict[str, int] = {}
        self.dropped = 0
        self.malformed = 0
        self.refusals: dict[str, int] = {}
        self.first_request_s: float | None = None
        self.last_request_s: float | None = None

    def enter(self) -> None:
        now = time.monotonic()
        if self.first_request_s is None:
            self.first_request_s = now
        self.last_request_s = now
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def start_processing(self) -> None:
        self.processing += 1
        self.max_processing = max(self.max_processing, self.processing)

    def count_status(self, status: int) -> None:
        key = str(status)
        self.status_counts[key] = self.status_counts.get(key, 0) + 1

    def snapshot(self) -> ServerStats:
        return ServerStats(
            requests=self.requests,
            documents=self.documents,
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            processing=self.processing,
            max_processing=self.max_processing,
            status_counts=dict(self.status_counts),
            dropped=self.dropped,
            malformed=self.malformed,
            refusals=dict(self.refusals),
            first_request_s=self.first_request_s,
            last_request_s=self.last_request_s,
        )
