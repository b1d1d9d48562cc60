"""``rerank-async bulk``: rerank a JSONL file of requests, resumably, with progress and a summary.

One input line is one request, ``{"id"?, "query", "documents": [...], "top_k"?}``; one
output line is one record, written as soon as its request is done (so in completion order,
not input order)::

    {"id": 7, "scores": [...input order...], "ranking": [best index first, ...]}
    {"id": 8, "error": {"type": "RateLimitError", "message": "...", "line": 8}}

Crash safety rests on two rules. Each record is one ``os.write`` of its complete bytes to a
file opened with ``O_APPEND``, with no buffering in between, so a process killed between
writes leaves whole lines only, and Ctrl-C (handled, never raised mid-write) always does.
Only ``kill -9`` landing inside the write of a record larger than a page can leave part of
it (Linux checks for fatal signals between the pages of a write), and only as the last
line: so a run that finds an incomplete last line (that, an older buffered writer, a full
disk) cuts it off and warns before it appends anything. Resuming then only needs the set
of ids already in the output. See ``docs/bulk.md``.

Parquet input and output (``_bulk_parquet.py``) plug into the same run: a source of
numbered records, and an output with the same ``write``/``close`` as `OutputFile`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import TaskStatus
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from .._client import RerankClient
from .._constants import DEFAULT_RETRY_INITIAL_DELAY
from .._exceptions import APIStatusError
from .._many import RerankOutcome, RerankRequest
from .._options import RetryPolicy
from ._bulk_input import (
    BadLine,
    ChunkSource,
    LineMeta,
    RequestId,
    count_lines,
    input_lines,
    never_blocks,
    open_input,
    parse_line,
)
from ._bulk_output import DUPLICATE_ID, DoneIds, OutputFile, error_record, success_record
from ._common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    MissingExtraError,
    add_client_options,
    add_verbose_option,
    client_from_args,
    one_line,
)
from ._output import percentile, stderr_console, summary_table

__all__ = ["BulkSummary", "register", "run_bulk"]

# Latency percentiles are exact up to this many requests, then estimated from a uniform
# sample of this size (reservoir sampling), so memory stays flat on any input.
_LATENCY_SAMPLE: Final = 20_000
# Malformed lines reported one by one on stderr before the rest are only counted.
_MAX_LINE_REPORTS: Final = 20
EXIT_TERMINATED: Final = 128 + signal.SIGTERM


# -- the run --------------------------------------------------------------------------------------


class _Reservoir:
    """A uniform sample of at most ``size`` values (Vitter's algorithm R) and the exact max."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0
        self.max = 0.0
        self._random = random.Random(0)

    def add(self, value: float) -> None:
        self.seen += 1
        self.max = max(self.max, value)
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = self._random.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value


@dataclass
class BulkSummary:
    """The figures of one run, for the summary table and ``--json-summary``."""

    ok: int = 0
    failed: int = 0
    malformed: int = 0
    skipped: int = 0
    blank: int = 0
    earlier_errors: int = 0
    documents: int = 0
    http_requests: int = 0
    retries: int = 0
    wall_s: float = 0.0
    interrupted_by: str | None = None
    # The client's adaptive concurrency limit: now, and the lowest it went this run.
    concurrency_limit: int | None = None
    lowest_concurrency_limit: int | None = None
    errors_by_type: Counter[str] = field(default_factory=Counter)
    latency: _Reservoir = field(default_factory=lambda: _Reservoir(_LATENCY_SAMPLE))

    @property
    def done(self) -> int:
        """Requests (and malformed lines) finished in this run."""
        return self.ok + self.failed + self.malformed

    def note_limit(self, limit: int) -> None:
        """Remember the client's concurrency limit after an outcome."""
        self.concurrency_limit = limit
        lowest = self.lowest_concurrency_limit
        self.lowest_concurrency_limit = limit if lowest is None else min(lowest, limit)

    def latency_ms(self, fraction: float) -> float:
        if fraction >= 1.0:
            return self.latency.max * 1000.0 if self.latency.seen else float("nan")
        return percentile(self.latency.values, fraction) * 1000.0

    def as_json(self) -> dict[str, Any]:
        wall = self.wall_s
        return {
            "requests_ok": self.ok,
            "requests_failed": self.failed,
            "lines_malformed": self.malformed,
            "requests_skipped": self.skipped,
            "earlier_errors_kept": self.earlier_errors,
            "documents": self.documents,
            "wall_s": round(wall, 3),
            "documents_per_s": round(self.documents / wall, 1) if wall > 0 else None,
            "requests_per_s": round(self.done / wall, 1) if wall > 0 else None,
            "latency_ms": {
                name: (round(value, 2) if value == value else None)  # NaN -> null
                for name, value in (
                    ("p50", self.latency_ms(0.5)),
                    ("p90", self.latency_ms(0.9)),
                    ("p99", self.latency_ms(0.99)),
                    ("max", self.latency_ms(1.0)),
                )
            },
            "http_requests": self.http_requests,
            "retries": self.retries,
            "errors_by_type": dict(self.errors_by_type),
            "interrupted_by": self.interrupted_by,
            "concurrency_limit": self.concurrency_limit,
            "lowest_concurrency_limit": self.lowest_concurrency_limit,
        }


class _StatusColumn(ProgressColumn):
    """``done/total requests · ETA · documents · documents/s · retries · errors``, on one line.

    One column that never wraps: on a narrow terminal its end is cut with an ellipsis.
    """

    def render(self, task: Task) -> Text:
        fields = task.fields
        documents: int = fields["documents"]
        elapsed = task.elapsed or 0.0
        rate = documents / elapsed if elapsed > 0 else 0.0
        done = f"{int(task.completed):,}"
        if task.total is None:
            head = f"{done} requests"
        else:
            remaining = task.time_remaining
            eta = "-:--:--" if remaining is None else str(timedelta(seconds=int(remaining)))
            head = f"{done}/{int(task.total):,} requests · ETA {eta}"
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(head)
        text.append(
            f" · {documents:,} docs · {rate:,.0f} docs/s · {fields['retries']:,} retries · "
        )
        errors: int = fields["errors"]
        text.append(f"{errors:,} errors", style="bold red" if errors else "")
        limit: int | None = fields.get("limit")
        if limit is not None:
            text.append(f" · limit {limit}")
        return text


class _Display:
    """The progress bar on stderr, or nothing when stderr is not a terminal or with ``--quiet``."""

    def __init__(
        self, console: Console, *, enabled: bool, counter: Callable[[], int] | None
    ) -> None:
        self.console = console
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]bulk"), BarColumn(bar_width=16), _StatusColumn(),
            console=console, disable=not enabled,
        )  # fmt: skip
        self._task: TaskID = self._progress.add_task(
            "bulk", total=None, documents=0, retries=0, errors=0, limit=None
        )
        self._lines: int | None = None
        self._not_to_run = 0
        if enabled and counter is not None:
            # Counted beside the run, so a large input starts at once; until the count is
            # in, the total shows as unknown. A daemon thread: Ctrl-C never waits for it.
            threading.Thread(
                target=self._count, args=(counter,), name="rerank-async-bulk-count",
                daemon=True,
            ).start()  # fmt: skip

    def _count(self, counter: Callable[[], int]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._lines = counter()  # one attribute store: safe to read from the loop

    def __enter__(self) -> _Display:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled:
            self._progress.stop()

    def not_to_run(self) -> None:
        """One line of the input turned out to need no request (skipped or blank)."""
        self._not_to_run += 1

    def show(self, summary: BulkSummary) -> None:
        if self.enabled:
            lines = self._lines
            self._progress.update(
                self._task,
                total=None if lines is None else max(lines - self._not_to_run, summary.done),
                completed=summary.done,
                documents=summary.documents,
                retries=summary.retries,
                errors=summary.failed + summary.malformed,
                limit=summary.concurrency_limit,
            )

    def say(self, message: str, *, style: str = "") -> None:
        self.console.print(Text(message, style=style), soft_wrap=True)


Records = AsyncIterator[tuple[int, RerankRequest | BadLine | None]]


class _Source(Protocol):
    """The input as the run sees it: JSONL chunks or Parquet rows, stoppable on Ctrl-C."""

    @property
    def stopped(self) -> bool: ...

    def stop(self) -> None: ...


class _Output(Protocol):
    """The output: a JSONL `OutputFile` or a Parquet dataset directory."""

    path: str
    written: int

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


async def _jsonl_records(source: ChunkSource, default_top_k: int | None) -> Records:
    async for number, raw in input_lines(source):
        yield number, parse_line(raw, number, default_top_k=default_top_k)


@dataclass
class _Options:
    input: str
    output: str
    default_top_k: int | None
    max_pending: int | None
    quiet: bool


class _BulkRun:
    """One run: feeds lines to ``rerank_many``, writes records, watches for Ctrl-C."""

    def __init__(
        self,
        options: _Options,
        client: RerankClient,
        source: _Source,
        records: Records,
        output: _Output,
        done: DoneIds,
        display: _Display,
    ) -> None:
        self.options = options
        self.client = client
        self.source = source
        self.records = records
        self.output = output
        self.done = done
        self.display = display
        self.summary = BulkSummary(earlier_errors=done.error_records)
        self.seen: set[RequestId] = set()
        self.submitted = 0
        self.line_reports = 0
        self.signal: int | None = None
        self.work_scope: anyio.CancelScope | None = None
        self._input_name = "stdin" if options.input == "-" else options.input

    async def run(self) -> None:
        started = time.perf_counter()
        failure: Exception | None = None
        async with anyio.create_task_group() as group:
            # Signal handlers can only be set from the main thread (and not on Windows).
            if threading.current_thread() is threading.main_thread() and sys.platform != "win32":
                await group.start(self._watch_signals)
            try:
                with anyio.CancelScope() as self.work_scope:
                    await self._work()
            except Exception as error:  # raised below, outside the task group (no ExceptionGroup)
                failure = error
            finally:
                group.cancel_scope.cancel()
        self.summary.wall_s = time.perf_counter() - started
        if failure is not None:
            raise failure

    async def _watch_signals(self, *, task_status: TaskStatus[None]) -> None:
        # While this receiver is open, Ctrl-C raises no KeyboardInterrupt: it cannot land
        # between the bytes of a record, and the first one stops the run gently.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.signal is None:
                    self.signal = signum
                    self.source.stop()
                    in_flight = self.submitted - self.summary.ok - self.summary.failed
                    self.display.say(
                        f"rerank-async: {signal.Signals(signum).name}: reading no more input; "
                        f"finishing {in_flight:,} requests in flight "
                        "(Ctrl-C again to stop at once)",
                        style="yellow",
                    )
                elif self.work_scope is not None:
                    self.work_scope.cancel()

    async def _work(self) -> None:
        write_error: OSError | None = None
        async with self.client:
            async with self.client.rerank_many(
                self._requests(), max_pending=self.options.max_pending
            ) as outcomes:
                async for outcome in outcomes:
                    try:
                        self._record_outcome(outcome)
                    except OSError as error:  # raised after the block: no ExceptionGroup
                        write_error = error
                        break
        if write_error is not None:
            raise write_error

    async def _requests(self) -> AsyncIterator[RerankRequest]:
        summary, display = self.summary, self.display
        async for number, parsed in self.records:
            if self.source.stopped:
                return
            if parsed is None:
                summary.blank += 1
                display.not_to_run()
                continue
            key = parsed.id
            assert key is not None  # parse_line always sets one
            if key in self.seen:
                if number in self.done.duplicate_lines:
                    self._skip()
                else:
                    self._bad_line(BadLine(key, number, _duplicate_message(key), DUPLICATE_ID))
                continue
            self.seen.add(key)
            if key in self.done.ok:
                self.done.ok.discard(key)  # seen now holds it; keep one set per id, not two
                self._skip()
                continue
            if key in self.done.failed:
                self.done.failed.discard(key)
                self._skip()
                continue
            if isinstance(parsed, BadLine):
                self._bad_line(parsed)
                continue
            self.submitted += 1
            yield parsed
            # Let the request just started reach its first await before reading on, as
            # rerank_many does for a plain iterable: measured ~1.6x faster on small requests
            # than starting a burst of them at once.
            await anyio.lowlevel.checkpoint()

    def _skip(self) -> None:
        self.summary.skipped += 1
        self.display.not_to_run()
        self.display.show(self.summary)

    def _bad_line(self, bad: BadLine) -> None:
        self.output.write(
            error_record(bad.id, type_name=bad.type, message=bad.message, line=bad.line)
        )
        summary = self.summary
        summary.malformed += 1
        summary.errors_by_type[bad.type] += 1
        self.line_reports += 1
        if self.line_reports <= _MAX_LINE_REPORTS:
            self.display.say(
                f"rerank-async: {self._input_name} line {bad.line}: {bad.message}", style="yellow"
            )
        elif self.line_reports == _MAX_LINE_REPORTS + 1:
            self.display.say(
                f"rerank-async: more malformed lines; their error records in {self.output.path} "
                "say which",
                style="yellow",
            )
        self.display.show(summary)

    def _record_outcome(self, outcome: RerankOutcome) -> None:
        summary = self.summary
        request = outcome.request
        meta = request.metadata if request is not None else None
        line_meta = meta if isinstance(meta, LineMeta) else None
        summary.latency.add(outcome.elapsed_s)
        summary.note_limit(self.client.statistics().concurrency_limit)
        if outcome.result is not None:
            result = outcome.result
            self.output.write(
                success_record(
                    outcome.id,
                    result.scores,
                    top_k=result.top_k,
                    meta=line_meta,
                    input_tokens=result.usage.input_tokens,
                )
            )
            summary.ok += 1
            summary.documents += len(result.scores)
            summary.http_requests += result.usage.requests
            summary.retries += result.usage.retries
        else:
            error = outcome.error if outcome.error is not None else RuntimeError("no result")
            self.output.write(
                error_record(
                    outcome.id,
                    type_name=type(error).__name__,
                    message=one_line(error),
                    line=line_meta.line if line_meta is not None else None,
                    status_code=error.status_code if isinstance(error, APIStatusError) else None,
                )
            )
            summary.failed += 1
            summary.errors_by_type[type(error).__name__] += 1
        self.display.show(summary)


def _duplicate_message(key: RequestId) -> str:
    shown = json.dumps(key, ensure_ascii=False)
    return f"duplicate id {shown}: an earlier line has it; this line is not run"


# -- the command ----------------------------------------------------------------------------------


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``bulk`` command's flags and handler to its ``parser``."""
    parser.description = (
        'Rerank every request of a JSONL file ({"id"?, "query", "documents", '
        '"top_k"?} per line) into a JSONL output, one record per request. A rerun resumes: '
        "ids already in the output are skipped. Parquet in and out by extension (extra parquet); "
        "--ray runs the job on Ray Data (extra ray). See docs/bulk.md and docs/distributed.md."
    )
    parser.add_argument("input", help="requests, one JSON object per line; '-' reads stdin")
    parser.add_argument("-o", "--output", required=True, help="records file (appended to, resumed)")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="drop the output's error records first, so their lines run again",
    )
    parser.add_argument("-k", "--top-k", type=int, help="top_k of lines that give none")
    parser.add_argument(
        "--max-pending", type=int, help="requests held at once (default: 4 x --concurrency)"
    )
    parser.add_argument(
        "--retry-initial-delay",
        type=float,
        default=DEFAULT_RETRY_INITIAL_DELAY,
        help="backoff ceiling after a first failure, seconds (%(default)s; 0: retry at once)",
    )
    parser.add_argument("--json-summary", metavar="FILE", help="also write the summary as JSON")
    parser.add_argument(
        "--part-rows",
        type=int,
        default=10_000,
        metavar="N",
        help="Parquet output: records per part file, at most (%(default)s)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary table"
    )
    _add_ray_options(parser)
    add_client_options(
        parser, base_url_help="endpoint root (default: $RERANK_ASYNC_BASE_URL, else the provider's)"
    )
    add_verbose_option(parser)
    parser.set_defaults(handler=run_bulk)


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray Data (docs/distributed.md)")
    group.add_argument(
        "--ray",
        action="store_true",
        help="run on Ray Data ($RAY_ADDRESS, else a local cluster); the output is Parquet",
    )
    group.add_argument(
        "--actors",
        type=int,
        default=2,
        help="--ray: actors, each with one client; --concurrency is divided across them",
    )
    group.add_argument(
        "--actor-cpus", type=float, default=0.25, help="--ray: CPUs each actor reserves"
    )


