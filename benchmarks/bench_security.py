"""Measurements behind docs/security.md: memory of refused bodies, deadlines, the surrogate check.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_security      # about 40 s on 2 cores

1. RSS growth of a client process (a subprocess, so that the server's memory does not
   count) refusing a 50 MB body and a 200 MB gzip bomb for a 2-document request, per
   engine: the ``ru_maxrss`` high-water mark after the refusal minus before it.
2. Wall time until a call with ``timeout=3`` and ``max_retries=0`` ends against a body
   that trickles one byte per 100 ms and an endless chunked body, per engine.
3. The lone-surrogate check on 20,000 documents of 2 KB: total time and the longest
   stretch between two yields to the event loop (CPU time of the thread), for ASCII,
   Latin-1 and CJK text (median of 5).

Results go to ``benchmarks/results/security.json``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio

from rerank_async import RerankClient, ResponseTimeoutError
from rerank_async._checks import check_encodable_in_slices
from tests.security.hostile import hostile_server
from tests.security.test_hostile_servers import _RSS_PROBE

ENGINES = ("httpx", "aiohttp")
RESULTS = Path(__file__).parent / "results" / "security.json"


def rss_growth_kib(url: str, engine: str, behaviour: str) -> int:
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, url, engine, behaviour],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(completed.stdout.strip())


async def deadline_seconds(base_url: str, engine: str) -> float:
    async with RerankClient(
        base_url=base_url,
        model="m",
        http_client=engine,  # type: ignore[arg-type]
        timeout=3,
        max_retries=0,
    ) as client:
        started = time.monotonic()
        try:
            await client.score("q", ["a", "b"])
        except ResponseTimeoutError:
            return time.monotonic() - started
    raise RuntimeError("the call did not time out")


async def surrogate_check(documents: list[str]) -> tuple[float, float]:
    """(total ms, longest ms between two yields) for one sliced check of ``documents``.

    The holds are CPU time of this thread (``thread_time``), so that another process
    preempting it on the shared 2-core machine is not counted as the check's.
    """
    gaps: list[float] = []
    last = time.perf_counter()
    done = False

    watching = anyio.Event()

    async def watch() -> None:
        nonlocal last
        last = time.thread_time()
        watching.set()
        while not done:
            await asyncio.sleep(0)
            now = time.thread_time()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await watching.wait()
        started = time.perf_counter()
        await check_encodable_in_slices(documents)
        total = time.perf_counter() - started
        done = True
    return total * 1000, max(gaps) * 1000


def main() -> None:
    results: dict[str, object] = {}
    with hostile_server() as server:
        for engine in ENGINES:
            for behaviour in ("big", "gzip-bomb"):
                key = f"rss_growth_mib.{behaviour}.{engine}"
                results[key] = round(rss_growth_kib(server.url, engine, behaviour) / 1024, 1)
                print(key, results[key])
            for behaviour in ("trickle", "endless"):
                key = f"timeout_3_s_ends_after_s.{behaviour}.{engine}"
                seconds = asyncio.run(deadline_seconds(server.base_url(behaviour), engine))
                results[key] = round(seconds, 2)
                print(key, results[key])
    texts = {
        "ascii": "relevant passage text " * 91,
        "latin1": "passage pertinente été " * 87,
        "cjk": "相关段落文本内容" * 250,
    }
    for name, unit in texts.items():
        documents = [f"{index} {unit}"[:2000] for index in range(20_000)]
        runs = [asyncio.run(surrogate_check(documents)) for _ in range(5)]
        results[f"surrogate_check_ms.{name}.total"] = round(
            statistics.median(r[0] for r in runs), 2
        )
        results[f"surrogate_check_ms.{name}.longest_hold"] = round(
            statistics.median(r[1] for r in runs), 2
        )
        print(name, results[f"surrogate_check_ms.{name}.total"], "ms total,",
              results[f"surrogate_check_ms.{name}.longest_hold"], "ms longest hold")  # fmt: skip
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
