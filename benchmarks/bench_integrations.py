"""Benchmark of the framework adapters and the sync client against ``RerankClient`` itself.

Run from the repository root (needs the dev extras)::

    .venv/bin/python benchmarks/bench_integrations.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/bench_integrations.py --quick    # fewer repeats, a smoke run

The local server (``rerank_async.server.running_server``) runs in its own process, pinned
to the last CPU when ``taskset`` exists, this process to the first: 50 ms per request,
capacity 8; every client sends batches of 32 with a concurrency of 8.

1. Adapters: each adapter's async path (LangChain ``acompress_documents``, LlamaIndex
   ``apostprocess_nodes``, Haystack ``run_async``) reranks 1,000 documents through a shared
   ``RerankClient``, against ``RerankClient.rerank`` on the same documents. Reported per
   adapter: HTTP requests (counted by the server) and the median wall time as a ratio of
   the direct call's; and how many jobs reached the loop's default executor (the
   frameworks' thread-pool fallback), which must be 0.
2. Sync client: a 10,000-document call on ``SyncRerankClient`` against the same call on
   ``RerankClient``, in documents/s; target >= 0.95x.

Arms are interleaved (the order rotates every round) and the median of the repeats is
kept, so drift on a shared machine hits every arm alike. Every adapter's ranking is
checked against the direct call's. Results go to ``benchmarks/results/integrations.json``
(``integrations-quick.json`` with ``--quick``); docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network from a benchmark

from haystack import Document as HaystackDocument
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rerank_async import RerankClient, SyncRerankClient
from rerank_async.integrations.haystack import RerankAsyncRanker
from rerank_async.integrations.langchain import RerankAsyncCompressor
from rerank_async.integrations.llama_index import RerankAsyncPostprocessor

RESULTS = Path(__file__).parent / "results"
LATENCY_MS = 50
CAPACITY = 8
BATCH_SIZE = 32
CONCURRENCY = 8
QUERY = "solar battery storage for the home grid"
CPUS = os.cpu_count() or 1
TASKSET = shutil.which("taskset") if CPUS >= 2 else None

_SERVER = """
import sys
from rerank_async.server import ServerConfig, running_server
config = ServerConfig(latency_ms={latency}, capacity={capacity}, seed=7)
with running_server(config) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
"""


def documents(n: int) -> list[str]:
    words = ["solar", "battery", "storage", "grid", "panel", "roof", "energy", "coffee",
             "marathon", "volcano", "city"]  # fmt: skip
    return [f"{words[i % 11]} {words[(i * 7) % 11]} {words[(i * 3) % 11]} #{i}" for i in range(n)]


@contextmanager
def server_process() -> Iterator[str]:
    """The local server in its own process; yields its base URL."""
    command = [sys.executable, "-c", _SERVER.format(latency=LATENCY_MS, capacity=CAPACITY)]
    if TASKSET:
        command = [TASKSET, "-c", str(CPUS - 1), *command]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=20)


def server_requests(base_url: str) -> int:
    root = base_url.rsplit("/v1/inference", 1)[0]
    return int(httpx.get(root + "/stats", timeout=10).json()["requests"])


def reset_server(base_url: str) -> None:
    root = base_url.rsplit("/v1/inference", 1)[0]
    httpx.post(root + "/stats/reset", timeout=10).raise_for_status()


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor, counting what the frameworks hand to it."""

    submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        CountingExecutor.submitted += 1
        return super().submit(fn, *args, **kwargs)


# -- 1. adapters ---------------------------------------------------------------------------------

Arm = Callable[[], Awaitable[list[int]]]


def adapter_arms(client: RerankClient, texts: list[str]) -> dict[str, Arm]:
    """Each arm reranks ``texts`` and returns the positions of its best 10, best first."""
    lc_docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(texts)]
    li_nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(texts)]
    hs_docs = [HaystackDocument(content=t, meta={"i": i}) for i, t in enumerate(texts)]
    compressor = RerankAsyncCompressor(client=client, top_n=10)
    postprocessor = RerankAsyncPostprocessor(client=client, top_n=10)
    ranker = RerankAsyncRanker(client=client, top_k=10)
    bundle = QueryBundle(QUERY)

    async def direct() -> list[int]:
        result = await client.rerank(QUERY, texts, top_k=10)
        return [r.index for r in result.results]

    async def langchain() -> list[int]:
        ranked = await compressor.acompress_documents(lc_docs, QUERY)
        return [d.metadata["i"] for d in ranked]

    async def llama_index() -> list[int]:
        ranked = await postprocessor.apostprocess_nodes(li_nodes, bundle)
        return [int(n.node.node_id) for n in ranked]

    async def haystack() -> list[int]:
        ranked = (await ranker.run_async(QUERY, hs_docs))["documents"]
        return [d.meta["i"] for d in ranked]

    return {
        "RerankClient.rerank": direct,
        "LangChain acompress_documents": langchain,
        "LlamaIndex apostprocess_nodes": llama_index,
        "Haystack run_async": haystack,
    }


