"""``rerank-async bench``: a closed-loop grid sweep, or an open-loop run with ``--rate``.

The grid sweeps batch size x concurrency x candidates against one endpoint and
recommends settings. ``--rate`` hands over to ``_bench_open``: calls on a schedule,
endpoints side by side. Without ``--base-url`` or ``--target`` the local server is
started as a separate process, so the client's and the server's CPU do not share
one interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .._exceptions import RerankError
from .._models import RequestRecord
from .._options import Limits
from ._bench_args import BENCH_SERVER_DEFAULTS, GRID_DEFAULTS, add_bench_arguments
from ._bench_cells import CellResult, best_cell
from ._bench_payloads import Payload, load_payloads, synthetic_payloads
from ._bench_report import (
    Report,
    TableData,
    command_line,
    environment_tables,
    load_plotting,
    machine_info,
    rich_table,
    versions,
    write_report,
)
from ._bench_server import local_endpoint
from ._common import add_server_options, client_from_args
from ._demo import synthetic_corpus
from ._output import percentile, stdout_console

__all__ = ["CellResult", "best_cell", "register", "run_bench"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` command's flags and handler to its ``parser``."""
    parser.description = (
        "Benchmark reranker endpoints. Without --rate: a closed-loop grid of batch sizes, "
        "concurrency limits and candidate counts against one endpoint (the local server "
        "when no --base-url is given), and a recommendation. With --rate: open-loop load "
        "on a schedule, one or more --target endpoints side by side. See docs/benchmarks.md."
    )
    add_bench_arguments(parser)
    parser.set_defaults(handler=run_bench)
    try:
        add_server_options(parser, api_key_flag="--server-api-key")
    except ImportError:
        return  # without the server extra, the local server says what to install
    parser.set_defaults(**BENCH_SERVER_DEFAULTS)


def run_bench(args: argparse.Namespace) -> int:
    """Run the grid sweep or, with ``--rate``, the open loop; returns the exit code."""
    if args.rates is not None:
        from ._bench_open import run_open_loop

        return run_open_loop(args)
    if args.targets:
        raise ValueError("--target needs --rate: the grid sweep measures one --base-url")
    for name, default in GRID_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    console = Console(stderr=True)
    payloads = _grid_payloads(args)
    # A missing extra fails before the sweep; matplotlib is imported only when asked for.
    wants_plot = bool(args.plot or args.report)
    plotting = load_plotting(required=args.plot is not None) if wants_plot else None
    with contextlib.ExitStack() as stack:
        base_url = args.base_url or stack.enter_context(local_endpoint(args, console))
        cells = anyio.run(_sweep, args, base_url, payloads, console)
    table = _table(cells)
    stdout_console().print(rich_table(table))
    best = best_cell(cells, args.target_p99)
    if best is None:
        verdict = f"no cell had a call p99 within {args.target_p99} ms"
    else:
        within = f" within p99 {args.target_p99:g} ms" if args.target_p99 is not None else ""
        verdict = (
            f"best{within}: batch_size={best.batch_size} concurrency={best.concurrency} "
            f"({best.documents_per_s:,.0f} documents/s, call p99 {best.call_ms['p99']:.0f} ms)"
        )
    print(verdict)
    if args.json_path:
        report = {
            "machine": machine_info() | {"python": versions()["python"]},
            "settings": _settings(args),
            "cells": [c.as_json() for c in cells],
        }
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    png = plotting.grid(cells) if plotting is not None else None
    if args.plot and png is not None:
        with open(args.plot, "wb") as handle:
            handle.write(png)
    if args.report:
        report_file = Report("rerank-async bench: grid sweep", command_line(args))
        report_file.environment = environment_tables(_settings(args))
        report_file.tables.append(table)
        report_file.notes.append(verdict)
        if png is not None:
            report_file.images.append(("Call latency and throughput", png))
        else:
            report_file.notes.append("plots left out: pip install 'rerank-async[plot]'")
        write_report(args.report, report_file)
    return 0 if best is not None else 1


def _grid_payloads(args: argparse.Namespace) -> dict[int, Payload]:
    """Each cell's one call, by candidate count; read before any request."""
    if args.documents_path:
        first = load_payloads(args.documents_path, max(args.candidates))[0]
        return {n: Payload(first.query, first.documents[:n]) for n in args.candidates}
    if args.doc_tokens is not None:
        return {n: synthetic_payloads(n, args.doc_tokens)[0] for n in args.candidates}
    return {n: Payload(*synthetic_corpus(n, 1, seed=11)[0]) for n in args.candidates}


