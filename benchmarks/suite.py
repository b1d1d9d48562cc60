"""The benchmark suite: rerank_async side by side with what a user could hand-write.

Run from the repository root (needs the dev extras, or at least
``rerank-async[server,aiohttp]``)::

    .venv/bin/python benchmarks/suite.py            # everything, ~3 minutes on 2 cores
    .venv/bin/python benchmarks/suite.py --quick    # smaller workloads, for a smoke run

It starts the local server as a separate process (pinned to the last CPU when
``taskset`` exists; the client is pinned to the first), runs every client on
the same workloads in one run, checks every score against the server's
reference scorer, and writes ``benchmarks/results/suite.json`` and
``suite.md``. The figures and their meaning are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from rerank_async import Limits, RerankClient, RerankError, RerankRequest, RetryPolicy
from rerank_async.server._scoring import score as reference_score

RESULTS = Path(__file__).parent / "results"
MODEL = "bench/model"
CPUS = os.cpu_count() or 1
CLIENT_CPU = 0
SERVER_CPU = CPUS - 1


# -- workloads ------------------------------------------------------------------------------


def documents(n: int, salt: str = "") -> list[str]:
    words = ["solar", "battery", "storage", "grid", "panel", "roof", "energy", "coffee",
             "marathon", "volcano", "city"]  # fmt: skip
    return [
        f"{words[i % 11]} {words[(i * 7) % 11]} {words[(i * 3) % 11]} {salt}#{i}" for i in range(n)
    ]


@dataclass
class Workload:
    """Queries with their documents; every implementation scores the same pairs."""

    name: str
    calls: list[tuple[str, list[str]]]

    @property
    def documents(self) -> int:
        return sum(len(docs) for _, docs in self.calls)


def one_big_call(n: int) -> Workload:
    return Workload(f"one {n:,}-document call", [("solar battery storage", documents(n))])


def many_queries(queries: int, per_query: int) -> Workload:
    return Workload(
        f"{queries} queries x {per_query} documents",
        [(f"query {q} solar", documents(per_query, salt=f"q{q}")) for q in range(queries)],
    )


# -- the clients under test -------------------------------------------------------------------


@dataclass
class Run:
    """What one client did with one workload."""

    scores: Sequence[Sequence[float | None] | None]
    wall_s: float
    cpu_s: float
    http_requests: int


Client = Callable[[str, Workload, int, int], Awaitable[Run]]


def batches_of(docs: list[str], size: int) -> list[tuple[int, list[str]]]:
    return [(start, docs[start : start + size]) for start in range(0, len(docs), size)]


def rerank_async_client(engine: str, hedge_after: float | None = None) -> Client:
    async def run(base_url: str, workload: Workload, batch_size: int, concurrency: int) -> Run:
        requests = 0

        def count(_: object) -> None:
            nonlocal requests
            requests += 1

        scores: list[list[float] | None] = [None] * len(workload.calls)
        async with RerankClient(
            base_url=base_url, model=MODEL, batch_size=batch_size, max_concurrency=concurrency,
            http_client=engine, max_retries=8,  # type: ignore[arg-type]
            hedge_after=hedge_after, retry=RetryPolicy(initial_delay=0.05),
        ) as client:  # fmt: skip
            client.on_request = count
            started, cpu = time.perf_counter(), time.process_time()
            if len(workload.calls) == 1:
                query, docs = workload.calls[0]
                with contextlib.suppress(RerankError):  # a failed call counts as lost documents
                    scores[0] = await client.score(query, docs)
            else:
                items = [RerankRequest(q, d, id=i) for i, (q, d) in enumerate(workload.calls)]
                async with client.rerank_many(items) as outcomes:
                    async for outcome in outcomes:
                        if outcome.result is not None:
                            scores[int(outcome.id)] = outcome.result.scores
            return Run(scores, time.perf_counter() - started, time.process_time() - cpu, requests)

    return run


async def _post_httpx(
    http: httpx.AsyncClient, url: str, query: str, docs: list[str]
) -> list[float] | None:
    try:
        response = await http.post(url, json={"query": query, "documents": docs})
        return response.json()["scores"] if response.status_code == 200 else None  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


async def _post_aiohttp(
    session: aiohttp.ClientSession, url: str, query: str, docs: list[str]
) -> list[float] | None:
    try:
        async with session.post(url, json={"query": query, "documents": docs}) as response:
            return (await response.json())["scores"] if response.status == 200 else None  # type: ignore[no-any-return]
    except (aiohttp.ClientError, ValueError, KeyError):
        return None


def _assemble(
    workload: Workload, parts: dict[tuple[int, int], list[float] | None], batch_size: int
) -> list[list[float | None]]:
    """Each call's scores in input order; ``None`` for documents whose batch failed."""
    result: list[list[float | None]] = []
    for index, (_, docs) in enumerate(workload.calls):
        merged: list[float | None] = []
        for start, batch in batches_of(docs, batch_size):
            part = parts.get((index, start))
            merged.extend(
                part if part is not None and len(part) == len(batch) else [None] * len(batch)
            )
        result.append(merged)
    return result


