"""Living within a provider's limits: the targets of docs/rate-limits.md, measured.

Run from the repository root (needs the dev extras)::

    .venv/bin/python benchmarks/bench_limits.py              # every scenario, ~2-3 minutes
    .venv/bin/python benchmarks/bench_limits.py capacity     # one scenario (see SCENARIOS)
    .venv/bin/python benchmarks/bench_limits.py --repeats 3  # runs per comparison

Each scenario starts the local server in its own process (pinned to the last CPU
when ``taskset`` exists), 50 ms per request, and counts what the *server* saw:
requests, 429s and 503s, its maximum in flight, and its request rate. Every score
that comes back is checked against the server's reference scorer, so "nothing
lost" means every document got its own correct score. Comparisons are ratios
measured in the same run, interleaved, the median of ``--repeats``. Results go to
``benchmarks/results/limits.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from rerank_async import Limits, RerankClient, RerankError, RerankRequest, RetryPolicy
from rerank_async.server._scoring import score as reference_score

RESULTS = Path(__file__).parent / "results"
MODEL = "bench/model"
LATENCY_MS = 50.0
BATCH = 32
CPUS = os.cpu_count() or 1


def documents(n: int, salt: str = "") -> list[str]:
    words = ["solar", "battery", "storage", "grid", "panel", "roof", "energy", "coffee"]
    return [f"{words[i % 8]} {words[(i * 3) % 8]} {salt}#{i}" for i in range(n)]


# -- the server -----------------------------------------------------------------------------

_SERVE = (
    "import json, sys\n"
    "from rerank_async.server import ServerConfig, serve\n"
    "serve(ServerConfig(**json.loads(sys.argv[1])), port=int(sys.argv[2]), log_level='warning')\n"
)


@contextlib.contextmanager
def server(**config: Any) -> Iterator[str]:
    """The local server in its own process; yields its root URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.setdefault("latency_ms", LATENCY_MS)
    config.setdefault("seed", 7)
    command = [sys.executable, "-c", _SERVE, json.dumps(config), str(port)]
    if shutil.which("taskset") and CPUS > 1:
        command = ["taskset", "-c", str(CPUS - 1), *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def server_stats(root: str, *, reset: bool = False) -> dict[str, Any]:
    if reset:
        return httpx.post(f"{root}/stats/reset", timeout=10).json()  # type: ignore[no-any-return]
    return httpx.get(f"{root}/stats", timeout=10).json()  # type: ignore[no-any-return]


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    counts = stats["status_counts"]
    requests = stats["requests"]
    span = (stats["last_request_s"] or 0.0) - (stats["first_request_s"] or 0.0)
    return {
        "requests": requests,
        "ok": counts.get("200", 0),
        "429": counts.get("429", 0),
        "503": counts.get("503", 0),
        "share_429": counts.get("429", 0) / requests if requests else 0.0,
        "max_in_flight": stats["max_in_flight"],
        "request_rate": requests / span if span > 0 else 0.0,
        "ok_rate": counts.get("200", 0) / span if span > 0 else 0.0,
    }


# -- clients --------------------------------------------------------------------------------

Calls = list[tuple[str, list[str]]]


def lost(calls: Calls, scores: list[list[float] | None]) -> int:
    """Documents without their correct score."""
    missing = 0
    for (query, docs), got in zip(calls, scores, strict=True):
        if got is None:
            missing += len(docs)
            continue
        missing += sum(
            1 for d, s in zip(docs, got, strict=True) if abs(s - reference_score(query, d)) > 1e-9
        )
    return missing


async def run_client(
    root: str, calls: Calls, *, warm_up: Calls | None = None, **options: Any
) -> dict[str, Any]:
    """rerank_async on ``calls``: one ``score`` for one call, ``rerank_many`` for several.

    ``warm_up`` calls run on the same client before the clock starts: a long-lived
    client (a web app's, a bulk job's after its first requests) as opposed to a new one.
    """
    scores: list[list[float] | None] = [None] * len(calls)
    failures: dict[str, int] = {}
    seen: set[int] = set()
    duplicates = 0
    options.setdefault("batch_size", BATCH)
    limits: list[int] = []
    options = grouped(options)
    async with RerankClient(base_url=f"{root}/v1/inference", model=MODEL, **options) as client:
        for query, docs in warm_up or []:
            await client.score(query, docs)
        started = time.perf_counter()
        if len(calls) == 1:
            try:
                scores[0] = await client.score(*calls[0])
            except RerankError as error:
                failures[type(error).__name__] = 1
        else:
            items = [RerankRequest(q, d, id=i) for i, (q, d) in enumerate(calls)]
            async with client.rerank_many(items) as outcomes:
                async for outcome in outcomes:
                    index = int(outcome.id)
                    duplicates += index in seen
                    seen.add(index)
                    if outcome.result is not None:
                        scores[index] = outcome.result.scores
                    else:
                        name = type(outcome.error).__name__
                        failures[name] = failures.get(name, 0) + 1
        wall = time.perf_counter() - started
        limits.append(_limit(client))
    n_docs = sum(len(d) for _, d in calls)
    return {
        "wall_s": wall,
        "docs_per_s": n_docs / wall,
        "lost": lost(calls, scores),
        "failed_calls": failures,
        "duplicate_outcomes": duplicates,
        "final_limit": limits[-1],
    }


_LIMITS_FIELDS = ("adaptive_concurrency", "max_requests_per_minute", "max_tokens_per_minute")


def grouped(options: dict[str, Any]) -> dict[str, Any]:
    """The scenarios' flat options on the client's option objects (``Limits``, ``RetryPolicy``)."""
    options = dict(options)
    limits = {name: options.pop(name) for name in _LIMITS_FIELDS if name in options}
    if limits:
        options["limits"] = Limits(**limits)
    if "retry_budget_ratio" in options:
        options["retry"] = RetryPolicy(budget_ratio=options.pop("retry_budget_ratio"))
    return options


def _limit(client: RerankClient) -> int:
    return client.statistics().concurrency_limit


async def hand_written(root: str, calls: Calls, *, concurrency: int) -> dict[str, Any]:
    """A semaphore + aiohttp loop with 4 retries, backoff 0.1 s * 2**n (what a user would write)."""
    url = f"{root}/v1/inference/{MODEL}"
    semaphore = asyncio.Semaphore(concurrency)
    jobs = [(i, s, q, d[s : s + BATCH]) for i, (q, d) in enumerate(calls)
            for s in range(0, len(d), BATCH)]  # fmt: skip
    parts: dict[tuple[int, int], list[float]] = {}

    async def one(session: aiohttp.ClientSession, i: int, s: int, q: str, b: list[str]) -> None:
        for attempt in range(5):
            async with semaphore:
                try:
                    async with session.post(url, json={"query": q, "documents": b}) as response:
                        if response.status == 200:
                            parts[(i, s)] = (await response.json())["scores"]
                            return
                except aiohttp.ClientError:
                    pass
            await asyncio.sleep(0.1 * 2**attempt)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session, *job) for job in jobs))
        wall = time.perf_counter() - started
    scores: list[list[float] | None] = []
    for i, (_, d) in enumerate(calls):
        merged: list[float] = []
        for s in range(0, len(d), BATCH):
            if (i, s) not in parts:
                merged = []
                break
            merged.extend(parts[(i, s)])
        scores.append(merged or None)
    return {"wall_s": wall, "docs_per_s": sum(len(d) for _, d in calls) / wall,
            "lost": lost(calls, scores)}  # fmt: skip


