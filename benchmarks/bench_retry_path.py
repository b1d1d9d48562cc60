"""Why the first attempt of a batch bypasses tenacity: its cost per successful request.

``_retry.call_with_retries`` awaits the first attempt directly and builds a tenacity
``AsyncRetrying`` loop only when that attempt fails in a way the verdict retries. This
measures what the loop would cost on the path every successful request takes, against
the client's whole CPU per request on a zero-latency server (docs/benchmarks.md: about
100-200 us on this machine), in one run::

    .venv/bin/python benchmarks/bench_retry_path.py

It prints microseconds per call for: the bare await, ``call_with_retries`` (the fast
path), and the same attempt run through a tenacity loop configured as the slow path is.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from tenacity import AsyncRetrying, stop_never

from rerank_async._options import RetryPolicy
from rerank_async._retry import NoSignals, RetryDecision, call_with_retries

CALLS = 20_000
REPEATS = 7


async def attempt() -> int:
    return 1


async def bare() -> None:
    for _ in range(CALLS):
        await attempt()


async def fast_path() -> None:
    decide = RetryDecision(RetryPolicy(), 4, NoSignals())
    for _ in range(CALLS):
        await call_with_retries(attempt, decide)


async def tenacity_loop() -> None:
    for _ in range(CALLS):
        retrying = AsyncRetrying(
            retry=lambda _state: False,
            stop=stop_never,
            wait=lambda _state: 0.0,
            sleep=asyncio.sleep,
            reraise=True,
        )
        await retrying(attempt)


def per_call_us(run: object) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.process_time()
        asyncio.run(run())  # type: ignore[operator]
        samples.append((time.process_time() - started) / CALLS * 1e6)
    return statistics.median(samples)


def main() -> None:
    results = {name: per_call_us(run) for name, run in
               [("bare await", bare), ("call_with_retries (fast path)", fast_path),
                ("tenacity AsyncRetrying loop", tenacity_loop)]}  # fmt: skip
    for name, us in results.items():
        print(f"{name:32s} {us:7.2f} us per successful call (median of {REPEATS})")


if __name__ == "__main__":
    main()