async def sequential_loop(
    base_url: str, workload: Workload, batch_size: int, concurrency: int
) -> Run:
    parts: dict[tuple[int, int], list[float] | None] = {}
    url = f"{base_url}/{MODEL}"
    async with httpx.AsyncClient(timeout=60) as http:
        started, cpu = time.perf_counter(), time.process_time()
        for index, (query, docs) in enumerate(workload.calls):
            for start, batch in batches_of(docs, batch_size):
                parts[(index, start)] = await _post_httpx(http, url, query, batch)
        wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return Run(_assemble(workload, parts, batch_size), wall, cpu_s, len(parts))


Post = Callable[[str, list[str]], Awaitable[list[float] | None]]


async def _gather_batches(
    workload: Workload, batch_size: int, post: Post, concurrency: int | None
) -> Run:
    """Every batch of every call at once through ``asyncio.gather``, optionally bounded."""
    jobs = [
        (i, s, q, b)
        for i, (q, d) in enumerate(workload.calls)
        for s, b in batches_of(d, batch_size)
    ]
    semaphore = asyncio.Semaphore(concurrency) if concurrency else None

    async def one(query: str, batch: list[str]) -> list[float] | None:
        if semaphore is None:
            return await post(query, batch)
        async with semaphore:
            return await post(query, batch)

    started, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(one(q, b) for _, _, q, b in jobs))
    wall, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    parts = {(i, s): r for (i, s, _, _), r in zip(jobs, results, strict=True)}
    return Run(_assemble(workload, parts, batch_size), wall, cpu_s, len(jobs))


async def unbounded_gather(
    base_url: str, workload: Workload, batch_size: int, concurrency: int
) -> Run:
    url = f"{base_url}/{MODEL}"
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as http:
        return await _gather_batches(
            workload, batch_size, lambda q, b: _post_httpx(http, url, q, b), None
        )


async def semaphore_httpx(
    base_url: str, workload: Workload, batch_size: int, concurrency: int
) -> Run:
    url = f"{base_url}/{MODEL}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        return await _gather_batches(
            workload, batch_size, lambda q, b: _post_httpx(http, url, q, b), concurrency
        )


async def semaphore_aiohttp(
    base_url: str, workload: Workload, batch_size: int, concurrency: int
) -> Run:
    url = f"{base_url}/{MODEL}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await _gather_batches(
            workload, batch_size, lambda q, b: _post_aiohttp(session, url, q, b), concurrency
        )


def clients() -> dict[str, Client]:
    return {
        "rerank_async (httpx)": rerank_async_client("httpx"),
        "rerank_async (aiohttp)": rerank_async_client("aiohttp"),
        # Hedge a batch still unanswered after 3x the 50 ms service time.
        "rerank_async (aiohttp, hedged)": rerank_async_client("aiohttp", hedge_after=0.15),
        "sequential loop": sequential_loop,
        "unbounded gather": unbounded_gather,
        "semaphore + httpx": semaphore_httpx,
        "semaphore + aiohttp": semaphore_aiohttp,
    }


# -- the server --------------------------------------------------------------------------------