async def measured(root: str, run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    server_stats(root, reset=True)
    result = await run()
    result["server"] = summary(server_stats(root))
    return result


# -- scenarios ------------------------------------------------------------------------------


async def capacity(repeats: int) -> dict[str, Any]:
    """A server that rejects above 8 in flight with a bare 429; max_concurrency=64, 10,000 docs."""
    calls = [("solar battery", documents(10_000))]
    ideal = 8 * BATCH / (LATENCY_MS / 1000)
    # "oracle": a fixed bound of exactly 8, what a client that knew the cap would do; on a
    # loaded machine it shows how much of the ideal the machine itself allows.
    variants = {"adaptive": (64, True), "fixed 64": (64, False), "oracle 8": (8, False)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    with server(max_in_flight=8) as root:
        for _ in range(repeats):
            for name, (bound, adaptive) in variants.items():
                runs[name].append(await measured(root, lambda b=bound, a=adaptive: run_client(
                    root, calls, max_concurrency=b, limits=Limits(adaptive_concurrency=a),
                retry=RetryPolicy(budget_ratio=0.2 if a else None))))  # fmt: skip
    return {"ideal_docs_per_s": ideal, "runs": runs,
            "share_of_ideal": {name: _median(r, "docs_per_s") / ideal for name, r in runs.items()},
            "adaptive_vs_oracle": _ratios(runs["adaptive"], runs["oracle 8"])}  # fmt: skip


async def rate_limit(repeats: int) -> dict[str, Any]:
    """20 requests/s without Retry-After: with max_requests_per_minute=1200, and adaptive only."""
    big = [("solar battery", documents(4_000))]  # 125 requests: about 6 s at 20/s
    bulk = [(f"query {q}", documents(160, salt=f"q{q}")) for q in range(40)]
    out: dict[str, Any] = {"with_rpm": [], "adaptive_only_bulk": [], "fixed_bulk": []}
    with server(rate_limit_rps=20.0) as root:
        for _ in range(repeats):
            out["with_rpm"].append(await measured(root, lambda: run_client(
                root, big, max_concurrency=32,
                limits=Limits(max_requests_per_minute=1200))))  # fmt: skip
            await asyncio.sleep(1.1)  # let the server's bucket refill between runs
            out["adaptive_only_bulk"].append(await measured(root, lambda: run_client(
                root, bulk, max_concurrency=32)))  # fmt: skip
            await asyncio.sleep(1.1)
            out["fixed_bulk"].append(await measured(root, lambda: run_client(
                root, bulk, max_concurrency=32, limits=Limits(adaptive_concurrency=False),
                retry=RetryPolicy(budget_ratio=None))))  # fmt: skip
            await asyncio.sleep(1.1)
    return out


async def rate_limit_retry_after(repeats: int) -> dict[str, Any]:
    """20 requests/s with Retry-After: the shared pause, adaptive only."""
    bulk = [(f"query {q}", documents(160, salt=f"q{q}")) for q in range(40)]
    out: dict[str, Any] = {"adaptive_bulk": []}
    with server(rate_limit_rps=20.0, rate_limit_retry_after=True) as root:
        for _ in range(repeats):
            out["adaptive_bulk"].append(await measured(root, lambda: run_client(
                root, bulk, max_concurrency=32)))  # fmt: skip
            await asyncio.sleep(1.1)
    return out


async def outage(repeats: int) -> dict[str, Any]:
    """A 5 s full outage in the middle of a bulk run of 300 requests of 100 documents."""
    bulk = [(f"query {q}", documents(100, salt=f"o{q}")) for q in range(300)]
    out: dict[str, Any] = {"default": [], "no budget, fixed": []}
    # 300 x 4 batches at 32 in flight and 50 ms: about 2 s of work; the outage starts at 1 s.
    with server(outage_start_s=1.0, outage_duration_s=5.0) as root:
        for _ in range(repeats):
            for name, options in (
                ("default", {}),
                (
                    "no budget, fixed",
                    {
                        "limits": Limits(adaptive_concurrency=False),
                        "retry": RetryPolicy(budget_ratio=None),
                    },
                ),
            ):
                result = await measured(root, lambda o=options: run_client(  # type: ignore[misc]
                    root, bulk, max_concurrency=32, **o))  # fmt: skip
                ok = result["server"]["ok"]
                # The budget: 20% of requests plus 2/s over the run plus its 20-retry reserve.
                result["retries_allowed"] = 0.2 * ok + 2.0 * result["wall_s"] + 20
                out[name].append(result)
    return out


async def random_faults(repeats: int) -> dict[str, Any]:
    """10% 503, 5% 429 with Retry-After: 1, capacity 8, C=8: against a hand-written loop."""
    workloads = {
        "1,000-document call": [("solar battery", documents(1_000))],
        "10,000-document call": [("solar battery", documents(10_000))],
        "200 x 100 bulk": [(f"query {q}", documents(100, salt=f"r{q}")) for q in range(200)],
    }
    out: dict[str, Any] = {}
    with server(capacity=8, error_503_rate=0.10, error_429_rate=0.05, retry_after_s=1.0) as root:
        for name, calls in workloads.items():
            ours: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            for _ in range(repeats):
                ours.append(await measured(root, lambda c=calls: run_client(  # type: ignore[misc]
                    root, c, max_concurrency=8)))  # fmt: skip
                theirs.append(await measured(root, lambda c=calls: hand_written(  # type: ignore[misc]
                    root, c, concurrency=8)))  # fmt: skip
            out[name] = {"rerank_async": ours, "hand_written": theirs,
                         "ratio": _ratios(ours, theirs)}  # fmt: skip
    return out


async def healthy(repeats: int) -> dict[str, Any]:
    """No limit: the default configuration against the fixed bound (adaptive off).

    The default configuration is DeepInfra's (64 documents per request, 32 in flight).
    Each workload runs on a new client and on a warm one: the adaptive limit starts at
    16 and doubles per round trip, so a new client's first burst wider than 16 waits one
    round trip more; a warm client has already grown to what it uses.
    """
    workloads: dict[str, tuple[Calls, dict[str, Any]]] = {
        "10,000-document call": ([("solar battery", documents(10_000))], {"batch_size": None}),
        "1,000-document call": ([("solar battery", documents(1_000))], {"batch_size": None}),
        "1,000-document call, B=32": ([("solar battery", documents(1_000))], {}),
        "200 x 100 bulk": (
            [(f"query {q}", documents(100, salt=f"h{q}")) for q in range(200)],
            {"batch_size": None},
        ),
    }
    # A warm client has answered one 1,000-document call first, with the workload's own
    # options (16 requests at the default 64 per request, 32 at B=32).
    warm = [("warm up", documents(1_000, salt="warm"))]
    out: dict[str, Any] = {}
    with server() as root:
        for name, (calls, options) in workloads.items():
            for client_age, warm_up in (("new client", None), ("warm client", warm)):
                default: list[dict[str, Any]] = []
                fixed: list[dict[str, Any]] = []
                for _ in range(repeats):
                    for runs, adaptive in ((default, True), (fixed, False)):
                        run = partial(run_client, root, calls, warm_up=warm_up,
                                      limits=Limits(adaptive_concurrency=adaptive),
                                      **options)  # fmt: skip
                        runs.append(await measured(root, run))
                out[f"{name}, {client_age}"] = {
                    "default": default, "fixed": fixed, "ratio": _ratios(default, fixed),
                }  # fmt: skip
    return out


async def web_tail(repeats: int) -> dict[str, Any]:
    """200 calls of 100 documents arriving at 20/s; 5% of requests 10x slower; call p50/p99."""
    variants: dict[str, dict[str, Any]] = {
        "default": {},
        "hedge_after=0.1": {"hedge_after": 0.1},
        'hedge_after="auto"': {"hedge_after": "auto"},
    }
    out: dict[str, Any] = {name: [] for name in variants}
    with server(tail_probability=0.05, tail_multiplier=10.0) as root:
        for _ in range(repeats):
            for name, options in variants.items():
                out[name].append(await measured(root, lambda o=options: _open_loop(root, o)))  # type: ignore[misc]
    return out


async def _open_loop(root: str, options: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    calls = [(f"web {q}", documents(100, salt=f"w{q}")) for q in range(200)]
    failures = 0
    options = grouped(options)
    async with RerankClient(base_url=f"{root}/v1/inference", model=MODEL, **options) as client:

        async def one(query: str, docs: list[str]) -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                await client.score(query, docs)
            except RerankError:
                failures += 1
                return
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for index, (query, docs) in enumerate(calls):
                delay = started + index / 20.0 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                group.create_task(one(query, docs))
        wall = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0

    return {"wall_s": wall, "docs_per_s": 200 * 100 / wall, "lost": 0, "failed_calls":
            {"RerankError": failures} if failures else {}, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "p99_over_p50": pct(0.99) / pct(0.5)}  # fmt: skip


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, Any]:
    """docs/s ratios of runs paired in order (interleaved), and their median."""
    pairs = [a["docs_per_s"] / b["docs_per_s"] for a, b in zip(ours, theirs, strict=True)]
    return {"each": pairs, "median": statistics.median(pairs)}


def markdown(report: dict[str, Any]) -> str:
    """The headline figures of a report, as the table docs/rate-limits.md shows."""
    lines = ["| scenario | client | docs/s | lost | failed calls | server: requests, 429, 503, "
             "max in flight, req/s |", "|---|---|---|---|---|---|"]  # fmt: skip

    def row(scenario: str, name: str, runs: list[dict[str, Any]]) -> None:
        run = sorted(runs, key=lambda r: r["docs_per_s"])[len(runs) // 2]  # the median run
        server_ = run["server"]
        failed = sum(run.get("failed_calls", {}).values())
        lines.append(
            f"| {scenario} | {name} | {run['docs_per_s']:,.0f} | {run['lost']:,} | {failed} | "
            f"{server_['requests']}, {server_['429']} ({server_['share_429']:.1%}), "
            f"{server_['503']}, {server_['max_in_flight']}, {server_['request_rate']:.1f} |"
        )

    for scenario, data in report.items():
        if not isinstance(data, dict):
            continue
        groups = data.get("runs", data)
        for name, runs in groups.items():
            if isinstance(runs, list) and runs and isinstance(runs[0], dict):
                row(scenario, name, runs)
            elif isinstance(runs, dict):
                for inner, inner_runs in runs.items():
                    if (
                        isinstance(inner_runs, list)
                        and inner_runs
                        and "docs_per_s" in inner_runs[0]
                    ):
                        row(f"{scenario}: {name}", inner, inner_runs)
    return "\n".join(lines) + "\n"


SCENARIOS: dict[str, Callable[[int], Awaitable[dict[str, Any]]]] = {
    "capacity": capacity,
    "rate_limit": rate_limit,
    "rate_limit_retry_after": rate_limit_retry_after,
    "outage": outage,
    "random_faults": random_faults,
    "healthy": healthy,
    "web_tail": web_tail,
}


async def main_async(names: list[str], repeats: int) -> dict[str, Any]:
    random.seed(7)
    report: dict[str, Any] = {"latency_ms": LATENCY_MS, "batch_size": BATCH, "repeats": repeats}
    for name in names:
        started = time.perf_counter()
        report[name] = await SCENARIOS[name](repeats)
        print(f"{name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "limits.json")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    report = asyncio.run(main_async(names, args.repeats))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    args.output.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
