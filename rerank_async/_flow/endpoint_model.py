"""``EndpointModel``: what the answers say about the endpoint, fitted as it runs.

Every answered request is a sample: how many documents it carried, how many
requests were in flight when it was sent (its level), and how long it took. From
them the model keeps:

* the latency of one request without queueing, ``fixed + per_document * n``: a
  line through the fastest recent answer of each request size (the fastest is
  the one that did not queue; TCP Vegas takes the minimum RTT as its no-load
  latency for the same reason);
* the tail: the share of answers slower than ``_TAIL_SLOW`` times that line,
  and how much slower they are on average ("The Tail at Scale": a call of k
  requests waits for the slowest of k);
* the capacity: the level above which answers of one size come back a step
  slower. A server that queues instead of refusing looks, from outside, like one
  that got slow: sent k at once, a FIFO server of capacity c answers levels 1..c
  after one service time, c+1..2c after two. The steps are measured as
  differences, not ratios: a busy client reads every answer of a burst late by
  the same offset (starting a 50,000-document call delayed them by 110 ms,
  against a 20 ms step, measured);
* the answer rate of the last second and the smoothed latency, which the
  adaptive limit reads (Little's law) and the cool-down after overload uses.

The class does no I/O and reads no clock: times are passed in.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = ["EndpointEstimate", "EndpointModel"]

# Answers of the last second make a rate worth trusting once there are this many.
_RATE_WINDOW_S: Final = 1.0
_MIN_ANSWERS_FOR_RATE: Final = 8
# Samples kept per size class (sizes grouped by powers of two), and in all.
_PER_SIZE: Final = 256
_RECENT: Final = 256
# An answer this many times the no-load line is in the tail.
_TAIL_SLOW: Final = 1.5
# The fit is refreshed after this many answers (every answer before that many), and
# after more once the window is full: a fit costs about 0.4 ms (measured), which every
# 16 answers added 25 us to each request.
_REFIT_EVERY: Final = 16
_REFIT_EVERY_LATER: Final = 128
# A capacity is judged on this many answers sent within it: it stays if they came
# at this share or more of the documents per second answered when it was found.
_TRIAL_ANSWERS: Final = 16
_TRIAL_KEEP: Final = 0.75
# A queueing step: the answers just above a level are slower than those just below
# it by at least this share of the fastest answer of that size or smaller (a lower
# bound of one service time), judged on the medians of this many levels each side,
# each with at least _MIN_SIDE answers.
_STEP_SHARE: Final = 0.5
_STEP_LEVELS: Final = 4
_MIN_SIDE: Final = 3


@dataclass(frozen=True, slots=True)
class EndpointEstimate:
    """The fitted model at one moment (``RerankClient.statistics().endpoint``).

    Attributes:
        fixed_s: Seconds one request takes whatever its size (no queueing).
        per_document_s: Seconds each document adds; ``None`` until two request
            sizes have been seen.
        tail_share: Share of answers slower than 1.5x the fitted line.
        tail_ratio: How many times the line those slow answers took, on average.
        capacity: Requests in flight above which answers slow down (the server
            queues); ``None`` while no slowdown has been seen.
        samples: Answers the model has learnt from.
    """

    fixed_s: float
    per_document_s: float | None
    tail_share: float
    tail_ratio: float
    capacity: int | None
    samples: int

    def latency(self, documents: int) -> float:
        """Expected seconds for one request of ``documents``, without queueing."""
        return self.fixed_s + (self.per_document_s or 0.0) * documents


class EndpointModel:
    """Learns an endpoint's latency by request size, its tail and its capacity."""

    def __init__(self) -> None:
        self.smoothed = 0.0  # seconds per answer, EWMA 1/8 like TCP's SRTT
        self._answered: deque[tuple[float, int]] = deque()  # (time, documents), last second
        self._by_size: dict[int, deque[tuple[int, float]]] = {}  # class -> (docs, seconds)
        self._recent: deque[tuple[int, int, float]] = deque(maxlen=_RECENT)
        self._samples = 0
        self._cached: EndpointEstimate | None = None
        # The lowest knee found (see _fit), and its trial: documents answered per second
        # when it was found, and (time, documents) of the answers sent within it since.
        self._capacity: int | None = None
        self._trial: tuple[float, list[tuple[float, int]]] | None = None
        self._knees_from = 0  # samples before which no knee is looked for
        self._withdrawn = False

    def on_answer(self, now: float, elapsed: float | None, *, documents: int, level: int) -> None:
        """Learn from one answer: at ``now``, after ``elapsed`` seconds, of ``documents``."""
        answers = self._answered
        answers.append((now, documents))
        while answers[0][0] < now - _RATE_WINDOW_S:
            answers.popleft()
        if elapsed is None or not math.isfinite(elapsed) or elapsed < 0:
            return
        self.smoothed = elapsed if self.smoothed == 0 else 0.875 * self.smoothed + 0.125 * elapsed
        if documents <= 0:
            return
        size = self._by_size.setdefault(documents.bit_length(), deque(maxlen=_PER_SIZE))
        size.append((documents, elapsed))
        self._recent.append((documents, level, elapsed))
        self._samples += 1
        trial, capacity = self._trial, self._capacity
        if trial is not None and capacity is not None and level <= capacity:
            trial[1].append((now, documents))  # sent once the limit had come down to it
            if len(trial[1]) >= _TRIAL_ANSWERS:
                self._judge_trial(trial[0], trial[1])
        every = _REFIT_EVERY if self._samples < _RECENT else _REFIT_EVERY_LATER
        if self._samples < _REFIT_EVERY or self._samples % every == 0:
            self._cached = None  # refitted on the next read; often while samples are few

    def _judge_trial(self, before: float, answers: list[tuple[float, int]]) -> None:
        """Keep a capacity only if the endpoint answers as fast with the limit at it.

        A queueing server was saturated: held to its capacity, it answers as many
        documents per second as before. A busy client reading a healthy server's
        burst late can fake a step; held to that false capacity, the endpoint
        answers far fewer. Such a capacity is withdrawn, and no knee is looked for
        until the samples that showed it have left the window.
        """
        self._trial = None
        span = answers[-1][0] - answers[0][0]
        after = sum(docs for _, docs in answers) / span if span > 0 else math.inf
        if after >= _TRIAL_KEEP * before:
            return
        self._capacity = None
        self._withdrawn = True
        self._knees_from = self._samples + _RECENT
        self._cached = None

    def capacity(self) -> int | None:
        """The capacity found, once the fit has one."""
        estimate = self.estimate()
        return estimate.capacity if estimate is not None else None

    def take_withdrawn(self) -> bool:
        """Whether a capacity was withdrawn since the last call (the limit may regrow)."""
        withdrawn, self._withdrawn = self._withdrawn, False
        return withdrawn

    def _documents_per_second(self) -> float:
        answers = self._answered
        span = answers[-1][0] - answers[0][0] if answers else 0.0
        return sum(docs for _, docs in answers) / span if span > 0 else 0.0

    def sustainable(self, now: float) -> int | None:
        """Concurrency that the answers of the last second need (Little's law).

        ``0`` when nothing was answered in that second; ``None`` when the answers
        span less than two round trips, which tells a burst, not a rate.
        """
        answers = self._answered
        while answers and answers[0][0] < now - _RATE_WINDOW_S:
            answers.popleft()
        if not answers:
            return 0
        span = now - answers[0][0]
        if len(answers) < _MIN_ANSWERS_FOR_RATE or self.smoothed <= 0:
            return None
        if span <= 0 or span < 2 * self.smoothed:
            return None
        return max(1, math.ceil(len(answers) / span * self.smoothed))

    def estimate(self) -> EndpointEstimate | None:
        """The fitted model, or ``None`` before any answer with documents."""
        if self._cached is None and self._samples:
            self._cached = self._fit()
        return self._cached

    def _fit(self) -> EndpointEstimate:
        # The fastest answer of each size class: the one that did not queue.
        points = [min(samples, key=lambda s: s[1]) for samples in self._by_size.values()]
        fixed, per_document = _line(points)
        line = EndpointEstimate(fixed, per_document, 0.0, 1.0, None, self._samples)
        ratios = [(level, seconds / max(line.latency(docs), 1e-6))
                  for docs, level, seconds in self._recent]  # fmt: skip
        # The lowest knee seen stands: once the limit sits near it, answers come from
        # levels too close together to show a step, and a burst that reaches past it
        # again while the client is busy shows smeared, higher steps.
        knee = _knee(self._recent, self._by_size) if self._samples >= self._knees_from else None
        if knee is not None and (self._capacity is None or knee < self._capacity):
            self._capacity = knee
            self._trial = (self._documents_per_second(), [])
        capacity = self._capacity
        unqueued = [r for level, r in ratios if capacity is None or level <= capacity]
        slow = [r for r in unqueued if r > _TAIL_SLOW]
        return EndpointEstimate(
            fixed_s=fixed,
            per_document_s=per_document,
            tail_share=len(slow) / len(unqueued) if unqueued else 0.0,
            tail_ratio=statistics.fmean(slow) if slow else 1.0,
            capacity=capacity,
            samples=self._samples,
        )


