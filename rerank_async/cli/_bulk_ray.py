"""``rerank-async bulk IN -o OUT --ray``: the bulk job on Ray Data, Parquet or JSONL to Parquet.

The input has the bulk fields (``id``, ``query``, ``documents``, optional ``top_k``); the
output is a Parquet dataset directory with ``id``, ``fingerprint`` (of what the row's
scores answer, as in every bulk output), ``scores`` (input order), ``error`` and
``error_type``. Ray re-executes the tasks of a lost worker or node within the run; across
runs there is no resume, so the output must not exist yet (``--overwrite`` replaces a
Parquet dataset there, and nothing else). See ``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data
from rich.console import Console
from rich.text import Text

from .._checks import InvalidRecordError, record_documents, record_query
from .._client import RerankClient
from .._options import RetryPolicy
from ..providers import resolve_provider
from ..ray import rerank_dataset
from ._bulk_files import (
    PARQUET_SUFFIXES,
    clear_parquet_directory,
    clutter_problem,
    dataset_clutter,
    special_file_problem,
)
from ._bulk_records import fingerprint
from ._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, client_arguments
from ._output import stderr_console, summary_table

__all__ = ["run_bulk_ray"]

_OUTPUT_COLUMNS = ["id", "fingerprint", "scores", "error", "error_type"]


def run_bulk_ray(args: argparse.Namespace) -> int:
    """Run ``rerank-async bulk --ray``; returns the exit code."""
    console = stderr_console()
    problem = _usage_problem(args)
    if problem is not None:
        console.print(Text(f"rerank-async bulk: error: {problem}"), soft_wrap=True)
        return EXIT_USAGE

    client_options = client_arguments(args)
    client_options["retry"] = RetryPolicy(initial_delay=args.retry_initial_delay)
    # Concurrency is a total, divided across the actors below.
    client_options.pop("max_concurrency", None)
    # The flag's default is "the provider decides": its total, divided across the actors.
    total_concurrency = (
        args.concurrency
        if args.concurrency is not None
        else resolve_provider(args.provider).default_max_concurrency
    )
    # Built on the driver only to read the resolved model (it opens no connection), and
    # before --overwrite deletes anything, so that a bad option leaves the output alone.
    resolved = RerankClient(**client_options)
    if args.overwrite:
        _clear(args.output, console)
    started_here = not ray.is_initialized()
    if started_here:
        # A cluster at $RAY_ADDRESS when set (ray.init reads it), else a local one.
        ray.init(include_dashboard=False, log_to_driver=args.verbose > 0)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = console.is_terminal and not args.quiet
        started = time.perf_counter()
        dataset = _read(args.input)
        _check_columns(dataset, args.input)
        dataset = dataset.map_batches(
            _add_fingerprints,
            fn_kwargs={"provider": resolved.provider.name, "model": resolved.model},
            batch_format="pyarrow",
        )
        scored = rerank_dataset(
            dataset,
            max_concurrency=total_concurrency,
            actors=args.actors,
            client_options=client_options,
            num_cpus=args.actor_cpus,
        )
        scored.select_columns(_OUTPUT_COLUMNS).write_parquet(args.output)
        wall = time.perf_counter() - started
    finally:
        if started_here:
            ray.shutdown()
    figures = _figures(args.output, wall)
    if not args.quiet:
        console.print(summary_table(_rows(figures), title="Summary"))
    if args.json_summary:
        with open(args.json_summary, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
            handle.write("\n")
    failed: int = figures["requests_failed"]
    if failed:
        console.print(Text(f"rerank-async: {failed:,} error rows in {args.output}"), soft_wrap=True)
        return EXIT_FAILURE
    return EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.input == "-":
        return "--ray reads a file or directory, not stdin"
    if args.retry_failed:
        return "--retry-failed does not apply with --ray (no resume across runs)"
    if args.strict_resume:
        return "--strict-resume does not apply with --ray (no resume across runs)"
    if args.cache is not None:
        return "--cache does not apply with --ray (actors on other machines share no file)"
    special = special_file_problem(args.output)
    if special is not None:
        return special
    if args.actors < 1:
        return f"--actors must be >= 1, got {args.actors}"
    if args.actor_cpus <= 0:
        return f"--actor-cpus must be > 0, got {args.actor_cpus}"
    if args.concurrency is not None and args.concurrency < args.actors:
        return (
            f"--concurrency {args.concurrency} cannot be divided across {args.actors} actors; "
            f"use at most {args.concurrency} actors"
        )
    output = args.output
    if not os.path.exists(output) or (os.path.isdir(output) and not os.listdir(output)):
        return None
    if not args.overwrite:
        return (
            f"{output} exists; --ray writes a new Parquet directory and does not resume: "
            "name another output, or pass --overwrite to replace it"
        )
    clutter = dataset_clutter(output) if os.path.isdir(output) else []
    return clutter_problem(output, clutter) if clutter else None


def _clear(output: str, console: Console) -> None:
    # --overwrite, after usage_problem checked that only a file or a dataset is there.
    if os.path.isdir(output):
        if os.listdir(output):
            clear_parquet_directory(output)
            console.print(Text(f"rerank-async: {output}: --overwrite: removed its Parquet files"))
    elif os.path.exists(output):
        os.unlink(output)
        console.print(Text(f"rerank-async: {output}: --overwrite: removed the file"))


def _add_fingerprints(batch: pa.Table, *, provider: str, model: str) -> pa.Table:
    """The batch with a ``fingerprint`` column: of each row's request, null for a bad row.

    Rows are read by the same validator as the actors' (`record_query`,
    `record_documents`), so a row has a fingerprint exactly when a request is sent for it.
    """
    values: list[str | None] = []
    for query, documents in zip(
        batch.column("query").to_pylist(), batch.column("documents").to_pylist(), strict=True
    ):
        try:
            texts, _ = record_documents(documents)
            values.append(
                fingerprint(
                    provider=provider,
                    model=model,
                    instruction=None,
                    query=record_query(query),
                    documents=texts,
                )
            )
        except InvalidRecordError:
            values.append(None)
    return batch.append_column("fingerprint", pa.array(values, type=pa.string()))


def _read(path: str) -> ray.data.Dataset:
    if path.lower().endswith(PARQUET_SUFFIXES) or os.path.isdir(path):
        return ray.data.read_parquet(path)
    return ray.data.read_json(path, lines=True)


def _check_columns(dataset: ray.data.Dataset, path: str) -> None:
    schema = dataset.schema()
    names = list(schema.names) if schema is not None else []
    for required in ("id", "query", "documents"):
        if required not in names:
            extra = " (with --ray every row needs an id)" if required == "id" else ""
            raise ValueError(f"{path}: no {required!r} column{extra}; columns: {', '.join(names)}")


def _figures(output: str, wall: float) -> dict[str, Any]:
    ok = failed = documents = 0
    errors: Counter[str] = Counter()
    for name in sorted(os.listdir(output)):
        if not name.endswith(".parquet") or name.startswith((".", "_")):
            continue
        with pq.ParquetFile(os.path.join(output, name)) as handle:
            for batch in handle.iter_batches(columns=["scores", "error_type"]):
                types = batch.column(1)
                failed += len(types) - types.null_count
                ok += types.null_count
                documents += pc.sum(pc.list_value_length(batch.column(0))).as_py() or 0
                errors.update(t for t in types.to_pylist() if t is not None)
    return {
        "requests_ok": ok,
        "requests_failed": failed,
        "documents": documents,
        "wall_s": round(wall, 3),
        "documents_per_s": round(documents / wall, 1) if wall > 0 else None,
        "errors_by_type": dict(errors),
    }


def _rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    rate = figures["documents_per_s"]
    rows = [
        ("requests", f"{figures['requests_ok']:,} ok · {figures['requests_failed']:,} failed"),
        ("documents scored", f"{figures['documents']:,}"),
        ("wall time", f"{figures['wall_s']:.2f} s"),
        ("throughput", "-" if rate is None else f"{rate:,.0f} documents/s"),
    ]
    if figures["errors_by_type"]:
        rows.append(
            ("errors", " · ".join(f"{k} {v:,}" for k, v in figures["errors_by_type"].items()))
        )
    return rows
