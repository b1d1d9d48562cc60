"""Benchmark of the fleet: replicas, the score cache's payoff, and its cost per document.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fleet.py           # about a minute on 2 cores
    .venv/bin/python benchmarks/bench_fleet.py --quick   # smaller runs, a smoke test

Every figure is a ratio from one run, so that the machine's speed cancels out:

1. Replicas: documents/s of one 10,240-document call through 1, 2 and 3 local servers,
   each its own process serving 8 requests at once at 100 ms each (a GPU worker pool),
   after a warm-up call; and of three 3,000-document calls from a new client through 1
   and 3. The ideal is N times one server's rate.
2. Cache payoff: ``rerank-async bulk --cache FILE`` run twice over the same input into
   fresh outputs, against a server taking 20 ms per request: the warm run sends nothing.
3. Cache cost: the client's CPU time per document on a cold run (``time.process_time``
   of a ``rerank_many`` against a zero-latency server in its own process), with and
   without a cache, and the cache's lookups and stores alone on the same documents
   (all missing, then stored), in memory and in a SQLite file, with the file's one-time
   opening apart; and the file's lookups when every score is found. The target: cold
   lookups below 5% of the client's CPU per document.

Results go to ``benchmarks/results/fleet.json``; ``docs/fleet.md`` quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_bulk import WORDS, run_bulk, server, write_input

from rerank_async import RerankClient, RerankRequest, ScoreCache
from rerank_async._fleet.cache import CacheContext

RESULTS = Path(__file__).parent / "results"


def passages(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{' '.join(rng.choices(WORDS, k=12))} {i}" for i in range(n)]


async def replica_rate(urls: list[str], documents: list[str]) -> float:
    base_url: str | list[str] = urls[0] if len(urls) == 1 else urls
    async with RerankClient(
        base_url=base_url, model="bench/fleet", batch_size=64, max_concurrency=32
    ) as client:
        await client.rerank("solar grid storage", documents[:1024])  # connections, limits
        started = time.perf_counter()
        await client.rerank("solar grid storage", documents)
        return len(documents) / (time.perf_counter() - started)


async def fresh_client_rate(urls: list[str], documents: list[str], calls: int) -> float:
    """Documents/s of ``calls`` calls in a row from a new client: no warm-up, nothing learned."""
    base_url: str | list[str] = urls[0] if len(urls) == 1 else urls
    async with RerankClient(base_url=base_url, model="bench/fleet") as client:
        started = time.perf_counter()
        for _ in range(calls):
            await client.rerank("solar grid storage", documents)
        return calls * len(documents) / (time.perf_counter() - started)


def replicas(n_documents: int) -> dict[str, Any]:
    documents = passages(n_documents, seed=2)
    with contextlib.ExitStack() as stack:
        urls = [
            stack.enter_context(server(latency_ms=100, capacity=8, seed=1)) + "/v1/inference"
            for _ in range(3)
        ]
        rates = {n: asyncio.run(replica_rate(urls[:n], documents)) for n in (1, 2, 3)}
        # A 3,000-document call (47 requests: 6 rounds on one server, 2 on three) three
        # times from a new client: the last round of each call decides the ratio.
        fresh = {
            n: asyncio.run(fresh_client_rate(urls[:n], documents[:3000], calls=3)) for n in (1, 3)
        }
    return {
        "documents": n_documents,
        "docs_per_s": {str(n): round(rate) for n, rate in rates.items()},
        "ratio_2_to_1": round(rates[2] / rates[1], 2),
        "ratio_3_to_1": round(rates[3] / rates[1], 2),
        "fresh_3000_docs_per_s": {str(n): round(rate) for n, rate in fresh.items()},
        "fresh_3000_ratio_3_to_1": round(fresh[3] / fresh[1], 2),
    }


def cache_payoff(workdir: Path, n_requests: int) -> dict[str, Any]:
    source = workdir / "cache-input.jsonl"
    write_input(source, n_requests, 50, seed=3)
    cache = workdir / "scores.sqlite"
    with server(latency_ms=20, capacity=8, seed=1) as url:
        cold = run_bulk(url, source, workdir, "--cache", str(cache))
        warm = run_bulk(url, source, workdir, "--cache", str(cache))
    return {
        "requests": n_requests,
        "documents": cold["documents"],
        "cold_wall_s": cold["wall_s"],
        "warm_wall_s": warm["wall_s"],
        "warm_http_requests": warm["http_requests"],
        "speedup": round(cold["wall_s"] / warm["wall_s"], 1),
        "cache_file_mib": round(cache.stat().st_size / 2**20, 2),
    }


async def client_cpu(url: str, requests: list[RerankRequest], cache: ScoreCache | None) -> float:
    """Seconds of this process's CPU to score ``requests`` (the server is another process)."""
    async with RerankClient(
        base_url=url, model="bench/fleet", batch_size=64, max_concurrency=32, cache=cache
    ) as client:
        async with client.rerank_many(requests[:20]) as outcomes:  # warm-up, its own texts
            async for _ in outcomes:
                pass
        started = time.process_time()
        async with client.rerank_many(requests[20:]) as outcomes:
            async for outcome in outcomes:
                assert outcome.error is None
        return time.process_time() - started