def run_bulk(args: argparse.Namespace) -> int:
    """Run ``rerank-async bulk``; returns the exit code."""
    if args.ray:
        try:
            from ._bulk_ray import run_bulk_ray  # the ray extra, loaded only for --ray
        except ImportError as error:
            raise MissingExtraError(f"{error}: install rerank-async[cli,ray]") from error
        return run_bulk_ray(args)
    console = stderr_console()
    problem = _usage_problem(args)
    if problem is not None:
        console.print(Text(f"rerank-async bulk: error: {problem}"), soft_wrap=True)
        return EXIT_USAGE
    options = _Options(
        input=args.input,
        output=args.output,
        default_top_k=args.top_k,
        max_pending=args.max_pending,
        quiet=args.quiet,
    )

    def warn(message: str) -> None:
        console.print(Text(f"rerank-async: warning: {message}", style="yellow"), soft_wrap=True)

    parquet_input = args.input != "-" and _is_parquet(args.input)
    with contextlib.ExitStack() as stack:
        source: _Source
        counter: Callable[[], int] | None = None
        if parquet_input:
            from ._bulk_parquet import ParquetSource, count_parquet_rows

            parquet = ParquetSource(args.input, default_top_k=args.top_k)
            source, records = parquet, parquet.records()
            counter = lambda: count_parquet_rows(args.input)  # noqa: E731
        else:
            stream = stack.enter_context(open_input(args.input))
            chunks = ChunkSource(stream)
            stack.callback(chunks.close)
            source, records = chunks, _jsonl_records(chunks, args.top_k)
            if args.input != "-" and never_blocks(stream):
                counter = lambda: count_lines(args.input)  # noqa: E731
        client = client_from_args(args, retry=RetryPolicy(initial_delay=args.retry_initial_delay))
        output: _Output
        if _is_parquet(args.output):
            from ._bulk_parquet import ParquetOutput

            output, done = ParquetOutput.open(
                args.output, retry_failed=args.retry_failed, warn=warn, part_rows=args.part_rows
            )
        else:
            output, done = OutputFile.open(args.output, retry_failed=args.retry_failed, warn=warn)
        stack.callback(output.close)
        display = _Display(console, enabled=console.is_terminal and not args.quiet, counter=counter)
        bulk = _BulkRun(options, client, source, records, output, done, display)
        with display:
            anyio.run(bulk.run)
    summary = bulk.summary
    if bulk.signal is not None:
        summary.interrupted_by = signal.Signals(bulk.signal).name
    if not args.quiet:
        console.print(summary_table(_summary_rows(summary), title="Summary"))
    if args.json_summary:
        with open(args.json_summary, "w", encoding="utf-8") as handle:
            json.dump(summary.as_json(), handle, indent=2)
            handle.write("\n")
    return _finish(summary, options, output, console)