def _line(points: list[tuple[int, float]]) -> tuple[float, float | None]:
    """Least squares through ``(documents, seconds)``; one size gives a constant."""
    if len(points) < 2:
        return points[0][1], None
    xs = [float(docs) for docs, _ in points]
    ys = [seconds for _, seconds in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    slope = max(slope, 0.0)
    fixed = max(min(ys) * 0.05, mean_y - slope * mean_x)
    return fixed, slope


def _knee(
    recent: deque[tuple[int, int, float]], by_size: dict[int, deque[tuple[int, float]]]
) -> int | None:
    """The lowest level past which answers of the commonest recent size get a step slower."""
    sizes: dict[int, list[tuple[int, float]]] = {}
    for docs, level, seconds in recent:
        sizes.setdefault(docs.bit_length(), []).append((level, seconds))
    size, samples = max(sizes.items(), key=lambda item: len(item[1]))
    fastest = min(min(s for _, s in kept) for key, kept in by_size.items() if key <= size)
    step = _STEP_SHARE * fastest
    by_level: dict[int, list[float]] = {}
    for level, seconds in samples:
        by_level.setdefault(level, []).append(seconds)
    for level in sorted(by_level):
        below = _around(by_level, level - _STEP_LEVELS + 1, level)
        above = _around(by_level, level + 1, level + _STEP_LEVELS)
        if len(below) < _MIN_SIDE or len(above) < _MIN_SIDE:
            continue
        # The medians either side, and the very next level too: a window that
        # straddles the step would put it a level or two early on medians alone.
        base = statistics.median(below)
        if (
            statistics.median(above) - base < step
            or min(by_level.get(level + 1, [0.0])) - base < step
        ):
            continue
        # A step, and not a lone slow level: everything above stays slower.
        low = [s for at, kept in by_level.items() if at <= level for s in kept]
        high = [s for at, kept in by_level.items() if at > level for s in kept]
        if statistics.median(high) - statistics.median(low) >= step:
            return level
    return None


def _around(by_level: dict[int, list[float]], first: int, last: int) -> list[float]:
    return [s for at in range(first, last + 1) for s in by_level.get(at, ())]
