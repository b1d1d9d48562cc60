"""The open-loop load generator: calls start on a schedule, whether or not earlier ones finished.

A closed loop (the grid sweep) sends a call only when the previous one has answered, so a
server that stalls is sent less, and the stall hides from the percentiles: coordinated
omission (Gil Tene; wrk2, vegeta and vLLM's serving benchmark use open loops for this
reason). Here arrival times are fixed before the run, each call is started at its time in
its own task, and its latency runs from the scheduled start to the answer.

Poisson arrivals are drawn as ``round(rate * duration)`` uniform times, sorted: a Poisson
process conditioned on its count in the window (the order-statistics property), so bursts
and gaps are as random as in the unconditioned process, while the number of calls, and so
the offered rate, is exactly what was asked for rather than off by a random ±√n.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import anyio

from .._client import RerankClient
from .._exceptions import RerankError
from ._bench_cells import OpenLoopCell
from ._bench_payloads import Payload

__all__ = ["ARRIVALS", "Arrivals", "TargetRun", "arrival_offsets", "run_schedule"]

Arrivals = Literal["poisson", "constant"]
ARRIVALS: Final[tuple[Arrivals, ...]] = ("poisson", "constant")
# Time between building the schedule and its first call, so every target starts together.
_LEAD_S: Final = 0.05


def arrival_offsets(
    rate: float, duration_s: float, arrivals: Arrivals, *, seed: int = 0
) -> list[float]:
    """Seconds from the run's start at which calls begin, ascending, all below ``duration_s``.

    Args:
        rate: Calls per second (> 0).
        duration_s: Length of the run (> 0).
        arrivals: ``"constant"``: every ``1 / rate`` seconds; ``"poisson"``: exponential
            gaps, with exactly ``round(rate * duration_s)`` calls (see the module docstring).
        seed: Seeds the Poisson draw, so reruns offer the same load.
    """
    count = max(1, round(rate * duration_s))
    if arrivals == "constant":
        return [index / rate for index in range(count)]
    rng = random.Random(seed)
    return sorted(rng.random() * duration_s for _ in range(count))


@dataclass(frozen=True, slots=True)
class TargetRun:
    """One target's client and the cell its calls are recorded in."""

    client: RerankClient
    cell: OpenLoopCell


async def run_schedule(
    runs: Sequence[TargetRun],
    offsets: Sequence[float],
    payloads: Sequence[Payload],
    *,
    clock: Callable[[], float] = anyio.current_time,
) -> None:
    """Start call ``i`` of every target at ``offsets[i]``, then wait for all of them to end.

    Targets share the schedule and run interleaved, call by call, so time of day and the
    network weigh on each alike. Call ``i`` sends ``payloads[i % len(payloads)]``.
    """
    start = clock() + _LEAD_S
    async with anyio.create_task_group() as group:
        for index, offset in enumerate(offsets):
            scheduled = start + offset
            await anyio.sleep_until(scheduled)
            payload = payloads[index % len(payloads)]
            for run in runs:
                group.start_soon(_call, run, payload, scheduled, start, clock)


async def _call(
    run: TargetRun,
    payload: Payload,
    scheduled: float,
    start: float,
    clock: Callable[[], float],
) -> None:
    cell = run.cell
    began = clock()
    cell.sent += 1
    cell.send_lag_ms.append(max(0.0, began - scheduled) * 1000.0)
    since_start = began - start
    cell.first_start_s = min(cell.first_start_s, since_start)
    cell.last_start_s = max(cell.last_start_s, since_start)
    try:
        result = await run.client.rerank(payload.query, payload.documents)
    except RerankError as error:
        name = type(error).__name__
        cell.errors_by_type[name] = cell.errors_by_type.get(name, 0) + 1
        return
    cell.latencies_ms.append((clock() - scheduled) * 1000.0)
    cell.requests += result.usage.requests
    cell.retries += result.usage.retries
    if result.usage.input_tokens is not None:
        cell.server_tokens.append(result.usage.input_tokens)
