"""``OutageGate``: an endpoint that fails everything is probed, one request at a time.

When every attempt fails (503s, 502/504 gateways, refused or dropped connections),
each batch retrying on its own backoff spends its attempts in a few seconds and its
call fails, while the endpoint may be back a moment later. A run of consecutive
failures with no answer between them declares an outage; from then on, requests
wait here and only one at a time goes out, as a probe, spaced by a growing
interval (TCP's persist timer probes a zero window the same way). The first
answer ends the outage and releases everyone at once.

The gate holds requests for at most ``patience`` seconds from the outage's start;
after that they go out and fail as before. The retry decision (``_retry``) reads
``waiting_out`` to forgive the attempts that fail while the outage is waited out.
The class keeps no I/O of its own: the clock and the sleep are injected.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

__all__ = ["OutageGate"]

# Consecutive failures, no answer between them, that make an outage. Random faults at
# 15% (the random_faults benchmark) give eight in a row with probability 3e-7 per
# request; a down endpoint gives them within one round trip at the default width.
_FAILURES_FOR_OUTAGE: Final = 8
# Seconds between probes: from the first, doubling while they fail, up to the cap.
# The cap bounds how long a recovered endpoint goes unnoticed.
_FIRST_PROBE_INTERVAL: Final = 0.05
_MAX_PROBE_INTERVAL: Final = 0.5


class OutageGate:
    """Holds requests while the endpoint is down; lets one probe through at a time.

    Args:
        patience: Most seconds an outage is waited out; ``0`` never waits.
        clock: Seconds on a monotonic clock.
        sleep: How to wait between probes.
    """

    def __init__(
        self,
        *,
        patience: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._patience = patience
        self._clock = clock
        self._sleep = sleep
        self._failures = 0
        self._since: float | None = None  # when the current outage was declared
        self._probing = False
        self._next_probe = -math.inf
        self._interval = _FIRST_PROBE_INTERVAL
        self._changed: anyio.Event | None = None  # made on first use, inside the event loop
        self._probes = 0
        self._outages = 0
        self._waiting = 0

    @property
    def patience(self) -> float:
        """Most seconds an outage is waited out."""
        return self._patience

    @patience.setter
    def patience(self, seconds: float) -> None:
        self._patience = seconds

    @property
    def since(self) -> float | None:
        """When the current outage was declared, or ``None`` when there is none."""
        return self._since

    @property
    def waiting_out(self) -> bool:
        """Whether requests are held for an outage now (declared, within patience)."""
        since = self._since
        return since is not None and self._clock() < since + self._patience

    @property
    def probes(self) -> int:
        """Probes sent during outages, in all."""
        return self._probes

    @property
    def outages(self) -> int:
        """Outages declared, in all."""
        return self._outages

    @property
    def waiting(self) -> int:
        """Requests held by the gate now."""
        return self._waiting

    async def pass_through(self, permit: Callable[[], bool]) -> int:
        """Return when a request may be sent: the probe's number, or 0 for no probe.

        Args:
            permit: Asked before a probe goes out (the retry budget): ``False`` holds
                the probe one more interval, so that probes stay within the budget.
        """
        if not self.waiting_out:
            return 0
        self._waiting += 1
        try:
            while self.waiting_out:
                if self._probing:
                    if self._changed is None:
                        self._changed = anyio.Event()
                    await self._changed.wait()
                    continue
                remaining = self._next_probe - self._clock()
                if remaining > 0:
                    # Slept to the probe time once; a test's sleep that moves no clock
                    # must not make this spin, so the probe goes after it either way.
                    await self._sleep(remaining)
                    if self._probing or not self.waiting_out:
                        continue
                if not permit():
                    self._next_probe = self._clock() + self._interval
                    await self._sleep(self._interval)
                    continue
                self._probing = True
                self._probes += 1
                return self._probes
            return 0
        finally:
            self._waiting -= 1

    def on_answer(self) -> None:
        """An answer came back: any outage is over, and everyone held goes at once."""
        self._failures = 0
        if self._since is not None or self._probing:
            self._since = None
            self._probing = False
            self._interval = _FIRST_PROBE_INTERVAL
            self._next_probe = -math.inf
            self._wake()

    def on_failure(self, *, probe: int) -> None:
        """An attempt failed the way a down endpoint fails (not a 429: that is a limit)."""
        self._failures += 1
        now = self._clock()
        if self._since is None and self._failures >= _FAILURES_FOR_OUTAGE and self._patience > 0:
            self._since = now
            self._outages += 1
            self._next_probe = now + self._interval
        if probe and probe == self._probes and self._probing:
            self._probing = False
            self._next_probe = now + self._interval
            self._interval = min(_MAX_PROBE_INTERVAL, 2 * self._interval)
            self._wake()

    def probe_ended(self, probe: int) -> None:
        """Probe ``probe`` ended (a no-op once its answer or failure was told, or for 0)."""
        if probe and probe == self._probes and self._probing:
            self._probing = False
            self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
