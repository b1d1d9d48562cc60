"""``AdaptiveLimit``: a concurrency limit that follows the server (loss-based AIMD).

Netflix's concurrency-limits library recommends loss-based AIMD on the client:
grow the limit additively while requests succeed and the limit is actually
used, shrink it multiplicatively on an overload signal (429, 503, a timeout, a
dropped connection), at most once per "window" so that one burst of failures
counts once. Here a window is an *epoch*: every request is stamped with the
epoch it was sent in, and a signal from a request sent before the last change
is ignored (TCP reduces once per round trip the same way).

Two kinds of overload look alike on the wire and need different answers, so
each signal is classified against the recent outcomes, by the number of
requests in flight when each was sent (its *level*):

* **Capacity** (a server that rejects above N in flight): failures gather at
  the top levels. The limit retreats to just below the failing level, and the
  next probe above it waits twice as long each time it fails at the same place.
* **Overload of the whole service** (an outage, a rate limit): failures at
  every level. The limit is cut multiplicatively (``backoff_ratio``).

Failures spread at the same rate over every level (a busy shared service
answering a random few requests with 503) are neither and change nothing: a
fixed bound would not do better against them.

The class holds no clock and does no I/O; the runner calls ``on_send`` when a
request takes a slot and one of ``on_success`` / ``on_overload`` /
``on_neutral`` when it ends.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = ["AdaptiveLimit", "LimitChange", "Ticket"]

# Outcomes remembered to classify a signal: two round trips at a limit of 16. Half
# as many let random faults pass for overload: at 15% failures (10% 503, 5% 429),
# 16 outcomes hold 8 failures often enough that a 40-run simulation cut the limit
# to 1 and kept it there in 17 runs; with 32 in none (tests/unit/test_adaptive.py).
_WINDOW: Final = 32
# A failure is "capacity" when the failure rate at its level and above exceeds the
# rate below it by this much, "overload" when at least this share of the window failed.
_GAP: Final = 0.5
_OVERLOAD_SHARE: Final = 0.5
_OVERLOAD_MIN_SIGNALS: Final = 3
# Outcomes needed below a level before failures can be said to gather above it,
# and in all before any can be called overload (a fresh client's first answers
# are its fastest: rejections, which would otherwise look like a flood).
_MIN_BELOW: Final = 8
_MIN_OUTCOMES: Final = 8
_NO_LEVEL: Final = 1 << 30
# Where a limit starts by default, at most.
_INITIAL: Final = 16
# Successes per extra slot when probing above the last level that held, per slot of
# limit (TCP congestion avoidance is 1); doubled after each failed probe, up to the cap.
_PROBE_SLOWDOWN: Final = 4
_MAX_PROBE_SLOWDOWN: Final = 64


class LimitChange(enum.Enum):
    """What an overload signal did to the limit."""

    NONE = "none"  # ignored: an old epoch, or failures spread evenly over every level
    RETREAT = "retreat"  # capacity: the limit now sits just below the failing level
    DECREASE = "decrease"  # overload: the limit was cut by ``backoff_ratio``
    AT_FLOOR = "at_floor"  # overload, and the limit already is 1


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request's stamp: its level (requests in flight, itself included) and epoch.

    ``sent_at`` is the clock time it was admitted, when the caller keeps one.
    """

    level: int
    epoch: int
    sent_at: float | None = None
    documents: int = 0
    probe: int = 0  # the outage probe's number (``OutageGate``); 0 for any other request


