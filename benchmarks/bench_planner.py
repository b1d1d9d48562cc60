"""The planner's targets (docs/planner.md), against in-process servers with real sleeps.

Run from the repository root (needs the dev extras)::

    .venv/bin/python benchmarks/bench_planner.py              # every scenario, about a minute
    .venv/bin/python benchmarks/bench_planner.py outage       # one scenario (see SCENARIOS)

Each scenario runs the local server in a thread of this process (``running_server``)
and the client through its public API only, as the tests a user would write do:

* ``per_document``: 5 ms + 1 ms per document, capacity 8, ``batch_size=256``; after 6
  warm-up calls, a 256-document call's p50 against one request's latency (target <= 0.35x).
* ``fixed``: 50 ms whatever the size, capacity 8: requests per 256-document call (<= 2)
  and its p50 (<= 65 ms).
* ``cold_start``: a fresh client's first 1,024-document call, capacity 32, B=32, C=32,
  against a hand-written semaphore loop (median of 5, target >= 0.95x).
* ``queueing``: a server that queues above 8 in flight (20 ms), default options: 10-document
  calls beside a 50,000-document call against the same calls alone (p50, target <= 1.5x).
* ``outage``: a 5 s full outage during a 300-request ``rerank_many`` (50 ms, capacity 8):
  failed requests (target 0) and the requests that met the outage (503s, target <= 20%
  of good requests + 12 per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx

from rerank_async import RerankClient, RerankRequest
from rerank_async.server import ServerConfig, running_server

MODEL = "bench/model"


def documents(n: int, salt: str = "") -> list[str]:
    return [f"solar battery {salt} #{i}" for i in range(n)]


def _client(base_url: str, **options: Any) -> RerankClient:
    return RerankClient(base_url=base_url, model=MODEL, **options)


async def per_document() -> dict[str, Any]:
    config = ServerConfig(latency_ms=5, per_doc_latency_ms=1, capacity=8)
    with running_server(config) as server:
        async with _client(server.base_url, batch_size=256) as client:
            docs = documents(256)
            for i in range(6):
                await client.score(f"warm {i}", docs)
            times = []
            for i in range(9):
                started = time.perf_counter()
                await client.score(f"q {i}", docs)
                times.append(time.perf_counter() - started)
            model = client.statistics()
        async with _client(server.base_url, batch_size=256, limits=_one_request()) as single:
            one = []
            for i in range(5):
                started = time.perf_counter()
                await single.score(f"one {i}", docs)
                one.append(time.perf_counter() - started)
    p50, one_p50 = statistics.median(times), statistics.median(one)
    return {"p50_ms": p50 * 1e3, "one_request_ms": one_p50 * 1e3, "ratio": p50 / one_p50,
            "target": "ratio <= 0.35", "statistics": _endpoint(model)}  # fmt: skip


def _one_request() -> Any:
    from rerank_async import Limits

    return Limits(split=False)


async def fixed() -> dict[str, Any]:
    config = ServerConfig(latency_ms=50, capacity=8)
    with running_server(config) as server:
        async with _client(server.base_url, batch_size=256) as client:
            docs = documents(256)
            for i in range(6):
                await client.score(f"warm {i}", docs)
            times, requests = [], []
            for i in range(9):
                started = time.perf_counter()
                result = await client.rerank(f"q {i}", docs)
                times.append(time.perf_counter() - started)
                requests.append(result.usage.requests)
            model = client.statistics()
    return {"p50_ms": statistics.median(times) * 1e3, "max_requests": max(requests),
            "target": "max_requests <= 2, p50 <= 65 ms",
            "statistics": _endpoint(model)}  # fmt: skip


async def cold_start() -> dict[str, Any]:
    config = ServerConfig(latency_ms=50, capacity=32)
    docs = documents(1024)
    ours, theirs = [], []
    with running_server(config) as server:
        for i in range(5):
            async with _client(server.base_url, batch_size=32, max_concurrency=32) as client:
                started = time.perf_counter()
                await client.score(f"cold {i}", docs)
                ours.append(1024 / (time.perf_counter() - started))
            theirs.append(await _semaphore_loop(server.base_url, f"hand {i}", docs, 32, 32))
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    return {"ours_docs_per_s": ours, "loop_docs_per_s": theirs, "ratio_median":
            statistics.median(ratios), "target": ">= 0.95"}  # fmt: skip


async def _semaphore_loop(
    base_url: str, query: str, docs: list[str], batch: int, concurrency: int
) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    url = f"{base_url}/{MODEL}"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as http:

        async def one(start: int) -> None:
            async with semaphore:
                body = {"query": query, "documents": docs[start : start + batch]}
                response = await http.post(url, json=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(s) for s in range(0, len(docs), batch)))
        return len(docs) / (time.perf_counter() - started)


async def queueing(**options: Any) -> dict[str, Any]:
    config = ServerConfig(latency_ms=20, capacity=8)
    with running_server(config) as server:
        async with _client(server.base_url, **options) as client:
            alone = [await _timed(client, f"alone {i}", documents(10, f"a{i}")) for i in range(15)]
            big = asyncio.ensure_future(client.score("big", documents(50_000, "big")))
            await asyncio.sleep(0.3)
            beside = []
            for i in range(15):
                beside.append(await _timed(client, f"beside {i}", documents(10, f"b{i}")))
            still_running = not big.done()
            await big
            model = client.statistics()
    ratio = statistics.median(beside) / statistics.median(alone)
    return {"alone_p50_ms": statistics.median(alone) * 1e3, "beside_p50_ms":
            statistics.median(beside) * 1e3, "ratio": ratio, "big_still_running": still_running,
            "target": "ratio <= 1.5", "statistics": _endpoint(model)}  # fmt: skip


async def _timed(client: RerankClient, query: str, docs: list[str]) -> float:
    started = time.perf_counter()
    await client.score(query, docs)
    return time.perf_counter() - started


async def outage() -> dict[str, Any]:
    config = ServerConfig(latency_ms=50, capacity=8, outage_start_s=1.0, outage_duration_s=5.0)
    items = [RerankRequest(f"query {q}", documents(100, f"o{q}"), id=q) for q in range(300)]
    failed: dict[str, int] = {}
    with running_server(config) as server:
        started = time.perf_counter()
        async with _client(server.base_url, batch_size=32) as client:
            async with client.rerank_many(items) as outcomes:
                async for outcome in outcomes:
                    if outcome.error is not None:
                        name = type(outcome.error).__name__
                        failed[name] = failed.get(name, 0) + 1
        wall = time.perf_counter() - started
        async with httpx.AsyncClient() as http:
            root = server.base_url.removesuffix("/v1/inference")
            stats = (await http.get(f"{root}/stats")).json()
    counts = stats["status_counts"]
    good, bad = counts.get("200", 0), counts.get("503", 0)
    allowed = 0.2 * good + 12 * wall
    return {"failed": failed, "ok_requests": good, "503s": bad, "wall_s": wall,
            "allowed_503s": allowed, "target": "failed == 0, 503s <= allowed_503s"}  # fmt: skip


def _endpoint(statistics_: Any) -> Any:
    model = getattr(statistics_, "endpoint", None)
    return repr(model) if model is not None else None


SCENARIOS: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
    "per_document": per_document,
    "fixed": fixed,
    "cold_start": cold_start,
    "queueing": queueing,
    "queueing_c8": partial(queueing, max_concurrency=8),
    "outage": outage,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)}")
    args = parser.parse_args()
    report = {}
    for name in args.scenarios or list(SCENARIOS):
        started = time.perf_counter()
        report[name] = asyncio.run(SCENARIOS[name]())
        print(f"{name} ({time.perf_counter() - started:.1f} s): {json.dumps(report[name])}",
              file=sys.stderr, flush=True)  # fmt: skip
    json.dump(report, sys.stdout, indent=2, default=str)


if __name__ == "__main__":
    main()