def cache_work(cache: ScoreCache, requests: list[RerankRequest]) -> tuple[float, float, float]:
    """CPU seconds of a cold run's cache work alone: (keys and lookups, all missing; stores;
    opening the file, once a process, not counted in the lookups)."""
    started = time.process_time()
    cache.lookup(CacheContext("deepinfra", "bench/fleet", None, "opens the file"), ["-"])
    opening = time.process_time() - started
    looking = storing = 0.0
    for request in requests:
        started = time.process_time()
        context = CacheContext("deepinfra", "bench/fleet", None, request.query)
        cache.lookup(context, request.documents)
        looked = time.process_time()
        cache.store(context, request.documents, [0.5] * len(request.documents))
        looking += looked - started
        storing += time.process_time() - looked
    cache.close()
    return looking, storing, opening


def cache_cost(workdir: Path, n_requests: int) -> dict[str, Any]:
    rng = random.Random(4)
    requests = [
        RerankRequest(" ".join(rng.sample(WORDS, 3)), passages(64, seed=i))
        for i in range(n_requests + 20)
    ]
    documents = 64 * n_requests
    with server(seed=1) as url:
        base = f"{url}/v1/inference"
        plain = asyncio.run(client_cpu(base, requests, None))
        in_memory = asyncio.run(client_cpu(base, requests, ScoreCache()))
        in_file = asyncio.run(client_cpu(base, requests, ScoreCache(workdir / "cost.sqlite")))
    # The cache's work alone, the best of three (other processes share the machine).
    memory = min((cache_work(ScoreCache(), requests[20:]) for _ in range(3)), key=sum)
    file = min(
        (cache_work(ScoreCache(workdir / f"alone{i}.sqlite"), requests[20:]) for i in range(3)),
        key=sum,
    )
    # Warm lookups: the same requests again, every score found.
    warm_file = ScoreCache(workdir / "alone0.sqlite")
    started = time.process_time()
    for request in requests[20:]:
        context = CacheContext("deepinfra", "bench/fleet", None, request.query)
        assert None not in warm_file.lookup(context, request.documents)
    warm = time.process_time() - started
    warm_file.close()
    per_doc = plain / documents
    return {
        "documents": documents,
        "client_cpu_us_per_doc": round(per_doc * 1e6, 2),
        "with_memory_cache_us_per_doc": round(in_memory / documents * 1e6, 2),
        "with_file_cache_us_per_doc": round(in_file / documents * 1e6, 2),
        "memory_lookup_us_per_doc": round(memory[0] / documents * 1e6, 2),
        "memory_store_us_per_doc": round(memory[1] / documents * 1e6, 2),
        "file_lookup_us_per_doc": round(file[0] / documents * 1e6, 2),
        "file_store_us_per_doc": round(file[1] / documents * 1e6, 2),
        "file_open_ms": round(file[2] * 1e3, 2),
        "file_warm_lookup_us_per_doc": round(warm / documents * 1e6, 2),
        "memory_lookup_share": round(memory[0] / plain, 3),
        "file_lookup_share": round(file[0] / plain, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument(
        "--part", choices=["replicas", "cache_payoff", "cache_cost"], help="run only this part"
    )
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        parts = {
            "replicas": lambda: replicas(int(10_240 * scale)),
            "cache_payoff": lambda: cache_payoff(workdir, int(400 * scale)),
            "cache_cost": lambda: cache_cost(workdir, int(300 * scale)),
        }
        figures = {name: run() for name, run in parts.items() if args.part in (None, name)}
    print(json.dumps(figures, indent=2))
    if not args.quick and args.part is None:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "fleet.json").write_text(json.dumps(figures, indent=2) + "\n", "utf-8")


if __name__ == "__main__":
    main()