class AdaptiveLimit:
    """A concurrency limit between 1 and ``ceiling`` that moves with the server's answers.

    Args:
        ceiling: The most it may reach (the client's ``max_concurrency``).
        initial: Where it starts; ``min(ceiling, 16)`` by default. Until the first
            overload signal it doubles every round trip (one slot per success).
            A client's ``Admission`` starts it at the ceiling instead and paces
            the first burst (``FirstWave``): unpaced, a burst of 32 put 24
            requests over an unknown cap of 8 (429s 8.5-9.5% of a 10,000-document
            call) and, over a 20 requests/s limit, spent the retry budget before
            the limit had come down (bench_limits.py). A replica's limit
            (``ReplicaSet``) starts at the default.
        backoff_ratio: The multiplicative cut on overload, in (0, 1).

    Raises:
        ValueError: ``ceiling`` or ``initial`` below 1, or ``backoff_ratio`` out of range.
    """

    def __init__(
        self, ceiling: int, *, initial: int | None = None, backoff_ratio: float = 0.75
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, got {ceiling}")
        start = min(ceiling, _INITIAL) if initial is None else initial
        if not 1 <= start <= ceiling:
            raise ValueError(f"initial must be between 1 and ceiling ({ceiling}), got {start}")
        if not 0.0 < backoff_ratio < 1.0:
            raise ValueError(f"backoff_ratio must be between 0 and 1, got {backoff_ratio}")
        self._ceiling = ceiling
        self._limit = float(start)
        self._ratio = backoff_ratio
        self._epoch = 0
        self._slow_start = start < ceiling
        # The lowest level that failed in the current epoch.
        self._lowest_failure = _NO_LEVEL
        # The highest level a retreat left in place, and how slowly to probe above it.
        self._retreated_to: int | None = None
        self._probe_slowdown = _PROBE_SLOWDOWN
        # (level, failed) of the latest outcomes, newest last.
        self._outcomes: deque[tuple[int, bool]] = deque(maxlen=_WINDOW)

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return int(self._limit)

    @property
    def overloaded(self) -> bool:
        """Whether the latest answers are mostly overload signals (an outage, a rate wall)."""
        return self._overloaded()

    @property
    def ceiling(self) -> int:
        """The most the limit may reach."""
        return self._ceiling

    def on_send(self, in_flight: int) -> Ticket:
        """Stamp a request that just took a slot; ``in_flight`` counts it too."""
        return Ticket(level=max(1, in_flight), epoch=self._epoch)

    def on_success(self, ticket: Ticket) -> None:
        """A request was answered: grow if the limit was in use when it was sent."""
        self._outcomes.append((ticket.level, False))
        if self._limit >= self._ceiling:
            return
        # Netflix's "app-limited" check: a limit nobody fills proves nothing. Before the
        # first overload signal nothing has pushed back, and the limit grows anyway, so
        # that a client's first wide call meets the ceiling, not a limit its narrow
        # calls never tested.
        if 2 * ticket.level < self._limit and not self._slow_start:
            return
        if self._slow_start:
            step = 1.0  # one slot per answer: doubling every round trip
        elif self._retreated_to is not None and self._limit >= self._retreated_to:
            step = 1.0 / (self._limit * self._probe_slowdown)  # probing a known wall
        else:
            step = 1.0 / self._limit  # additive increase: one slot per round trip
        self._limit = min(float(self._ceiling), self._limit + step)
        if self._limit >= self._ceiling:
            self._slow_start = False

    def on_capacity(self, ticket: Ticket, capacity: int) -> LimitChange:
        """Answers slow down a step past ``capacity`` in flight: the server queues them.

        A server that queues instead of refusing sends no 429, and its answers
        only slow down as concurrency passes its capacity. As Netflix's gradient
        and Vegas limits do, the limit then follows latency: down to the capacity,
        so that nothing waits in the server's queue, where every call waits alike,
        but in the client's fair one (one request of queue at the server made a
        small call beside a large one 1.5-1.7x slower than alone, against 1.35-1.45x
        without); probing above it as above any wall; once per epoch like any cut.
        """
        target = capacity
        if ticket.epoch != self._epoch or target >= self.limit:
            return LimitChange.NONE
        self._note_wall(target)
        return self._set(target, LimitChange.DECREASE)

    def forget_wall(self) -> None:
        """A wall turned out false (a capacity withdrawn): regrow as a fresh limit does."""
        self._retreated_to = None
        self._probe_slowdown = _PROBE_SLOWDOWN
        self._slow_start = self._limit < self._ceiling

    def on_neutral(self, ticket: Ticket) -> None:
        """A request failed in a way that says nothing about load (a 400, a bad body)."""
        del ticket  # neither growth nor a signal

    def on_overload(self, ticket: Ticket, *, sustainable: int | None = None) -> LimitChange:
        """A request met a 429, 503, timeout or dropped connection.

        Args:
            ticket: What ``on_send`` stamped the request with.
            sustainable: The concurrency that the answers actually coming back
                would need (Little's law: answered per second times seconds per
                answer), when the caller can tell; a rate limit shows up as a
                steady answer rate whatever the concurrency, and the cut then goes
                straight to it instead of halving its way down. ``0`` means no
                answers at all lately (an outage); ``None``, not known.

        Returns:
            What the signal did; ``AT_FLOOR`` tells the caller that waiting is
            the only way left to lighten the load.
        """
        self._outcomes.append((ticket.level, True))
        if ticket.epoch != self._epoch:
            return LimitChange.NONE  # this burst was already answered
        self._lowest_failure = min(self._lowest_failure, ticket.level)
        wall = self._retreated_to
        if wall is not None and ticket.level > wall and self.limit > wall:
            # A probe above a known wall failed: back to the wall, probe slower next time.
            self._note_wall(wall)
            return self._set(wall, LimitChange.RETREAT)
        if self._gathers_at_top(ticket.level):
            target = max(1, min(self.limit - 1, ticket.level - 1))
            self._note_wall(target)
            return self._set(target, LimitChange.RETREAT)
        if self._overloaded():
            if self.limit <= 1:
                self._epoch += 1
                return LimitChange.AT_FLOOR
            # Multiplicative, and below every level that failed in this burst: before
            # any answer arrives, the failures' levels are all there is to go by.
            multiplicative = math.floor(self._limit * self._ratio)
            cut = max(1, min(multiplicative, self._lowest_failure - 1))
            if cut < multiplicative:
                # Every failure of the burst came above ``cut``: a wall, as with a retreat.
                self._note_wall(cut)
            elif sustainable == 0:
                self._retreated_to = None  # no answers at all: an outage; regrow normally after
                self._probe_slowdown = _PROBE_SLOWDOWN
            elif sustainable is not None:
                # Answers keep coming at a steady rate: a rate limit. Go to the
                # concurrency that rate needs and probe above it slowly, as above a wall.
                if 1 <= sustainable < self.limit:
                    cut = sustainable
                self._note_wall(cut)
            return self._set(cut, LimitChange.DECREASE)
        return LimitChange.NONE

    def _note_wall(self, below: int) -> None:
        """Probe above ``below`` slowly, twice as slowly each time it fails there again."""
        if self._retreated_to == below:
            self._probe_slowdown = min(self._probe_slowdown * 2, _MAX_PROBE_SLOWDOWN)
        else:
            self._probe_slowdown = _PROBE_SLOWDOWN
        self._retreated_to = below

    def _set(self, limit: int, change: LimitChange) -> LimitChange:
        self._limit = float(limit)
        self._slow_start = False
        self._epoch += 1
        self._lowest_failure = _NO_LEVEL
        return change

    def _gathers_at_top(self, level: int) -> bool:
        """Whether failures at ``level`` and above outrun those below it by ``_GAP``."""
        top = [failed for at, failed in self._outcomes if at >= level]
        rest = [failed for at, failed in self._outcomes if at < level]
        if len(rest) < _MIN_BELOW:
            return False  # nothing to compare with: at the floor, or before any answer
        # One more success assumed at the top: a lone failure is weak evidence.
        return sum(top) / (len(top) + 1) - sum(rest) / len(rest) >= _GAP

    def _overloaded(self) -> bool:
        failures = sum(failed for _, failed in self._outcomes)
        seen = len(self._outcomes)
        return (
            seen >= _MIN_OUTCOMES
            and failures >= _OVERLOAD_MIN_SIGNALS
            and failures >= _OVERLOAD_SHARE * seen
        )
