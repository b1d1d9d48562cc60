"""One cell of a ``rerank-async bench`` sweep, and the choice of the best; shared with ``_plot``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CellResult", "best_cell"]


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