@contextmanager
def local_server(**flags: object) -> Iterator[str]:
    """The local server in its own process, pinned to the last CPU; yields the base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "rerank_async.cli",
        "serve",
        "--port",
        str(port),
        "--seed",
        "7",
    ]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    if shutil.which("taskset") and CPUS > 1:
        command = ["taskset", "-c", str(SERVER_CPU), *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1/inference"
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Row:
    setting: str
    workload: str
    client: str
    documents: int
    documents_per_s: float
    ideal_fraction: float | None
    wall_s: float
    cpu_us_per_request: float
    http_requests: int
    lost: int
    wrong: int
    extra: dict[str, Any] = field(default_factory=dict)


def check(workload: Workload, run: Run) -> tuple[int, int, int]:
    """(documents scored, lost, wrong) against the reference scorer."""
    scored = lost = wrong = 0
    for (query, docs), scores in zip(workload.calls, run.scores, strict=True):
        if scores is None or len(scores) != len(docs):
            lost += len(docs)
            continue
        for doc, value in zip(docs, scores, strict=True):
            if value is None:
                lost += 1
            elif abs(value - reference_score(query, doc)) > 1e-9:
                wrong += 1
            else:
                scored += 1
    return scored, lost, wrong


async def measure(
    setting: str, base_url: str, workload: Workload, names: Sequence[str],
    batch_size: int, concurrency: int, ideal: float | None, repeats: int,
) -> list[Row]:  # fmt: skip
    """Each client ``repeats`` times, interleaved so that drift hits all alike; median kept."""
    available = clients()
    runs: dict[str, list[Row]] = {name: [] for name in names}
    for attempt in range(repeats):
        for name in names:
            if attempt and name == "sequential loop":
                continue  # a reference point taking most of a minute: once is enough
            run = await available[name](base_url, workload, batch_size, concurrency)
            scored, lost, wrong = check(workload, run)
            rate = scored / run.wall_s
            runs[name].append(
                Row(setting, workload.name, name, scored, rate, rate / ideal if ideal else None,
                    run.wall_s, run.cpu_s / max(run.http_requests, 1) * 1e6, run.http_requests,
                    lost, wrong)
            )  # fmt: skip
    rows = []
    for name, attempts in runs.items():
        attempts.sort(key=lambda row: row.documents_per_s)
        median = attempts[len(attempts) // 2]
        median.extra["documents_per_s_all"] = [round(row.documents_per_s) for row in attempts]
        median.lost = max(row.lost for row in attempts)  # the worst run, not the median
        median.wrong = max(row.wrong for row in attempts)
        rows.append(median)
        print(
            f"  {name:24s} {median.documents_per_s:10,.0f} docs/s (median of {len(attempts)})  "
            f"lost {median.lost:5d}  wrong {median.wrong}",
            flush=True,
        )
    return rows


async def call_latency(
    base_url: str, n: int, batch_size: int, concurrency: int, repeats: int
) -> dict[str, dict[str, float]]:
    """p50/p99 of one n-document call: the planner's spreading against the naive split."""
    docs = documents(n)
    out = {}
    for label, min_batch in (
        ("naive split (ceil(N/B) batches)", batch_size),
        ("rerank_async planner", 8),
    ):
        latencies = []
        async with RerankClient(
            base_url=base_url, model=MODEL, batch_size=batch_size,
            max_concurrency=concurrency,limits=Limits(min_batch_size=min_batch)
        ) as client:  # fmt: skip
            await client.score("solar", docs)
            for _ in range(repeats):
                started = time.perf_counter()
                result = await client.rerank("solar", docs)
                latencies.append((time.perf_counter() - started) * 1000)
            batches = result.usage.batches
        latencies.sort()
        out[label] = {
            "batches": batches,
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        }
        print(
            f"  {label:34s} {batches:3d} batches  "
            f"p50 {out[label]['p50_ms']:.0f} ms  p99 {out[label]['p99_ms']:.0f} ms",
            flush=True,
        )
    return out


async def overhead(base_url: str, docs_per_request: int, requests: int) -> list[dict[str, Any]]:
    """Client CPU per request against a zero-latency server (one call = one request)."""
    workload = Workload(
        f"{requests} calls x {docs_per_request}",
        [(f"q{i}", documents(docs_per_request, f"o{i}")) for i in range(requests)],
    )
    available = clients()
    rows = []
    for name in (
        "rerank_async (httpx)",
        "rerank_async (aiohttp)",
        "semaphore + httpx",
        "semaphore + aiohttp",
    ):
        await available[name](
            base_url, Workload("warm-up", workload.calls[:20]), docs_per_request, 8
        )
        run = await available[name](base_url, workload, docs_per_request, 8)
        scored, lost, wrong = check(workload, run)
        row = {
            "client": name,
            "documents_per_request": docs_per_request,
            "cpu_us_per_request": run.cpu_s / run.http_requests * 1e6,
            "documents_per_cpu_s": scored / run.cpu_s,
            "documents_per_s_wall": scored / run.wall_s,
            "lost": lost,
            "wrong": wrong,
        }
        rows.append(row)
        print(
            f"  {name:24s} {row['cpu_us_per_request']:7.0f} us/request  "
            f"{row['documents_per_cpu_s']:9,.0f} docs per CPU-s",
            flush=True,
        )
    return rows


# -- the suite ---------------------------------------------------------------------------------


