"""A long run against the local server with faults on: is anything growing? (docs/lifecycle.md)

Run from the repository root::

    .venv/bin/python -m benchmarks.soak                      # 10 minutes, aiohttp engine
    .venv/bin/python -m benchmarks.soak --minutes 1 --engine httpx --tracemalloc

The server runs in a subprocess (its memory is not the client's) and answers 5% of
requests with 503, drops 2% of connections mid-answer and malforms 2% of bodies. The
client runs ``--workers`` concurrent callers, each reranking 8 to 64 documents per call;
every 10th call's scores are checked against the reference scorer exactly. Every
``--sample-seconds`` the client's RSS (``/proc/self/statm``) and its open file descriptors
(``/proc/self/fd``) are sampled. Reported: the least-squares slope of each over the second
half of the run (the first half warms caches, pools and allocator arenas), in MB per
minute and bytes per request. ``--tracemalloc`` also prints the ten source lines whose
Python allocations grew most between the middle and the end.

Results go to ``benchmarks/results/soak.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rerank_async import RerankClient, RerankError, RetryPolicy
from rerank_async.server._scoring import score as reference_score

RESULTS = Path(__file__).parent / "results" / "soak.json"
PAGE = os.sysconf("SC_PAGE_SIZE")
SERVER = textwrap.dedent(
    """
    import sys, time
    from rerank_async.server import ServerConfig, running_server
    config = ServerConfig(
        latency_ms=1, jitter_ms=1, error_503_rate=0.05, drop_rate=0.02,
        malformed_rate=0.02, seed=7,
    )
    with running_server(config) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
    """
)


@dataclass
class Run:
    engine: str
    minutes: float
    workers: int
    calls: int = 0
    failed_calls: int = 0
    checked_calls: int = 0
    wrong_scores: int = 0
    samples: list[tuple[float, int, float, int]] = field(default_factory=list)  # t, calls, MB, fds


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE / 1e6


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs``."""
    n = len(xs)
    if n < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


async def worker(client: RerankClient, run: Run, stop_at: float, rng: random.Random) -> None:
    while time.monotonic() < stop_at:
        # A small vocabulary: the reference scorer's caches (in this process) fill during
        # the first half, so that they do not count as the client's growth.
        query = f"solar storage {rng.randrange(500)}"
        documents = [f"panel {rng.randrange(2000)} battery" for _ in range(rng.randint(8, 64))]
        try:
            scores = await client.score(query, documents)
        except RerankError:
            run.failed_calls += 1
            continue
        run.calls += 1
        if run.calls % 10 == 0:
            run.checked_calls += 1
            expected = [reference_score(query, document) for document in documents]
            if scores != expected:
                run.wrong_scores += 1


async def soak(base_url: str, run: Run, sample_seconds: float, trace: bool) -> list[str]:
    started = time.monotonic()
    stop_at = started + run.minutes * 60
    middle: tracemalloc.Snapshot | None = None
    async with RerankClient(
        base_url=base_url,
        http_client=run.engine,  # type: ignore[arg-type]
        batch_size=16,
        max_concurrency=16,
        max_retries=10,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.05, budget_ratio=None),
    ) as client:
        workers = [
            asyncio.create_task(worker(client, run, stop_at, random.Random(seed)))
            for seed in range(run.workers)
        ]
        while time.monotonic() < stop_at:
            await asyncio.sleep(sample_seconds)
            now = time.monotonic() - started
            run.samples.append((round(now, 1), run.calls, round(rss_mb(), 3), open_fds()))
            if trace and middle is None and now >= run.minutes * 30:
                middle = tracemalloc.take_snapshot()
        await asyncio.gather(*workers)
    if not trace or middle is None:
        return []
    growth = tracemalloc.take_snapshot().compare_to(middle, "lineno")
    return [str(stat) for stat in growth[:10]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--engine", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.tracemalloc:
        tracemalloc.start(8)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the dropped answers uvicorn reports
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        run = Run(engine=args.engine, minutes=args.minutes, workers=args.workers)
        growth = asyncio.run(soak(base_url, run, args.sample_seconds, args.tracemalloc))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(30)
        if server.stdout is not None:
            server.stdout.close()
    second_half = [s for s in run.samples if s[0] >= run.minutes * 30]
    times = [s[0] / 60 for s in second_half]
    calls = [float(s[1]) for s in second_half]
    rss = [s[2] for s in second_half]
    fds = [float(s[3]) for s in second_half]
    report = {
        **{k: v for k, v in asdict(run).items() if k != "samples"},
        "rss_mb_per_minute": round(slope(times, rss), 4),
        "rss_bytes_per_call": round(slope(calls, rss) * 1e6, 2),
        "fds_per_minute": round(slope(times, fds), 4),
        "rss_mb_first_last": [run.samples[0][2], run.samples[-1][2]] if run.samples else [],
        "fds_first_last": [run.samples[0][3], run.samples[-1][3]] if run.samples else [],
        "tracemalloc_growth": growth,
        "samples": run.samples,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