async def bench_adapters(base_url: str, n: int, repeats: int) -> list[dict[str, Any]]:
    asyncio.get_running_loop().set_default_executor(CountingExecutor(max_workers=2))
    texts = documents(n)
    async with RerankClient(
        base_url=base_url, batch_size=BATCH_SIZE, max_concurrency=CONCURRENCY
    ) as client:
        arms = adapter_arms(client, texts)
        names = list(arms)
        expected = await arms["RerankClient.rerank"]()  # warm-up: connections open
        walls: dict[str, list[float]] = {name: [] for name in names}
        requests: dict[str, list[int]] = {name: [] for name in names}
        executor_jobs: dict[str, int] = dict.fromkeys(names, 0)
        for round_number in range(repeats):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                reset_server(base_url)
                before = CountingExecutor.submitted
                started = time.perf_counter()
                got = await arms[name]()
                walls[name].append(time.perf_counter() - started)
                executor_jobs[name] += CountingExecutor.submitted - before
                requests[name].append(server_requests(base_url))
                if got != expected:
                    raise AssertionError(f"{name} ranked differently: {got} != {expected}")
    direct_wall = statistics.median(walls["RerankClient.rerank"])
    return [
        {
            "arm": name,
            "documents": n,
            "http_requests": sorted(set(requests[name])),
            "median_wall_s": statistics.median(walls[name]),
            "wall_vs_direct": statistics.median(walls[name]) / direct_wall,
            "thread_pool_jobs": executor_jobs[name],
            "repeats": repeats,
        }
        for name in names
    ]


# -- 2. sync client ------------------------------------------------------------------------------


def bench_sync(base_url: str, n: int, repeats: int) -> dict[str, Any]:
    texts = documents(n)
    options: dict[str, Any] = {
        "base_url": base_url,
        "batch_size": BATCH_SIZE,
        "max_concurrency": CONCURRENCY,
    }
    walls: dict[str, list[float]] = {"async": [], "sync": []}
    with asyncio.Runner() as runner, SyncRerankClient(**options) as sync_client:
        async_client = RerankClient(**options)

        def run_async() -> list[float]:
            return runner.run(async_client.rerank(QUERY, texts)).scores

        def run_sync() -> list[float]:
            return sync_client.rerank(QUERY, texts).scores

        arms = {"async": run_async, "sync": run_sync}
        assert run_async() == run_sync()  # warm-up, and the same scores
        for round_number in range(repeats):
            order = ["async", "sync"] if round_number % 2 == 0 else ["sync", "async"]
            for name in order:
                started = time.perf_counter()
                arms[name]()
                walls[name].append(time.perf_counter() - started)
        runner.run(async_client.aclose())
    docs_per_s = {name: n / statistics.median(values) for name, values in walls.items()}
    return {
        "documents": n,
        "async_docs_per_s": docs_per_s["async"],
        "sync_docs_per_s": docs_per_s["sync"],
        "sync_vs_async": docs_per_s["sync"] / docs_per_s["async"],
        "ideal_docs_per_s": CAPACITY * BATCH_SIZE / (LATENCY_MS / 1000),
        "repeats": repeats,
        "walls_s": walls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    if TASKSET:
        os.sched_setaffinity(0, {0})
    with server_process() as base_url:
        adapters = asyncio.run(bench_adapters(base_url, 1_000, repeats))
        sync = bench_sync(base_url, 10_000, 3 if args.quick else 5)
    report = {
        "machine": {"python": platform.python_version(), "cpus": CPUS, "pinned": bool(TASKSET)},
        "server": {"latency_ms": LATENCY_MS, "capacity": CAPACITY},
        "client": {"batch_size": BATCH_SIZE, "max_concurrency": CONCURRENCY},
        "adapters": adapters,
        "sync_client": sync,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "integrations-quick.json" if args.quick else "integrations.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'arm':32} {'requests':>10} {'wall vs direct':>15} {'thread-pool jobs':>17}")
    for row in adapters:
        requests = ",".join(str(r) for r in row["http_requests"])
        print(
            f"{row['arm']:32} {requests:>10} {row['wall_vs_direct']:>14.3f}x "
            f"{row['thread_pool_jobs']:>17}"
        )
    print(
        f"10,000 documents: sync {sync['sync_docs_per_s']:,.0f} docs/s, async "
        f"{sync['async_docs_per_s']:,.0f} docs/s: {sync['sync_vs_async']:.3f}x "
        f"(ideal {sync['ideal_docs_per_s']:,.0f})"
    )


if __name__ == "__main__":
    main()