SETTINGS: dict[str, dict[str, object]] = {
    "50 ms per batch, capacity 8": {"latency_ms": 50, "capacity": 8},
    "18 ms + 1 ms/doc, capacity 8": {"latency_ms": 18, "per_doc_latency_ms": 1, "capacity": 8},
    "heavy tail: 5% of requests 10x slower": {
        "latency_ms": 50, "capacity": 8, "tail_probability": 0.05, "tail_multiplier": 10,
    },
    "faults: 10% 503, 5% 429 (Retry-After: 1), 2% drops": {
        "latency_ms": 50, "capacity": 8, "error_503_rate": 0.10, "error_429_rate": 0.05,
        "retry_after_s": 1, "drop_rate": 0.02,
    },
}  # fmt: skip
ALL_CLIENTS = [
    "rerank_async (httpx)",
    "rerank_async (aiohttp)",
    "rerank_async (aiohttp, hedged)",
    "sequential loop",
    "unbounded gather",
    "semaphore + httpx",
    "semaphore + aiohttp",
]


async def suite(quick: bool, repeats: int) -> dict[str, Any]:
    batch_size, concurrency = 32, 8
    big = one_big_call(2_000 if quick else 10_000)
    bulk = many_queries(40 if quick else 200, 100)
    rows: list[Row] = []
    for setting, flags in SETTINGS.items():
        print(f"\n## {setting}", flush=True)
        per_batch_s = (
            float(flags["latency_ms"]) + float(flags.get("per_doc_latency_ms", 0)) * batch_size
        ) / 1000  # type: ignore[arg-type]
        ideal = min(concurrency, int(flags["capacity"])) * batch_size / per_batch_s  # type: ignore[call-overload]
        names = (
            ALL_CLIENTS
            if setting.startswith("50 ms")
            else [n for n in ALL_CLIENTS if n != "sequential loop"]
        )
        with local_server(**flags) as base_url:
            for workload in (big, bulk):
                print(f"- {workload.name} (ideal {ideal:,.0f} docs/s)", flush=True)
                rows += await measure(
                    setting, base_url, workload, names, batch_size, concurrency, ideal, repeats
                )
    print(
        "\n## p50/p99 of a 1,000-document call at 18 ms + 1 ms/doc, capacity 8, B=256, C=8",
        flush=True,
    )
    with local_server(latency_ms=18, per_doc_latency_ms=1, capacity=8) as base_url:
        latency = await call_latency(base_url, 1000, 256, 8, 10 if quick else 30)
    print("\n## client overhead against a zero-latency server", flush=True)
    costs = []
    with local_server() as base_url:
        for per_request in (32, 128, 256):
            print(f"- {per_request} documents per request", flush=True)
            costs += await overhead(base_url, per_request, 500 if quick else 2000)
    return {
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": CPUS, "client_cpu": CLIENT_CPU, "server_cpu": SERVER_CPU},
        "settings": {"batch_size": batch_size, "concurrency": concurrency, "quick": quick,
                     "repeats": repeats},
        "throughput": [asdict(row) for row in rows],
        "call_latency": latency,
        "overhead": costs,
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| setting | workload | client | docs/s | of ideal | vs aiohttp loop | lost | wrong |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    by_key = {(r["setting"], r["workload"], r["client"]): r for r in report["throughput"]}
    for row in report["throughput"]:
        loop = by_key.get((row["setting"], row["workload"], "semaphore + aiohttp"))
        versus = (
            f"{row['documents_per_s'] / loop['documents_per_s']:.1%}"
            if loop and loop["documents_per_s"]
            else "-"
        )
        ideal = f"{row['ideal_fraction']:.1%}" if row["ideal_fraction"] is not None else "-"
        lines.append(
            f"| {row['setting']} | {row['workload']} | {row['client']} "
            f"| {row['documents_per_s']:,.0f} | {ideal} | {versus} "
            f"| {row['lost']:,} | {row['wrong']:,} |"
        )
    lines += ["", "| 1,000-document call | batches | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for label, data in report["call_latency"].items():
        lines.append(
            f"| {label} | {data['batches']} | {data['p50_ms']:.0f} | {data['p99_ms']:.0f} |"
        )
    lines += [
        "",
        "| client | docs/request | CPU µs/request | docs per CPU-second | docs/s (wall) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["overhead"]:
        lines.append(
            f"| {row['client']} | {row['documents_per_request']} "
            f"| {row['cpu_us_per_request']:,.0f} "
            f"| {row['documents_per_cpu_s']:,.0f} | {row['documents_per_s_wall']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke run)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per client and workload; the median is kept"
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and CPUS > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    report = asyncio.run(suite(args.quick, args.repeats))
    RESULTS.mkdir(exist_ok=True)
    name = "suite-quick" if args.quick else "suite"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2))
    (RESULTS / f"{name}.md").write_text(markdown(report))
    print(f"\nwrote {RESULTS / name}.json and .md")


if __name__ == "__main__":
    main()
