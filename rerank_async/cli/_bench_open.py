"""``rerank-async bench --rate``: open-loop load on one or more endpoints, side by side.

For each offered rate, every target receives the same schedule of calls in one run
(``_bench_schedule``), then one table shows them all: achieved rate, calls, errors,
p50/p90/p99/p99.9/max from each call's scheduled start, and what a call carried.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import anyio
from rich.console import Console

from .._client import RerankClient
from .._exceptions import RerankError
from ..providers import resolve_provider
from ._bench_args import OPEN_LOOP_CANDIDATES, OPEN_LOOP_DURATION_S
from ._bench_cells import OpenLoopCell, highest_sustained_rates
from ._bench_payloads import Payload, load_payloads, payload_sizes, synthetic_payloads
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
from ._bench_schedule import TargetRun, arrival_offsets, run_schedule
from ._bench_server import local_endpoint
from ._bench_targets import Target, target_namespace
from ._common import client_from_args, one_line
from ._output import stdout_console

__all__ = ["run_open_loop"]


def run_open_loop(args: argparse.Namespace) -> int:
    """Run every rate against every target; print, and write what was asked; the exit code."""
    batch_size, concurrency, candidates = (
        _one_value(args, flag) for flag in ("batch_size", "concurrency", "candidates")
    )
    duration: float = args.duration if args.duration is not None else OPEN_LOOP_DURATION_S
    if duration <= 0:
        raise ValueError(f"--duration must be > 0 seconds, got {duration:g}")
    if args.documents_path:
        payloads = load_payloads(args.documents_path, candidates)  # None: as in the file
    else:
        candidates = candidates if candidates is not None else OPEN_LOOP_CANDIDATES
        payloads = synthetic_payloads(candidates, args.doc_tokens)
    # A missing extra fails before the run; matplotlib is imported only when asked for.
    wants_plot = bool(args.plot or args.report)
    plotting = load_plotting(required=args.plot is not None) if wants_plot else None
    console = Console(stderr=True)
    with contextlib.ExitStack() as stack:
        targets = list(args.targets or [])
        if not targets:
            base_url = args.base_url or stack.enter_context(local_endpoint(args, console))
            name = "local" if not args.base_url else args.provider
            targets = [Target(name, args.provider, args.model, base_url)]
        # Every client is built, its key and options checked, before any request is sent.
        clients = [
            client_from_args(target_namespace(args, t, batch_size=batch_size,
                                              concurrency=concurrency))
            for t in targets
        ]  # fmt: skip
        cells = anyio.run(_run, args, targets, clients, payloads, duration, console)
    table = open_loop_table(cells)
    out = stdout_console()
    out.print(rich_table(table))
    notes = _notes(cells, args.target_p99)
    for note in notes:
        out.print(note, soft_wrap=True, highlight=False)
    best = highest_sustained_rates(cells, args.target_p99) if args.target_p99 else None
    settings = _settings(args, cells, duration, candidates)
    if args.json_path:
        document = {
            "mode": "open-loop",
            "command": command_line(args),
            "versions": versions(),
            "machine": machine_info(),
            "settings": settings,
            "cells": [cell.as_json() for cell in cells],
            "target_p99_ms": args.target_p99,
            "highest_rate_within_target_p99": best,
        }
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
    png = plotting.open_loop(cells, args.target_p99) if plotting is not None else None
    if args.plot and png is not None:
        with open(args.plot, "wb") as handle:
            handle.write(png)
    if args.report:
        write_report(args.report, _report(args, settings, table, notes, png))
    all_failed = any(cell.sent and not cell.latencies_ms for cell in cells)
    missed = best is not None and None in best.values()
    return 1 if all_failed or missed else 0


def _report(
    args: argparse.Namespace,
    settings: dict[str, Any],
    table: TableData,
    notes: list[str],
    png: bytes | None,
) -> Report:
    report = Report("rerank-async bench: open loop", command_line(args))
    shown = {key: value for key, value in settings.items() if key != "targets"}
    targets = TableData(
        "Targets",
        ["name", "provider", "model", "base URL"],
        [list(target.values()) for target in settings["targets"]],
    )
    report.environment = [*environment_tables(shown), targets]
    report.tables.append(table)
    report.notes += notes
    if png is not None:
        report.images.append(("Latency CDF per target; p99 against offered rate", png))
    else:
        report.notes.append("plots left out: pip install 'rerank-async[plot]'")
    return report


def _one_value(args: argparse.Namespace, name: str) -> int | None:
    values: list[int] | None = getattr(args, name)
    if values is None:
        return None
    if len(values) != 1:
        flag = "--" + name.replace("_", "-")
        raise ValueError(f"{flag} takes one value with --rate (the rates are the sweep)")
    return values[0]


async def _run(
    args: argparse.Namespace,
    targets: Sequence[Target],
    clients: Sequence[RerankClient],
    payloads: Sequence[Payload],
    duration: float,
    console: Console,
) -> list[OpenLoopCell]:
    cells: list[OpenLoopCell] = []
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        for target, client in zip(targets, clients, strict=True):
            await _warm_up(client, target, payloads[0], args.warmup, console)
        for index, rate in enumerate(args.rates):
            console.print(
                f"open loop: {rate:g} calls/s, {args.arrivals}, {duration:g} s, "
                f"{len(targets)} target(s) interleaved"
            )
            offsets = arrival_offsets(rate, duration, args.arrivals, seed=args.arrival_seed + index)
            runs = [
                TargetRun(client, _new_cell(args, target, client, rate, duration, payloads))
                for target, client in zip(targets, clients, strict=True)
            ]
            await run_schedule(runs, offsets, payloads)
            cells += [run.cell for run in runs]
    return cells


async def _warm_up(
    client: RerankClient, target: Target, payload: Payload, calls: int, console: Console
) -> None:
    """Untimed calls that open connections; a failure is shown, the run goes on."""
    for _ in range(calls):
        try:
            await client.score(payload.query, payload.documents)
        except RerankError as error:
            console.print(f"warm-up call to {target.name} failed: {one_line(error)}")
            return


def _new_cell(
    args: argparse.Namespace,
    target: Target,
    client: RerankClient,
    rate: float,
    duration: float,
    payloads: Sequence[Payload],
) -> OpenLoopCell:
    options = client.options
    sizes = payload_sizes(payloads, resolve_provider(target.provider), options.model,
                          options.batch_size)  # fmt: skip
    return OpenLoopCell(
        target=target.name,
        rate=rate,
        arrivals=args.arrivals,
        duration_s=duration,
        provider=target.provider,
        model=options.model,
        base_url=options.base_url,
        bytes_per_call=sizes.bytes_per_call,
        tokens_per_call=sizes.tokens_per_call,
        documents_per_call=sizes.documents_per_call,
    )


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def open_loop_table(cells: Sequence[OpenLoopCell]) -> TableData:
    """One row per (target, rate): the figures the JSON cells hold."""
    headers = ["target", "rate/s", "achieved/s", "calls", "errors", "p50 ms", "p90",
               "p99", "p99.9", "max", "docs/call", "KB/call", "tokens/call"]  # fmt: skip
    rows = []
    for cell in cells:
        summary = cell.summary()
        rows.append([
            cell.target, f"{cell.rate:g}", f"{cell.achieved_rate:.2f}", str(cell.sent),
            str(cell.errors),
            *(_ms(summary[key]) for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")),
            f"{cell.documents_per_call or 0:,.0f}", f"{(cell.bytes_per_call or 0) / 1024:,.1f}",
            f"{cell.tokens_per_call or 0:,.0f}",
        ])  # fmt: skip
    title = "rerank-async bench: open loop (latency from each call's scheduled start)"
    return TableData(title, headers, rows, frozenset(range(1, len(headers))))


def _notes(cells: Sequence[OpenLoopCell], target_p99: float | None) -> list[str]:
    notes = []
    for cell in cells:
        where = f"{cell.target} @ {cell.rate:g}/s"
        if cell.errors_by_type:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(cell.errors_by_type.items()))
            notes.append(f"errors: {where}: {kinds}")
        notes += [f"warning: {where}: {warning}" for warning in cell.warnings()]
    if target_p99 is not None:
        for name, rate in highest_sustained_rates(cells, target_p99).items():
            if rate is None:
                notes.append(f"{name}: no rate had p99 within {target_p99:g} ms")
            else:
                notes.append(f"{name}: highest rate with p99 within {target_p99:g} ms: {rate:g}/s")
    return notes


def _settings(
    args: argparse.Namespace,
    cells: Sequence[OpenLoopCell],
    duration: float,
    candidates: int | None,
) -> dict[str, Any]:
    targets = {cell.target: cell for cell in cells}
    settings: dict[str, Any] = {
        "rates": args.rates,
        "arrivals": args.arrivals,
        "duration_s": duration,
        "arrival_seed": args.arrival_seed,
        "candidates": candidates,
        "documents": args.documents_path,
        "doc_tokens": args.doc_tokens.text if args.doc_tokens is not None else None,
        "warmup": args.warmup,
        "engine": args.engine,
        "max_retries": args.max_retries,
        "timeout_s": args.timeout,
        "targets": [
            {"name": c.target, "provider": c.provider, "model": c.model, "base_url": c.base_url}
            for c in targets.values()
        ],
    }
    if not args.targets and not args.base_url:  # the local server's knobs shaped the answers
        settings["server"] = {
            k.removeprefix("server_"): v
            for k, v in vars(args).items()
            if k.startswith("server_") and k != "server_api_key"  # never a secret in a report
        }
    return settings
