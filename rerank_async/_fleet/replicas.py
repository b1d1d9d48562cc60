"""``ReplicaSet``: one model behind several base URLs, each request to the least busy one.

A ``BatchSender`` like any engine, so the runner, the retry loop and ``Admission``
(the client-wide bound, ``max_concurrency``, and the fair queue across calls)
never know there are several. What it adds, one owner per decision:

* where a request goes (``_pick``): a healthy replica below its own adaptive limit
  with the fewest requests in flight (least outstanding), not counting those about
  to end (``_Replica.busy``), turns rotating on ties;
* whether a replica is ejected (``_Replica.outcome``), after Envoy's outlier
  detection: consecutive connection failures or 5xx answers eject it for a
  cool-down that doubles on each ejection in a row, up to a cap; when the
  cool-down ends it is probed with one request at a time, and the first answer
  lets it back in.

While every replica is ejected the set is "down" (``all_ejected``), which a
fallback reads to skip the primary; a request sent anyway goes to the least busy
replica whatever its state (Envoy's panic mode), never nowhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import anyio

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    DeadlineExceededError,
    RerankError,
    ServerError,
)
from .._flow.adaptive import AdaptiveLimit, Ticket
from .._flow.admission import is_overload
from .._models import ReplicaStatistics
from .._transports import BatchRequest, BatchSender
from ..providers import BatchScores

__all__ = ["EjectionPolicy", "ReplicaSet"]

HEALTHY: Final = "healthy"
EJECTED: Final = "ejected"
PROBING: Final = "probing"
# A request in flight for between these multiples of its replica's usual latency is
# about to end (see _Replica.busy); the weight of each answer in that usual latency.
_ENDING: Final = 0.8
_OVERDUE: Final = 2.0
_LATENCY_WEIGHT: Final = 0.2
# How long a request waiting for room on a replica sleeps before it looks again.
_RECHECK_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    """When a replica is ejected and for how long (Envoy's ``consecutive_5xx`` and
    ``base_ejection_time``, scaled to a client's seconds-long calls).

    Attributes:
        consecutive_failures: Failures in a row (no answer, or a 5xx) that eject.
            Envoy's default is 5; 3 here, because a refused connection fails in
            well under a millisecond and the least-busy choice would send a dead
            replica every free turn until it is out.
        base_ejection_s: The first cool-down, doubled for each ejection in a row.
        max_ejection_s: The longest cool-down: a replica that comes back gets work
            again at most this long (plus one probe) after.
        recent_failure_s: A replica that failed this recently is chosen only when the
            others are full, so a retry lands elsewhere.
        forgive_after: Successes after which earlier ejections stop doubling the next.
    """

    consecutive_failures: int = 3
    base_ejection_s: float = 1.0
    max_ejection_s: float = 5.0
    recent_failure_s: float = 1.0
    forgive_after: int = 20


class _Replica:
    """One base URL: its sender, its adaptive limit, its health."""

    __slots__ = (
        "base_url",
        "ejected_until",
        "ejections",
        "ejections_in_a_row",
        "engine",
        "failures",
        "in_flight",
        "last_failure",
        "latency",
        "limit",
        "requests",
        "sender",
        "sent_at",
        "streak",
        "successes_since_back",
    )

    def __init__(self, base_url: str, engine: BatchSender, limit: AdaptiveLimit) -> None:
        self.base_url = base_url
        self.engine = engine
        self.sender = engine
        self.limit = limit
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.ejections = 0
        self.ejections_in_a_row = 0
        self.streak = 0
        self.successes_since_back = 0
        self.last_failure = -1e18
        # When each request in flight was sent, and the smoothed latency of answers.
        self.sent_at: list[float] = []
        self.latency: float | None = None
        self.ejected_until: float | None = None

    def busy(self, now: float, usual: float | None) -> int:
        """Requests in flight that are not about to end.

        A request whose age is near the usual latency is counted as ending: when many
        are sent at once, the replica that answers first would otherwise take every
        next request while the others, about to answer too, look busy; its last ones
        then queue behind its own (a 3,000-document call over three servers of 8 slots
        took three rounds instead of two). One much older than usual counts again: a
        replica that hangs must not look idle. Before its own first answer a replica
        goes by ``usual``, the latency of the set's other replicas (of one model):
        otherwise, on a new client, the first replica to answer looks idle beside the
        others, whose answers are a moment behind, and takes the next round alone.
        """
        latency = self.latency if self.latency is not None else usual
        if not latency:  # nothing heard yet, or answers on a clock that did not move
            return self.in_flight
        ending = sum(
            1 for sent in self.sent_at if _ENDING * latency <= now - sent <= _OVERDUE * latency
        )
        return self.in_flight - ending

    def state(self, now: float) -> str:
        if self.ejected_until is None:
            return HEALTHY
        return EJECTED if now < self.ejected_until else PROBING

    def outcome(self, error: BaseException | None, now: float, policy: EjectionPolicy) -> None:
        """The one ejection verdict: count an answer or a failure, eject on a streak."""
        if error is None or not _counts_against(error):
            # Any answer but a 5xx shows the replica is up (Envoy resets on non-5xx).
            self.streak = 0
            if self.ejected_until is not None:
                self.ejected_until = None  # its probe came back: in again
                self.successes_since_back = 0
            self.successes_since_back += 1
            if self.successes_since_back >= policy.forgive_after:
                self.ejections_in_a_row = 0
            return
        self.failures += 1
        self.last_failure = now
        if self.ejected_until is not None and now < self.ejected_until:
            return  # sent before the ejection: its cool-down is already running
        self.streak += 1
        probing = self.ejected_until is not None
        if probing or self.streak >= policy.consecutive_failures:
            self.ejections += 1
            self.ejections_in_a_row += 1
            cool_down = policy.base_ejection_s * 2.0 ** min(self.ejections_in_a_row - 1, 16)
            self.ejected_until = now + min(cool_down, policy.max_ejection_s)
            self.streak = 0
            self.successes_since_back = 0


def _counts_against(error: BaseException) -> bool:
    """A failure that says the replica is unwell: no answer, or a 5xx."""
    if isinstance(error, DeadlineExceededError):
        return False  # the call's own deadline, not the replica's fault
    if isinstance(error, APIStatusError):
        return isinstance(error, ServerError)
    return isinstance(error, APIConnectionError)


class ReplicaSet:
    """Sends each batch to one of several replicas of one model.

    Args:
        replicas: ``(base_url, sender)`` per replica, in the caller's order.
        max_concurrency: The ceiling of each replica's adaptive limit.
        adaptive: Whether each replica's limit follows its answers; ``False``
            keeps it at ``max_concurrency``.
        clock: Seconds on a monotonic clock (tests move it by hand).
        policy: When replicas are ejected.
    """

    def __init__(
        self,
        replicas: Sequence[tuple[str, BatchSender]],
        *,
        max_concurrency: int,
        adaptive: bool = True,
        clock: Callable[[], float] = time.monotonic,
        policy: EjectionPolicy | None = None,
    ) -> None:
        if not replicas:
            raise ValueError("a ReplicaSet needs at least one replica")
        self._replicas = [
            _Replica(
                url,
                sender,
                AdaptiveLimit(max_concurrency, initial=None if adaptive else max_concurrency),
            )
            for url, sender in replicas
        ]
        self._adaptive = adaptive
        self._clock = clock
        self._policy = policy or EjectionPolicy()
        self._turn = 0
        # The latest smoothed latency of any replica: the guess for one not heard from.
        self._usual_latency: float | None = None
        self._freed: anyio.Event | None = None
        self._went_down: anyio.Event | None = None

    @property
    def engines(self) -> list[BatchSender]:
        """Each replica's engine, in order."""
        return [replica.engine for replica in self._replicas]

    def wrap_senders(self, wrap: Callable[[BatchSender], BatchSender]) -> None:
        """Send later requests through ``wrap(engine)`` for each replica (observation)."""
        for replica in self._replicas:
            replica.sender = wrap(replica.engine)

    @property
    def all_ejected(self) -> bool:
        """Whether every replica is in its cool-down: the model is known to be down."""
        now = self._clock()
        return all(replica.state(now) == EJECTED for replica in self._replicas)

    async def wait_until_down(self) -> None:
        """Return once every replica is ejected (at once if they are now)."""
        while not self.all_ejected:
            if self._went_down is None:
                self._went_down = anyio.Event()
            await self._went_down.wait()

    def statistics(self) -> tuple[ReplicaStatistics, ...]:
        """Each replica's state and counts, in the caller's order."""
        now = self._clock()
        return tuple(
            ReplicaStatistics(
                base_url=replica.base_url,
                state=replica.state(now),
                in_flight=replica.in_flight,
                concurrency_limit=replica.limit.limit,
                requests=replica.requests,
                failures=replica.failures,
                ejections=replica.ejections,
            )
            for replica in self._replicas
        )

    async def send(self, batch: BatchRequest) -> BatchScores:
        replica = await self._choose()
        replica.in_flight += 1
        replica.requests += 1
        ticket = replica.limit.on_send(replica.in_flight)
        sent = self._clock()
        replica.sent_at.append(sent)
        try:
            scores = await replica.sender.send(batch)
        except RerankError as error:
            self._learn(replica, ticket, error)
            raise
        except BaseException:
            replica.limit.on_neutral(ticket)  # cancelled (a hedge lost, the call ended)
            raise
        else:
            self._learn(replica, ticket, None)
            latency = self._clock() - sent
            previous = replica.latency
            replica.latency = (
                latency if previous is None else previous + _LATENCY_WEIGHT * (latency - previous)
            )
            self._usual_latency = replica.latency
            return scores
        finally:
            replica.in_flight -= 1
            replica.sent_at.remove(sent)
            self._wake()

    def _learn(self, replica: _Replica, ticket: Ticket, error: RerankError | None) -> None:
        if error is None:
            replica.limit.on_success(ticket)
        elif is_overload(error):
            if self._adaptive:
                replica.limit.on_overload(ticket)
        else:
            replica.limit.on_neutral(ticket)
        replica.outcome(error, self._clock(), self._policy)
        went_down = self._went_down
        if went_down is not None and error is not None and self.all_ejected:
            self._went_down = None
            went_down.set()

    async def _choose(self) -> _Replica:
        while True:
            replica = self._pick()
            if replica is not None:
                return replica
            now = self._clock()
            if not any(
                r.state(now) == HEALTHY or (r.state(now) == PROBING and r.in_flight)
                for r in self._replicas
            ):
                # Every replica ejected (or its probe is spent): panic mode.
                return min(self._replicas, key=lambda r: r.in_flight)
            if self._freed is None:
                self._freed = anyio.Event()
            # Woken when a request ends; a cool-down that ends is noticed within this.
            with anyio.move_on_after(_RECHECK_S):
                await self._freed.wait()

    def _pick(self) -> _Replica | None:
        """The replica for the next request: a probe first, then the least busy for its limit.

        ``None`` when every healthy replica is at its limit (or none is healthy).
        """
        now = self._clock()
        replicas = self._replicas
        count = len(replicas)
        start = self._turn
        self._turn = (start + 1) % count
        recent = self._policy.recent_failure_s
        usual = self._usual_latency
        best: _Replica | None = None
        best_key = (2, 0)
        for offset in range(count):
            replica = replicas[(start + offset) % count]
            state = replica.state(now)
            if state == PROBING:
                if replica.in_flight == 0:
                    return replica  # one probe at a time, sent at the first chance
                continue
            if state == EJECTED:
                continue
            limit = replica.limit.limit
            if replica.in_flight >= limit:
                continue
            # Requests in flight, not their share of the limit: a server's queue is as
            # long as what was sent to it, whatever the limit has learned (Envoy's
            # LEAST_REQUEST); the limit only caps.
            key = (int(now - replica.last_failure < recent), replica.busy(now, usual))
            if best is None or key < best_key:
                best, best_key = replica, key
        return best

    def _wake(self) -> None:
        freed = self._freed
        if freed is not None:
            self._freed = None
            freed.set()

    async def aclose(self) -> None:
        """Close every replica's engine, all of them even when one fails to."""
        failure: BaseException | None = None
        for replica in self._replicas:
            try:
                await replica.engine.aclose()
            except Exception as error:  # the first is raised once all are closed
                failure = failure or error
        if failure is not None:
            raise failure
