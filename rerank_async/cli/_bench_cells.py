"""Cells of ``rerank-async bench``: a grid sweep's and an open-loop run's, and the verdicts
on them (the best grid cell, each target's highest sustained rate); shared with ``_plot``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from ._bench_stats import few_samples_warning, latency_summary

__all__ = ["CellResult", "OpenLoopCell", "best_cell", "highest_sustained_rates"]

# Calls starting later than this against their schedule (p99) mean the client fell behind.
SEND_LAG_WARNING_MS: Final = 20.0


@dataclass
class CellResult:
    """One cell of the sweep."""

    batch_size: int
    concurrency: int
    candidates: int
    calls: int = 0
    failed_calls: int = 0
    documents: int = 0
    wall_s: float = 0.0
    http_requests: int = 0
    retries: int = 0
    call_ms: dict[str, float] = field(default_factory=dict)
    request_ms: dict[str, float] = field(default_factory=dict)
    server_runtime_ms_p50: float | None = None
    # The client's adaptive concurrency limit when the cell ended (C is its ceiling).
    concurrency_limit: int | None = None

    @property
    def documents_per_s(self) -> float:
        return self.documents / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.http_requests / self.wall_s if self.wall_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["documents_per_s"] = self.documents_per_s
        data["requests_per_s"] = self.requests_per_s
        return data


def best_cell(cells: Sequence[CellResult], target_p99_ms: float | None) -> CellResult | None:
    """The cell with the most documents/s, among those within the p99 target if one is set."""
    eligible = [
        cell
        for cell in cells
        if cell.documents and (target_p99_ms is None or cell.call_ms["p99"] <= target_p99_ms)
    ]
    return max(eligible, key=lambda cell: cell.documents_per_s, default=None)


# Share of failed calls a rate may have and still count as sustained (--target-p99).
SUSTAINED_MAX_ERROR_SHARE: Final = 0.01


@dataclass
class OpenLoopCell:
    """One target at one offered rate of an open-loop run.

    Latencies run from each call's **scheduled** start to its answer, so time a call spent
    waiting to be sent (behind a stalled server, or a busy client) is counted.
    """

    target: str
    rate: float
    arrivals: str
    duration_s: float
    provider: str = ""
    model: str = ""
    base_url: str = ""
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors_by_type: dict[str, int] = field(default_factory=dict)
    # How late each call started against its schedule: the load generator's own health.
    send_lag_ms: list[float] = field(default_factory=list, repr=False)
    # When the first and last calls really started, seconds from the schedule's start.
    first_start_s: float = math.inf
    last_start_s: float = 0.0
    requests: int = 0
    retries: int = 0
    bytes_per_call: float | None = None
    tokens_per_call: float | None = None
    documents_per_call: float | None = None
    server_tokens: list[int] = field(default_factory=list, repr=False)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_type.values())

    @property
    def achieved_rate(self) -> float:
        """Calls sent per second, over the run or until the last late start if later."""
        window = max(self.duration_s, self.last_start_s)
        return self.sent / window if window > 0 else 0.0

    def summary(self) -> dict[str, float | None]:
        return latency_summary(self.latencies_ms)

    def warnings(self) -> list[str]:
        few = few_samples_warning(len(self.latencies_ms))
        notes = [few] if few is not None else []
        if self.sent and not self.latencies_ms:
            notes.append("every call failed: no latency to report")
        lag = latency_summary(self.send_lag_ms)["p99_ms"]
        if lag is not None and lag > SEND_LAG_WARNING_MS:
            notes.append(
                f"calls started up to {lag:.0f} ms late (p99): the client, not only the "
                "endpoint, limited this rate"
            )
        return notes

    def sustains(self, target_p99_ms: float) -> bool:
        """Whether this rate met the p99 target with at most 1% of calls failed."""
        p99 = self.summary()["p99_ms"]
        return (
            p99 is not None
            and p99 <= target_p99_ms
            and self.errors <= SUSTAINED_MAX_ERROR_SHARE * self.sent
        )

    def as_json(self) -> dict[str, Any]:
        lag = latency_summary(self.send_lag_ms)
        return {
            "target": self.target,
            "provider": self.provider,
            "model": self.model,
            "base_url": self.base_url,
            "rate": self.rate,
            "arrivals": self.arrivals,
            "duration_s": self.duration_s,
            "achieved_rate": self.achieved_rate,
            "n": self.sent,
            "ok": len(self.latencies_ms),
            "errors": self.errors,
            "errors_by_type": dict(sorted(self.errors_by_type.items())),
            **self.summary(),
            "send_lag_p99_ms": lag["p99_ms"],
            "send_window_s": self.last_start_s - self.first_start_s if self.sent else None,
            "http_requests": self.requests,
            "retries": self.retries,
            "documents_per_call": self.documents_per_call,
            "bytes_per_call": self.bytes_per_call,
            "tokens_per_call": self.tokens_per_call,
            "server_tokens_per_call": (
                sum(self.server_tokens) / len(self.latencies_ms)
                if self.server_tokens and self.latencies_ms
                else None
            ),
            "warnings": self.warnings(),
        }


def highest_sustained_rates(
    cells: Sequence[OpenLoopCell], target_p99_ms: float
) -> dict[str, float | None]:
    """Per target, the highest offered rate that met the p99 target (``None``: none did)."""
    best: dict[str, float | None] = {}
    for cell in cells:
        best.setdefault(cell.target, None)
        current = best[cell.target]
        if cell.sustains(target_p99_ms) and (current is None or cell.rate > current):
            best[cell.target] = cell.rate
    return best
