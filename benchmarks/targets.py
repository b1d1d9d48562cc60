"""The "fast by default" targets, every ratio from one run (docs/benchmarks.md, "Fast by default").

Run from the repository root (needs the dev extras)::

    .venv/bin/python benchmarks/targets.py            # about 3 minutes on 2 cores
    .venv/bin/python benchmarks/targets.py --quick    # smaller workloads, a smoke run

Like ``suite.py`` it starts the local server in its own process pinned to the last CPU
and pins itself to the first; every client runs on the same workload, interleaved, three
times, and the median is kept; every score is checked against the server's reference
scorer. rerank_async runs with its defaults (``RerankClient(base_url=..., model=...,
batch_size=B, max_concurrency=C)``: B and C are the workload, nothing is tuned), next to
its two engines named explicitly, a hand-written semaphore + aiohttp + orjson loop (the
reference, 1.00x) and a hand-written semaphore + httpx loop:

1. client CPU per request against a zero-latency server, 32, 128 and 256 documents per
   request, one request per call;
2. docs/s of one 10,000-document call and of 200 queries x 100 documents (``rerank_many``)
   against a server of capacity 8 at 50 ms per request, B=32, C=8, with the fraction of
   the ideal 8 x 32 / 50 ms = 5,120 docs/s;
3. the same bulk with DeepInfra's one-query-per-document form (a Qwen3 reranker), where
   rerank_async packs pairs of several queries into full requests, against the per-query
   aiohttp loop;
4. the worst event-loop lag (a 1 ms ticker on the same loop) during one call of 20,000
   documents of 2 KB at ``batch_size=1000``.

Writes ``benchmarks/results/targets.json`` (``targets-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from suite import CLIENT_CPU, CPUS, MODEL, RESULTS, documents, local_server

from rerank_async import RerankClient, RerankRequest
from rerank_async.server._scoring import score as reference_score

QWEN = "Qwen/Qwen3-Reranker-0.6B"  # any name with "qwen3-reranker" selects the queries form
B, C = 32, 8
IDEAL = C * B / 0.050

Calls = list[tuple[str, list[str]]]
# (base_url, model, calls, batch_size) -> (scores per call, client CPU s, wall s, requests)
Runner = Callable[[str, str, Calls, int], Awaitable[tuple[list[list[float]], float, float, int]]]


# -- hand-written loops --------------------------------------------------------------------


def _body(model: str, query: str, batch: list[str]) -> bytes:
    if "qwen3-reranker" in model.lower():
        return orjson.dumps({"queries": [query] * len(batch), "documents": batch})
    return orjson.dumps({"query": query, "documents": batch})


def _jobs(calls: Calls, batch_size: int) -> list[tuple[int, int, str, list[str]]]:
    return [
        (i, start, query, docs[start : start + batch_size])
        for i, (query, docs) in enumerate(calls)
        for start in range(0, len(docs), batch_size)
    ]


def _merge(
    calls: Calls, jobs: Sequence[tuple[int, int, str, list[str]]], parts: Sequence[list[float]]
) -> list[list[float]]:
    merged: list[list[float]] = [[] for _ in calls]
    for (i, _, _, _), part in zip(jobs, parts, strict=True):
        merged[i].extend(part)
    return merged


async def aiohttp_loop(
    base_url: str, model: str, calls: Calls, batch_size: int
) -> tuple[list[list[float]], float, float, int]:
    """A semaphore around aiohttp posts, orjson both ways: the 30-line loop a user writes."""
    url = f"{base_url}/{model}"
    headers = {"Content-Type": "application/json"}
    jobs = _jobs(calls, batch_size)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=C)) as session:
        semaphore = asyncio.Semaphore(C)

        async def one(query: str, batch: list[str]) -> list[float]:
            async with semaphore:
                body = _body(model, query, batch)
                async with session.post(url, data=body, headers=headers) as response:
                    return orjson.loads(await response.read())["scores"]  # type: ignore[no-any-return]

        await one(*jobs[0][2:])  # open a connection before the clock starts
        cpu, wall = time.process_time(), time.perf_counter()
        parts = await asyncio.gather(*(one(q, b) for _, _, q, b in jobs))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return _merge(calls, jobs, parts), cpu, wall, len(jobs)


async def httpx_loop(
    base_url: str, model: str, calls: Calls, batch_size: int
) -> tuple[list[list[float]], float, float, int]:
    """A semaphore around httpx posts."""
    url = f"{base_url}/{model}"
    jobs = _jobs(calls, batch_size)
    limits = httpx.Limits(max_connections=C, max_keepalive_connections=C)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        semaphore = asyncio.Semaphore(C)

        async def one(query: str, batch: list[str]) -> list[float]:
            async with semaphore:
                response = await http.post(
                    url, content=_body(model, query, batch),
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                return response.json()["scores"]  # type: ignore[no-any-return]

        await one(*jobs[0][2:])
        cpu, wall = time.process_time(), time.perf_counter()
        parts = await asyncio.gather(*(one(q, b) for _, _, q, b in jobs))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return _merge(calls, jobs, parts), cpu, wall, len(jobs)


# -- rerank_async ---------------------------------------------------------------------------


def rerank_async(engine: str | None) -> Runner:
    """rerank_async with its defaults (``engine=None``) or one engine named explicitly.

    One call runs as ``client.score``; several calls run through ``rerank_many``, except
    in the overhead test (``one_request_calls``), where each call is one request and a
    user-level semaphore drives ``client.score`` exactly as the loops drive their posts.
    """

    async def run(
        base_url: str, model: str, calls: Calls, batch_size: int
    ) -> tuple[list[list[float]], float, float, int]:
        options: dict[str, Any] = {} if engine is None else {"http_client": engine}
        scores: list[list[float]] = [[] for _ in calls]
        async with RerankClient(
            base_url=base_url, model=model, batch_size=batch_size, max_concurrency=C, **options
        ) as client:
            await client.score(calls[0][0], calls[0][1][:batch_size])  # open a connection first
            requests = 0
            cpu, wall = time.process_time(), time.perf_counter()
            if len(calls) == 1:
                result = await client.rerank(*calls[0])
                scores[0], requests = result.scores, result.usage.requests
            elif all(len(docs) <= batch_size for _, docs in calls):
                semaphore = asyncio.Semaphore(C)

                async def one(i: int) -> int:
                    async with semaphore:
                        result = await client.rerank(*calls[i])
                        scores[i] = result.scores
                        return result.usage.requests

                requests = sum(await asyncio.gather(*(one(i) for i in range(len(calls)))))
            else:
                items = [RerankRequest(q, d, id=i) for i, (q, d) in enumerate(calls)]
                async with client.rerank_many(items, fail_fast=True) as outcomes:
                    async for outcome in outcomes:
                        assert outcome.result is not None
                        scores[int(outcome.id)] = outcome.result.scores
                        requests += outcome.result.usage.requests
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return scores, cpu, wall, requests

    return run


CLIENTS: dict[str, Runner] = {
    "rerank_async default": rerank_async(None),
    "rerank_async http_engine='aiohttp'": rerank_async("aiohttp"),
    "rerank_async http_engine='httpx'": rerank_async("httpx"),
    "aiohttp + orjson loop": aiohttp_loop,
    "httpx loop": httpx_loop,
}
REFERENCE = "aiohttp + orjson loop"


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Measured:
    client: str
    cpu_us_per_request: float
    documents_per_cpu_s: float
    documents_per_s: float
    requests: int
    runs_documents_per_s: list[float]


def check(calls: Calls, scores: list[list[float]]) -> None:
    """Every score in its place: a benchmark that loses or moves one is void."""
    for (query, docs), got in zip(calls, scores, strict=True):
        if len(got) != len(docs):
            raise AssertionError(f"{len(got)} scores for {len(docs)} documents")
        for doc, value in zip(docs, got, strict=True):
            if abs(value - reference_score(query, doc)) > 1e-9:
                raise AssertionError(f"wrong score for {doc!r}")


async def measure(
    base_url: str, model: str, calls: Calls, names: Sequence[str], repeats: int,
    batch_size: int = B,
) -> dict[str, Measured]:  # fmt: skip
    """Each client ``repeats`` times, interleaved; the median run by docs/s is kept."""
    runs: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in names}
    n_docs = sum(len(docs) for _, docs in calls)
    root = base_url.removesuffix("/v1/inference")
    for _ in range(repeats):
        for name in names:
            async with httpx.AsyncClient() as admin:
                (await admin.post(f"{root}/stats/reset")).raise_for_status()
            scores, cpu, wall, _ = await CLIENTS[name](base_url, model, calls, batch_size)
            check(calls, scores)
            # What the server received, less each client's one warm-up request: packed
            # requests are shared by several calls, so the calls' own counts overlap.
            async with httpx.AsyncClient() as admin:
                requests = (await admin.get(f"{root}/stats")).json()["requests"] - 1
            runs[name].append((n_docs / wall, cpu, wall, requests))
    out = {}
    for name, attempts in runs.items():
        cpus = sorted(cpu for _, cpu, _, _ in attempts)
        median_cpu = cpus[len(cpus) // 2]
        requests = attempts[0][3]
        out[name] = Measured(
            client=name,
            cpu_us_per_request=median_cpu / requests * 1e6,
            documents_per_cpu_s=n_docs / median_cpu,
            documents_per_s=statistics.median(rate for rate, _, _, _ in attempts),
            requests=requests,
            runs_documents_per_s=[round(rate) for rate, _, _, _ in attempts],
        )
    return out


async def worst_lag(base_url: str, engine: str | None, n: int, size: int) -> tuple[float, float]:
    """The worst overshoot of a 1 ms ticker during one big call, and the CPU behind it.

    Returns ``(wall_ms, cpu_ms)``: the ticker's worst lateness, and the most CPU
    time the loop spent between two ticks. On a busy machine the first also counts
    time the process was not scheduled; the second is the client's own share.
    """
    docs = [(f"{i} solar battery " * (size // 16 + 1))[:size] for i in range(n)]
    options: dict[str, Any] = {} if engine is None else {"http_client": engine}
    async with RerankClient(base_url=base_url, model=MODEL, batch_size=1000, **options) as client:
        await client.score("warm up", docs[:10])
        worst = worst_cpu = 0.0
        done = False

        async def ticker() -> None:
            nonlocal worst, worst_cpu
            while not done:
                before, cpu = time.perf_counter(), time.thread_time()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - before - 0.001)
                worst_cpu = max(worst_cpu, time.thread_time() - cpu)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        await client.score("solar", docs)
        done = True
        await tick
    return worst * 1000, worst_cpu * 1000


def ratios(results: dict[str, Measured], key: str) -> dict[str, float]:
    reference = getattr(results[REFERENCE], key)
    return {name: getattr(m, key) / reference for name, m in results.items()}


async def run(quick: bool, repeats: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": CPUS, "client_cpu": CLIENT_CPU},
        "repeats": repeats, "quick": quick,
    }  # fmt: skip
    everyone = list(CLIENTS)
    print("## client overhead, zero-latency server, one request per call, C=8", flush=True)
    report["overhead"] = {}
    with local_server() as base_url:
        for per_request in (32, 128, 256):
            n_requests = (300 if quick else 1000) * 32 // per_request
            calls = [(f"q{i} solar", documents(per_request, f"o{i}")) for i in range(n_requests)]
            results = await measure(base_url, MODEL, calls, everyone, repeats, per_request)
            cpu = {n: 1 / r for n, r in ratios(results, "documents_per_cpu_s").items()}
            report["overhead"][per_request] = {
                "results": {n: vars(m) for n, m in results.items()}, "cpu_ratio": cpu,
            }  # fmt: skip
            for name, m in results.items():
                print(
                    f"  B={per_request:3d} {name:36s} {m.cpu_us_per_request:7.0f} us/request  "
                    f"CPU {cpu[name]:5.2f}x  {m.documents_per_cpu_s:9,.0f} docs per CPU-s",
                    flush=True,
                )
        print("## worst event-loop lag, 20,000 x 2 KB documents, batch_size=1000", flush=True)
        report["lag_ms"], report["lag_cpu_ms"] = {}, {}
        for label, engine in (("rerank_async default", None), ("httpx engine", "httpx")):
            lags = [await worst_lag(base_url, engine, 4000 if quick else 20_000, 2048)
                    for _ in range(repeats)]  # fmt: skip
            report["lag_ms"][label] = [wall for wall, _ in lags]
            report["lag_cpu_ms"][label] = [cpu for _, cpu in lags]
            print(
                f"  {label:36s} worst lag {', '.join(f'{w:.1f}' for w, _ in lags)} ms; "
                f"CPU between ticks {', '.join(f'{c:.1f}' for _, c in lags)} ms",
                flush=True,
            )

    print(f"## throughput, 50 ms per request, capacity 8, B={B}, C={C}", flush=True)
    throughput_clients = ["rerank_async default", REFERENCE]
    big = [("solar battery storage", documents(2_000 if quick else 10_000))]
    bulk = [(f"query {q} solar", documents(100, f"q{q}")) for q in range(40 if quick else 200)]
    report["throughput"] = {}
    with local_server(latency_ms=50, capacity=8) as base_url:
        for label, model, calls in (
            ("one 10,000-document call", MODEL, big),
            ("200 queries x 100 documents", MODEL, bulk),
            ("200 x 100, queries form (packed)", QWEN, bulk),
        ):
            results = await measure(base_url, model, calls, throughput_clients, repeats)
            speed = ratios(results, "documents_per_s")
            report["throughput"][label] = {
                "results": {n: vars(m) for n, m in results.items()}, "ratio": speed,
                "of_ideal": {n: m.documents_per_s / IDEAL for n, m in results.items()},
            }  # fmt: skip
            for name, m in results.items():
                print(
                    f"  {label:34s} {name:24s} {m.documents_per_s:7,.0f} docs/s  "
                    f"{speed[name]:5.1%} of the loop  {m.documents_per_s / IDEAL:5.1%} of ideal  "
                    f"{m.requests} requests",
                    flush=True,
                )
    report["targets"] = targets(report)
    print("## targets", flush=True)
    for line in report["targets"]:
        print(f"  {line}", flush=True)
    return report


def targets(report: dict[str, Any]) -> list[str]:
    """The issue's targets, each with its measured figure."""
    over, thr = report["overhead"], report["throughput"]
    cpu32 = over[32]["cpu_ratio"]["rerank_async default"]
    per_cpu_128 = over[128]["results"]["rerank_async default"]["documents_per_cpu_s"]
    big = thr["one 10,000-document call"]["ratio"]["rerank_async default"]
    bulk = thr["200 queries x 100 documents"]["ratio"]["rerank_async default"]
    packed = thr["200 x 100, queries form (packed)"]["ratio"]["rerank_async default"]
    lag = statistics.median(report["lag_ms"]["rerank_async default"])
    lag_cpu = max(report["lag_cpu_ms"]["rerank_async default"])

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    return [
        f"CPU per document at 32/request <= 1.5x the aiohttp+orjson loop: {cpu32:.2f}x "
        f"{verdict(cpu32 <= 1.5)}",
        f"docs per CPU-second at 128/request >= 250,000: {per_cpu_128:,.0f} "
        f"{verdict(per_cpu_128 >= 250_000)}",
        f"10,000-document call >= 1.0x the aiohttp loop: {big:.3f}x {verdict(big >= 1.0)}",
        f"200 x 100 bulk >= 1.0x the aiohttp loop: {bulk:.3f}x {verdict(bulk >= 1.0)}",
        f"worst event-loop lag <= 10 ms: {lag:.1f} ms (median of the runs' worst; at most "
        f"{lag_cpu:.1f} ms of CPU between two ticks) {verdict(lag <= 10)}",
        f"packed bulk (queries form) >= 1.25x the per-query aiohttp loop: {packed:.3f}x "
        f"{verdict(packed >= 1.25)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per client")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and CPUS > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    report = asyncio.run(run(args.quick, args.repeats))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("targets-quick.json" if args.quick else "targets.json")
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
