"""The figures of one ``rerank-async bulk`` run: counts, latency, the summary, the exit status."""

from __future__ import annotations

import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from rich.console import Console
from rich.text import Text

from ._bulk_records import shown_ids
from ._common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK
from ._output import percentile

__all__ = ["EXIT_TERMINATED", "BulkSummary", "exit_code", "summary_rows"]

EXIT_TERMINATED: Final = 128 + signal.SIGTERM

# Latency percentiles are exact up to this many requests, then estimated from a uniform
# sample of this size (reservoir sampling), so memory stays flat on any input.
_LATENCY_SAMPLE: Final = 20_000


class _Reservoir:
    """A uniform sample of at most ``size`` values (Vitter's algorithm R) and the exact max."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self.max = 0.0
        self._random = random.Random(0)

    def add(self, value: float) -> None:
        self.seen += 1
        self.max = max(self.max, value)
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value


@dataclass
class BulkSummary:
    """The figures of one run, for the summary table and ``--json-summary``."""

    ok: int = 0
    failed: int = 0
    malformed: int = 0
    skipped: int = 0
    blank: int = 0
    earlier_errors: int = 0
    documents: int = 0
    http_requests: int = 0
    retries: int = 0
    wall_s: float = 0.0
    interrupted_by: str | None = None
    # The client's adaptive concurrency limit: now, and the lowest it went this run.
    concurrency_limit: int | None = None
    lowest_concurrency_limit: int | None = None
    # Lines whose record in the output answered another request under the same id: scored
    # again (rescored), or with --strict-resume only counted (stale; the first ids kept).
    rescored: int = 0
    stale: int = 0
    stale_ids: list[str | int] = field(default_factory=list)
    errors_by_type: Counter[str] = field(default_factory=Counter)
    latency: _Reservoir = field(default_factory=lambda: _Reservoir(_LATENCY_SAMPLE))

    @property
    def done(self) -> int:
        """Requests (and malformed lines) finished in this run."""
        return self.ok + self.failed + self.malformed

    def note_limit(self, limit: int) -> None:
        """Remember the client's concurrency limit after an outcome."""
        self.concurrency_limit = limit
        lowest = self.lowest_concurrency_limit
        self.lowest_concurrency_limit = limit if lowest is None else min(lowest, limit)

    def latency_ms(self, fraction: float) -> float:
        if fraction >= 1.0:
            return self.latency.max * 1000.0 if self.latency.seen else float("nan")
        return percentile(self.latency.values, fraction) * 1000.0

    def as_json(self) -> dict[str, Any]:
        wall = self.wall_s
        return {
            "requests_ok": self.ok,
            "requests_failed": self.failed,
            "lines_malformed": self.malformed,
            "requests_skipped": self.skipped,
            "requests_rescored": self.rescored,
            "records_stale": self.stale,
            "earlier_errors_kept": self.earlier_errors,
            "documents": self.documents,
            "wall_s": round(wall, 3),
            "documents_per_s": round(self.documents / wall, 1) if wall > 0 else None,
            "requests_per_s": round(self.done / wall, 1) if wall > 0 else None,
            "latency_ms": {
                name: (round(value, 2) if value == value else None)  # NaN -> null
                for name, value in (
                    ("p50", self.latency_ms(0.5)),
                    ("p90", self.latency_ms(0.9)),
                    ("p99", self.latency_ms(0.99)),
                    ("max", self.latency_ms(1.0)),
                )
            },
            "http_requests": self.http_requests,
            "retries": self.retries,
            "errors_by_type": dict(self.errors_by_type),
            "interrupted_by": self.interrupted_by,
            "concurrency_limit": self.concurrency_limit,
            "lowest_concurrency_limit": self.lowest_concurrency_limit,
        }


def summary_rows(summary: BulkSummary) -> list[tuple[str, str]]:
    """The summary table of a run, as (label, value) rows."""
    wall = summary.wall_s
    rate = (
        f"{summary.documents / wall:,.0f} documents/s · {summary.done / wall:,.1f} requests/s"
        if wall > 0
        else "-"
    )
    rows = [
        ("requests",
         f"{summary.ok:,} ok · {summary.failed:,} failed · {summary.skipped:,} skipped"),
        ("malformed lines", f"{summary.malformed:,}"),
        ("documents scored", f"{summary.documents:,}"),
        ("wall time", f"{wall:.2f} s"),
        ("throughput", rate),
        ("latency p50 / p90 / p99 / max",
         " / ".join(_ms(summary.latency_ms(p)) for p in (0.5, 0.9, 0.99, 1.0)) + " ms"),
        ("HTTP requests", f"{summary.http_requests:,} ({summary.retries:,} retries)"),
    ]  # fmt: skip
    if summary.concurrency_limit is not None:
        rows.append(
            (
                "concurrency limit",
                f"{summary.concurrency_limit} at the end · {summary.lowest_concurrency_limit} "
                "lowest",
            )
        )
    if summary.errors_by_type:
        rows.append(
            (
                "errors",
                " · ".join(f"{name} {n:,}" for name, n in summary.errors_by_type.most_common()),
            )
        )
    if summary.rescored:
        rows.append(("rescored (input changed)", f"{summary.rescored:,}"))
    if summary.stale:
        rows.append(("stale records kept (--strict-resume)", f"{summary.stale:,}"))
    if summary.earlier_errors:
        rows.append(("error records from earlier runs", f"{summary.earlier_errors:,}"))
    return rows


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def exit_code(summary: BulkSummary, *, output: str, written: int, console: Console) -> int:
    """The run's exit status, after one line on ``console`` saying why when it is not 0."""

    def say(message: str) -> None:
        console.print(Text(f"rerank-async: {message}"), soft_wrap=True)

    if summary.interrupted_by is not None:
        say(
            f"{summary.interrupted_by}: stopped with {written:,} new records in "
            f"{output}; run the same command again to resume"
        )
        return EXIT_TERMINATED if summary.interrupted_by == "SIGTERM" else EXIT_INTERRUPTED
    if summary.stale:
        ids = shown_ids(summary.stale_ids, summary.stale)
        say(
            f"--strict-resume: {summary.stale:,} records in {output} answer another "
            f"request than their input line now has (ids {ids}); they were kept as they are; "
            "rerun without --strict-resume to score them again"
        )
        return EXIT_FAILURE
    errors = summary.failed + summary.malformed + summary.earlier_errors
    if errors:
        say(
            f"{errors:,} error records in {output}; rerun with --retry-failed to run "
            "those lines again"
        )
        return EXIT_FAILURE
    return EXIT_OK