async def _sweep(
    args: argparse.Namespace, base_url: str, payloads: dict[int, Payload], console: Console
) -> list[CellResult]:
    grid = [
        (batch_size, concurrency, candidates)
        for candidates in args.candidates
        for batch_size in args.batch_size
        for concurrency in args.concurrency
    ]
    cells: list[CellResult] = []
    columns = (BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(
        TextColumn("[bold]bench"), *columns, TimeElapsedColumn(),
        console=console, disable=not console.is_terminal,
    ) as progress:  # fmt: skip
        task = progress.add_task("", total=len(grid))
        for batch_size, concurrency, candidates in grid:
            progress.update(task, description=f"B={batch_size} C={concurrency} N={candidates}")
            cells.append(
                await _run_cell(args, base_url, batch_size, concurrency, payloads[candidates])
            )
            progress.advance(task)
    return cells


async def _run_cell(
    args: argparse.Namespace, base_url: str, batch_size: int, concurrency: int, payload: Payload
) -> CellResult:
    records: list[RequestRecord] = []
    query, documents = payload.query, payload.documents
    cell = CellResult(batch_size=batch_size, concurrency=concurrency, candidates=len(documents))
    call_latencies: list[float] = []
    async with client_from_args(
        args,
        base_url=base_url,
        batch_size=batch_size,
        max_concurrency=concurrency,
        limits=Limits(min_batch_size=min(8, batch_size)),
    ) as client:
        client.on_request = records.append
        for _ in range(args.warmup):
            with contextlib.suppress(RerankError):
                await client.score(query, documents)
        records.clear()
        deadline = time.perf_counter() + args.duration if args.duration else None
        remaining = args.requests

        async def caller() -> None:
            nonlocal remaining
            while (deadline is None and remaining > 0) or (
                deadline is not None and time.perf_counter() < deadline
            ):
                remaining -= 1
                started = time.perf_counter()
                try:
                    result = await client.rerank(query, documents)
                except RerankError:
                    cell.failed_calls += 1
                    continue
                call_latencies.append((time.perf_counter() - started) * 1000.0)
                cell.documents += len(documents)
                cell.retries += result.usage.retries

        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for _ in range(max(1, args.parallel_calls)):
                group.start_soon(caller)
        cell.wall_s = time.perf_counter() - started
        cell.concurrency_limit = client.statistics().concurrency_limit
    cell.calls = len(call_latencies) + cell.failed_calls
    cell.http_requests = len(records)
    cell.call_ms = _percentiles(call_latencies)
    cell.request_ms = _percentiles([r.elapsed_s * 1000.0 for r in records])
    runtimes = [r.server_runtime_ms for r in records if r.server_runtime_ms is not None]
    cell.server_runtime_ms_p50 = percentile(runtimes, 0.5) if runtimes else None
    return cell


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {
        name: percentile(values, q)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
    }


def _table(cells: Sequence[CellResult]) -> TableData:
    headers = ["B", "C", "limit", "N", "calls", "call p50", "p90", "p99", "max", "req p50",
               "req p99", "docs/s", "req/s", "retries", "errors", "server p50"]  # fmt: skip
    rows = []
    for c in cells:
        server = f"{c.server_runtime_ms_p50:.0f}" if c.server_runtime_ms_p50 is not None else "-"
        limit = str(c.concurrency_limit) if c.concurrency_limit is not None else "-"
        rows.append([
            str(c.batch_size), str(c.concurrency), limit, str(c.candidates), str(c.calls),
            *(f"{c.call_ms[k]:.0f}" for k in ("p50", "p90", "p99", "max")),
            f"{c.request_ms['p50']:.1f}", f"{c.request_ms['p99']:.1f}",
            f"{c.documents_per_s:,.0f}", f"{c.requests_per_s:,.0f}",
            str(c.retries), str(c.failed_calls), server,
        ])  # fmt: skip
    return TableData("rerank-async bench", headers, rows, frozenset(range(len(headers))))


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("engine", "requests", "duration", "warmup", "parallel_calls", "max_retries", "base_url")
    settings = {key: getattr(args, key) for key in keys}
    settings["documents"] = args.documents_path
    settings["doc_tokens"] = args.doc_tokens.text if args.doc_tokens is not None else None
    settings["server"] = {
        k[len("server_") :]: v
        for k, v in vars(args).items()
        if k.startswith("server_") and k != "server_api_key"  # never a secret in a report
    }
    return settings
