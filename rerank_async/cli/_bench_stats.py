"""Latency percentiles of an open-loop bench cell, and when they rest on too few calls.

Exact nearest-rank percentiles of the sorted samples. A bench cell holds at most a few
hundred thousand latencies, which sort in milliseconds; an HDR histogram would round each
value to three significant digits and cost more time to fill than the sort takes
(measured: docs/benchmarks.md, "Percentiles").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

__all__ = ["PERCENTILES", "few_samples_warning", "latency_summary", "nearest_rank"]

# (JSON key, fraction): the percentiles every open-loop cell reports, and its maximum.
PERCENTILES: Final = (
    ("p50_ms", 0.5),
    ("p90_ms", 0.9),
    ("p99_ms", 0.99),
    ("p999_ms", 0.999),
    ("max_ms", 1.0),
)


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    """The smallest sample with at least ``fraction`` of the samples at or below it.

    Args:
        ordered: The samples, sorted ascending; not empty.
        fraction: In [0, 1]; 1 gives the maximum.
    """
    rank = math.ceil(fraction * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """``{"p50_ms": ..., "p90_ms", "p99_ms", "p999_ms", "max_ms"}``; ``None`` each with no calls."""
    if not latencies_ms:
        return {key: None for key, _ in PERCENTILES}
    ordered = sorted(latencies_ms)
    return {key: nearest_rank(ordered, fraction) for key, fraction in PERCENTILES}


def few_samples_warning(n: int) -> str | None:
    """A line naming the percentiles that ``n`` calls cannot support, or ``None``.

    A percentile q needs at least 1 / (1 - q) samples to differ from the maximum: a p99
    from under 100 calls is the slowest call, and a p99.9 needs 1,000.
    """
    short = []
    for key, fraction in PERCENTILES:
        needed = round(1.0 / (1.0 - fraction)) if fraction < 1.0 else 0
        if 0 < n < needed:
            short.append((key.removesuffix("_ms").replace("p999", "p99.9"), needed))
    if not short:
        return None
    labels = " and ".join(label for label, _ in short)
    needs = " and ".join(f"{needed:,}" for _, needed in short)
    if len(short) == 1:
        return f"{labels} rests on {n} calls (it needs {needs}): it is the slowest call"
    return f"{labels} rest on {n} calls (they need {needs}): each is the slowest call"
