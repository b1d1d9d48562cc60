"""``rerank-async demo``: the seed example, then thousands of synthetic documents, with timing.

Without ``--base-url`` it starts the embedded local server in-process, so the
demo runs offline on a fresh machine.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._client import RerankClient
from .._models import RerankResult
from ._common import (
    add_client_options,
    add_server_options,
    add_verbose_option,
    client_from_args,
    server_config_from,
)
from ._output import percentile, ranked_table, stdout_console, summary_table

__all__ = ["SEED_DOCUMENTS", "SEED_QUERY", "register", "run_demo", "synthetic_corpus"]

# The local server's behaviour in the demo unless flags say otherwise: a small
# GPU-like worker pool with a per-document cost, so batching shows its effect.
DEMO_SERVER_DEFAULTS: Final = {
    "server_latency_ms": 15.0,
    "server_per_doc_latency_ms": 0.1,
    "server_jitter_ms": 3.0,
    "server_capacity": 16,
}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` command's flags and handler to its ``parser``."""
    parser.add_argument("--documents", type=int, default=5000, help="synthetic documents in all")
    parser.add_argument(
        "--queries", type=int, default=20, help="concurrent queries they are split over"
    )
    add_client_options(parser, base_url_help="endpoint root (default: the embedded local server)")
    add_verbose_option(parser)
    parser.set_defaults(handler=run_demo)
    try:
        add_server_options(parser, api_key_flag="--server-api-key")
    except ImportError:
        return  # without the server extra, the demo says what to install when run
    parser.set_defaults(**DEMO_SERVER_DEFAULTS)


# Fetches the local server's counters; None for a remote endpoint.
_Stats = Callable[[], Mapping[str, Any] | None]

SEED_QUERY: Final = "What is the capital of France?"
SEED_DOCUMENTS: Final = (
    "Berlin is the capital of Germany.",
    "Paris is the capital and most populous city of France.",
    "The Eiffel Tower was completed in 1889.",
    "France is a country in Western Europe.",
    "Madrid is the capital of Spain.",
)


_TOPICS: Final = {
    "solar power storage": ["solar", "panel", "battery", "storage", "grid", "energy"],
    "coffee brewing methods": ["coffee", "brew", "espresso", "grind", "filter", "roast"],
    "marathon training plans": ["marathon", "training", "running", "pace", "mileage", "recovery"],
    "python async programming": ["python", "async", "await", "event", "loop", "coroutine"],
    "volcano eruption warning signs": ["volcano", "eruption", "magma", "seismic", "ash", "lava"],
}
_FILLER: Final = [
    "the",
    "a",
    "report",
    "notes",
    "about",
    "recent",
    "study",
    "shows",
    "how",
    "people",
    "often",
    "use",
    "simple",
    "methods",
    "for",
    "daily",
    "life",
]


def synthetic_corpus(n_documents: int, n_queries: int, seed: int) -> list[tuple[str, list[str]]]:
    """``n_queries`` (query, documents) pairs sharing ``n_documents``, deterministic per seed."""
    rng = random.Random(seed)
    topics = list(_TOPICS)
    calls: list[tuple[str, list[str]]] = []
    per_query, extra = divmod(n_documents, max(n_queries, 1))
    for q in range(n_queries):
        topic = topics[q % len(topics)]
        documents = []
        for _ in range(per_query + (1 if q < extra else 0)):
            source = topic if rng.random() < 0.2 else rng.choice(topics)
            words = rng.sample(_TOPICS[source], 3) + rng.sample(_FILLER, 6)
            rng.shuffle(words)
            documents.append(" ".join(words).capitalize() + ".")
        calls.append((f"tips on {topic}", documents))
    return calls


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo and print its tables; returns the exit code."""
    console = stdout_console()
    with _endpoint(args, console) as (base_url, stats):
        client = client_from_args(args, base_url=base_url)
        report = anyio.run(_demo, client, args, console)
        server_stats = stats()
    rows = [
        ("documents", f"{report.documents:,}"),
        ("queries (concurrent calls)", f"{report.calls}"),
        ("wall time", f"{report.wall_s:.2f} s"),
        ("throughput", f"{report.documents / report.wall_s:,.0f} documents/s"),
        ("HTTP requests", f"{report.requests:,} ({report.retries} retries)"),
        ("call latency p50 / p90 / p99 / max",
         " / ".join(f"{percentile(report.latencies_ms, p):.0f}" for p in (0.5, 0.9, 0.99, 1.0))
         + " ms"),
        ("batch size / concurrency",
         f"{report.batch_size} / {report.max_concurrency}"),
    ]  # fmt: skip
    if server_stats is not None:
        rows.append(("server: max requests in flight", str(server_stats["max_in_flight"])))
    console.print(summary_table(rows, title="Summary"))
    return 0


@dataclass
class _Report:
    documents: int = 0
    calls: int = 0
    batch_size: int = 0
    max_concurrency: int = 0
    requests: int = 0
    retries: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


async def _demo(client: RerankClient, args: argparse.Namespace, console: Console) -> _Report:
    report = _Report(
        batch_size=client.options.batch_size, max_concurrency=client.options.max_concurrency
    )
    async with client:
        seed = await client.rerank(SEED_QUERY, list(SEED_DOCUMENTS))
        console.print(
            ranked_table(seed, title=f"Seed example: {SEED_QUERY!r}", width=console.width)
        )

        corpus_seed = args.server_seed if getattr(args, "server_seed", None) is not None else 7
        corpus = synthetic_corpus(args.documents, args.queries, corpus_seed)
        results: dict[int, RerankResult] = {}
        progress = Progress(
            TextColumn("[bold]reranking"), BarColumn(), MofNCompleteColumn(),
            TextColumn("documents"), TimeElapsedColumn(), console=console,
        )  # fmt: skip
        with progress:
            task = progress.add_task("rerank", total=sum(len(d) for _, d in corpus))

            async def one(index: int, query: str, documents: list[str]) -> None:
                started = time.perf_counter()
                result = await client.rerank(query, documents, top_k=3)
                report.latencies_ms.append((time.perf_counter() - started) * 1000.0)
                report.requests += result.usage.requests
                report.retries += result.usage.retries
                results[index] = result
                progress.advance(task, len(documents))

            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for index, (query, documents) in enumerate(corpus):
                    group.start_soon(one, index, query, documents)
            report.wall_s = time.perf_counter() - started
        report.documents = sum(len(d) for _, d in corpus)
        report.calls = len(corpus)
        if corpus:
            console.print(
                ranked_table(results[0], title=f"Top 3 for {corpus[0][0]!r}", width=console.width)
            )
    return report


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace, console: Console) -> Iterator[tuple[str | None, _Stats]]:
    if args.base_url:
        yield args.base_url, lambda: None
        return
    config = server_config_from(args)  # the server extra, only for the local server
    from ..server import running_server

    with running_server(config) as server:
        console.print(
            f"Local reranker server on {server.url} (latency {config.latency_ms} ms "
            f"+ {config.per_doc_latency_ms} ms/doc, capacity {config.capacity})"
        )
        yield server.base_url, server.stats