def _is_parquet(path: str) -> bool:
    """Parquet by the path's extension (or an existing directory); needs the extra.

    Decided without importing pyarrow, so a JSONL run never pays for it.
    """
    if not (path.lower().endswith((".parquet", ".pq")) or os.path.isdir(path)):
        return False
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(f"{error}: install rerank-async[parquet]") from error
    return True


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.output == "-":
        return "--output must be a file: a rerun reads it back to resume"
    for flag, value in (
        ("--top-k", args.top_k),
        ("--max-pending", args.max_pending),
        ("--part-rows", args.part_rows),
    ):
        if value is not None and value < 1:
            return f"{flag} must be >= 1, got {value}"
    if args.retry_initial_delay < 0:
        return f"--retry-initial-delay must be >= 0, got {args.retry_initial_delay}"
    if args.input != "-" and os.path.exists(args.output):
        with contextlib.suppress(OSError):
            if os.path.samefile(args.input, args.output):
                return "the output must not be the input file"
    return None


def _summary_rows(summary: BulkSummary) -> list[tuple[str, str]]:
    wall = summary.wall_s
    rate = (
        f"{summary.documents / wall:,.0f} documents/s · {summary.done / wall:,.1f} requests/s"
        if wall > 0
        else "-"
    )
    rows = [
        ("requests",
         f"{summary.ok:,} ok · {summary.failed:,} failed · {summary.skipped:,} skipped"),
        ("malformed lines", f"{summary.malformed:,}"),
        ("documents scored", f"{summary.documents:,}"),
        ("wall time", f"{wall:.2f} s"),
        ("throughput", rate),
        ("latency p50 / p90 / p99 / max",
         " / ".join(_ms(summary.latency_ms(p)) for p in (0.5, 0.9, 0.99, 1.0)) + " ms"),
        ("HTTP requests", f"{summary.http_requests:,} ({summary.retries:,} retries)"),
    ]  # fmt: skip
    if summary.concurrency_limit is not None:
        rows.append(
            (
                "concurrency limit",
                f"{summary.concurrency_limit} at the end · {summary.lowest_concurrency_limit} "
                "lowest",
            )
        )
    if summary.errors_by_type:
        rows.append(
            (
                "errors",
                " · ".join(f"{name} {n:,}" for name, n in summary.errors_by_type.most_common()),
            )
        )
    if summary.earlier_errors:
        rows.append(("error records from earlier runs", f"{summary.earlier_errors:,}"))
    return rows


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:,.0f}"


def _finish(summary: BulkSummary, options: _Options, output: _Output, console: Console) -> int:
    def say(message: str) -> None:
        console.print(Text(f"rerank-async: {message}"), soft_wrap=True)

    if summary.interrupted_by is not None:
        say(
            f"{summary.interrupted_by}: stopped with {output.written:,} new records in "
            f"{options.output}; run the same command again to resume"
        )
        return EXIT_TERMINATED if summary.interrupted_by == "SIGTERM" else EXIT_INTERRUPTED
    errors = summary.failed + summary.malformed + summary.earlier_errors
    if errors:
        say(
            f"{errors:,} error records in {options.output}; rerun with --retry-failed to run "
            "those lines again"
        )
        return EXIT_FAILURE
    return EXIT_OK
