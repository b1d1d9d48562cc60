"""``LatencyWindow``: a rolling quantile of attempt latency, for ``hedge_after="auto"``.

"The Tail at Scale" (Dean and Barroso, 2013) hedges a request once it has taken
longer than the 95th percentile of its kind: at most about 5% extra requests, and
the slowest 5% get a second chance. The client uses p90 (``HEDGE_QUANTILE`` in
``admission.py``): a tail of exactly 5% puts p95 inside it. The window keeps the
latest answers only, so the threshold follows the server as its load changes.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Final

__all__ = ["LatencyWindow"]

# Answers remembered, and answers needed before the quantile is trusted.
_SIZE: Final = 256
_MIN_SAMPLES: Final = 20
# Before that, the threshold is this many times their median: a new client's first
# calls meet the tail too (web_tail: one of a new client's first calls was slow in
# most runs, unhedged, and alone set call p99 at 9x p50).
_EARLY_FACTOR: Final = 2.0
# The quantile is re-sorted after this many new answers, not on every one.
_REFRESH_EVERY: Final = 16


class LatencyWindow:
    """The ``quantile`` of the latest answers' latency, in seconds.

    Args:
        quantile: In (0, 1); 0.95 by default.

    Raises:
        ValueError: ``quantile`` out of range.
    """

    def __init__(self, quantile: float = 0.95) -> None:
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be between 0 and 1, got {quantile}")
        self._quantile = quantile
        self._samples: deque[float] = deque(maxlen=_SIZE)
        self._since_refresh = 0
        self._cached: float | None = None

    def add(self, seconds: float) -> None:
        """Record one answer's latency (failures are not latency samples)."""
        if math.isfinite(seconds) and seconds >= 0:
            self._samples.append(seconds)
            self._since_refresh += 1

    def threshold(self) -> float | None:
        """The quantile now; twice the median while answers are few; ``None`` before any."""
        if not self._samples:
            return None
        if len(self._samples) < _MIN_SAMPLES:
            return _EARLY_FACTOR * statistics.median(self._samples)
        if self._cached is None or self._since_refresh >= _REFRESH_EVERY:
            ordered = sorted(self._samples)
            index = min(len(ordered) - 1, math.ceil(self._quantile * len(ordered)) - 1)
            self._cached = ordered[index]
            self._since_refresh = 0
        return self._cached
