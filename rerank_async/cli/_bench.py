"""``rerank-async bench``: sweep batch size x concurrency x candidates against an endpoint.

Without ``--base-url`` it starts the local server as a separate process, so the
client's and the server's CPU do not share one interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import Any, Final

import anyio
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._exceptions import RerankError
from .._models import RequestRecord
from .._options import Limits
from ._bench_args import BENCH_SERVER_DEFAULTS, add_bench_arguments
from ._bench_cells import CellResult, best_cell
from ._common import MissingExtraError, add_server_options, client_from_args, server_config_from
from ._demo import synthetic_corpus
from ._output import percentile, stdout_console

__all__ = ["CellResult", "best_cell", "register", "run_bench"]

_SERVER_START_TIMEOUT_S: Final = 15.0


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` command's flags and handler to its ``parser``."""
    parser.description = (
        "Benchmark a reranker endpoint (the local server when no --base-url is "
        "given) over a grid of batch sizes, concurrency limits and candidate counts. "
        "See docs/benchmarks.md."
    )
    add_bench_arguments(parser)
    parser.set_defaults(handler=run_bench)
    try:
        add_server_options(parser, api_key_flag="--server-api-key")
    except ImportError:
        return  # without the server extra, the local server says what to install
    parser.set_defaults(**BENCH_SERVER_DEFAULTS)


def run_bench(args: argparse.Namespace) -> int:
    """Run the sweep, print the table and the recommendation; returns the exit code."""
    console = Console(stderr=True)
    plot = _load_plotter() if args.plot else None  # a missing extra fails before the sweep
    with _endpoint(args, console) as base_url:
        cells = anyio.run(_sweep, args, base_url, console)
    stdout_console().print(_table(cells))
    best = best_cell(cells, args.target_p99)
    if best is None:
        print(f"no cell had a call p99 within {args.target_p99} ms")
    else:
        within = f" within p99 {args.target_p99:g} ms" if args.target_p99 is not None else ""
        print(
            f"best{within}: batch_size={best.batch_size} concurrency={best.concurrency} "
            f"({best.documents_per_s:,.0f} documents/s, call p99 {best.call_ms['p99']:.0f} ms)"
        )
    if args.json_path:
        report = {
            "machine": _machine(),
            "settings": _settings(args),
            "cells": [c.as_json() for c in cells],
        }
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    if plot is not None:
        plot(cells, args.plot)
    return 0 if best is not None else 1


async def _sweep(args: argparse.Namespace, base_url: str, console: Console) -> list[CellResult]:
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
            cells.append(await _run_cell(args, base_url, batch_size, concurrency, candidates))
            progress.advance(task)
    return cells


async def _run_cell(
    args: argparse.Namespace, base_url: str, batch_size: int, concurrency: int, candidates: int
) -> CellResult:
    records: list[RequestRecord] = []
    [(query, documents)] = synthetic_corpus(candidates, 1, seed=11)
    cell = CellResult(batch_size=batch_size, concurrency=concurrency, candidates=candidates)
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


def _table(cells: Sequence[CellResult]) -> Table:
    table = Table(title="rerank-async bench", title_justify="left")
    for name in ("B", "C", "limit", "N", "calls", "call p50", "p90", "p99", "max", "req p50",
                 "req p99", "docs/s", "req/s", "retries", "errors", "server p50"):  # fmt: skip
        table.add_column(name, justify="right")
    for c in cells:
        server = f"{c.server_runtime_ms_p50:.0f}" if c.server_runtime_ms_p50 is not None else "-"
        limit = str(c.concurrency_limit) if c.concurrency_limit is not None else "-"
        table.add_row(
            str(c.batch_size), str(c.concurrency), limit, str(c.candidates), str(c.calls),
            *(f"{c.call_ms[k]:.0f}" for k in ("p50", "p90", "p99", "max")),
            f"{c.request_ms['p50']:.1f}", f"{c.request_ms['p99']:.1f}",
            f"{c.documents_per_s:,.0f}", f"{c.requests_per_s:,.0f}",
            str(c.retries), str(c.failed_calls), server,
        )  # fmt: skip
    return table


def _load_plotter() -> Callable[[Sequence[CellResult], str], None]:
    try:
        from ._plot import plot_cells
    except ImportError as error:
        raise MissingExtraError(
            f"--plot needs matplotlib: pip install 'rerank-async[plot]' ({error})"
        ) from error
    return plot_cells


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("engine", "requests", "duration", "warmup", "parallel_calls", "max_retries", "base_url")
    settings = {key: getattr(args, key) for key in keys}
    settings["server"] = {
        k[len("server_") :]: v for k, v in vars(args).items() if k.startswith("server_")
    }
    return settings


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace, console: Console) -> Iterator[str]:
    if args.base_url:
        yield args.base_url
        return
    config = server_config_from(args)  # the server extra, only for the local server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "rerank_async.cli", "serve", "--port", str(port)]
    for config_field in fields(config):
        value = getattr(config, config_field.name)
        if value == config_field.default or config_field.name in ("known_models", "api_key"):
            continue
        command += [f"--{config_field.name.replace('_', '-')}", str(value)]
    console.print(f"local server: {' '.join(command[3:])}")
    # Our own interpreter and module with flags built from ServerConfig: no untrusted input.
    process = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, process)
        yield f"{url}/v1/inference"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OSError(f"the local server exited with status {process.returncode} at start-up")
        try:
            httpx.get(f"{url}/healthz", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise OSError(f"the local server did not start within {_SERVER_START_TIMEOUT_S:g} s")
