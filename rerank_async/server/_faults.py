"""Fault injection for the local server: one seeded plan per request, decided up front.

The app asks `FaultInjector.plan` once per valid inference request, before scoring, and then
only carries the plan out. Each plan consumes exactly six draws from one `random.Random`, in
this order: jitter, tail, 503, 429, drop, malformed. A knob that is off still consumes its
draw, so turning one fault on never changes the decisions of the others for the same seed
and request order. The faults are independent probabilities checked in that fixed order;
the first that fires wins.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Final

from ._config import ServerConfig

__all__ = ["Fault", "FaultInjector", "FaultPlan", "Malformation"]


class Fault(enum.Enum):
    """What the server does instead of (or to) a normal answer."""

    NONE = "none"
    ERROR_503 = "error_503"
    ERROR_429 = "error_429"
    DROP = "drop"
    MALFORMED = "malformed"


class Malformation(enum.Enum):
    """How a malformed 200 body is broken; the server uses them in turn."""

    TRUNCATED_JSON = "truncated_json"
    WRONG_COUNT = "wrong_count"
    MISSING_SCORES = "missing_scores"


_MALFORMATIONS: Final = tuple(Malformation)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to do with one request.

    Attributes:
        delay_s: Simulated processing time, in seconds (``>= 0``).
        tail: Whether the tail multiplier was applied to ``delay_s``.
        fault: The fault to inject, or `Fault.NONE`.
        malformation: How to break the body when ``fault`` is `Fault.MALFORMED`, else None.
    """

    delay_s: float
    tail: bool
    fault: Fault
    malformation: Malformation | None = None


class FaultInjector:
    """Turns a `ServerConfig` into one `FaultPlan` per request.

    Args:
        config: The server settings; only the latency and fault knobs are read.
        rng: The random source; by default ``random.Random(config.seed)``.
    """

    def __init__(self, config: ServerConfig, *, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng if rng is not None else random.Random(config.seed)
        self._malformed_count = 0

    def plan(self, n_documents: int) -> FaultPlan:
        """Decide the latency and fault of the next request.

        Args:
            n_documents: Documents in the request, for ``per_doc_latency_ms``.

        Returns:
            The plan for this request.
        """
        cfg = self._config
        draw = self._rng.random
        u_jitter, u_tail, u_503, u_429, u_drop, u_malformed = [draw() for _ in range(6)]

        delay_ms = cfg.latency_ms + cfg.per_doc_latency_ms * n_documents
        delay_ms += (2.0 * u_jitter - 1.0) * cfg.jitter_ms
        tail = u_tail < cfg.tail_probability
        if tail:
            delay_ms *= cfg.tail_multiplier
        delay_s = max(0.0, delay_ms) / 1000.0

        if u_503 < cfg.error_503_rate:
            return FaultPlan(delay_s, tail, Fault.ERROR_503)
        if u_429 < cfg.error_429_rate:
            return FaultPlan(delay_s, tail, Fault.ERROR_429)
        if u_drop < cfg.drop_rate:
            return FaultPlan(delay_s, tail, Fault.DROP)
        if u_malformed < cfg.malformed_rate:
            kind = _MALFORMATIONS[self._malformed_count % len(_MALFORMATIONS)]
            self._malformed_count += 1
            return FaultPlan(delay_s, tail, Fault.MALFORMED, kind)
        return FaultPlan(delay_s, tail, Fault.NONE)
