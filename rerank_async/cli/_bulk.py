"""``rerank-async bulk``: rerank a JSONL file of requests, resumably, with progress and a summary.

One input line is one request, ``{"id"?, "query", "documents": [...], "top_k"?}``; one
output line is one record, written as soon as its request is done (so in completion order,
not input order)::

    {"id": 7, "fingerprint": "b2v1:...", "scores": [...input order...], "ranking": [...]}
    {"id": 8, "fingerprint": "b2v1:...", "error": {"type": "RateLimitError", ...}}

Crash safety rests on two rules. Each record is one ``os.write`` of its complete bytes to a
file opened with ``O_APPEND``, with no buffering in between, so a process killed between
writes leaves whole lines only, and Ctrl-C (handled, never raised mid-write) always does.
Only ``kill -9`` landing inside the write of a record larger than a page can leave part of
it (Linux checks for fatal signals between the pages of a write), and only as the last
line: so a run that finds an incomplete last line (that, an older buffered writer, a full
disk) cuts it off and warns before it appends anything, once it has read the whole file
and found it to be bulk's (``_bulk_output.py``). Resuming then needs the ids already in
the output and their fingerprints: a record whose fingerprint differs from its line's
answered another request, and the line runs again (``DoneIds.verdict`` decides). See
``docs/bulk.md``.

Parquet input and output (``_bulk_parquet_input.py``, ``_bulk_parquet.py``) plug into the
same run: a source of numbered records, and an output with the same
``write``/``supersede``/``close`` as `OutputFile`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from rich.text import Text

from .._client import RerankClient
from .._exceptions import APIStatusError
from .._fleet import ScoreCache
from .._many import RerankOutcome, RerankRequest
from .._options import RetryPolicy
from ._bulk_args import add_arguments, usage_problem
from ._bulk_display import Display
from ._bulk_files import is_parquet
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
from ._bulk_output import OutputFile
from ._bulk_records import (
    DUPLICATE_ID,
    DoneIds,
    Verdict,
    error_record,
    fingerprint,
    success_record,
)
from ._bulk_summary import BulkSummary, exit_code, summary_rows
from ._common import (
    EXIT_USAGE,
    MissingExtraError,
    client_from_args,
    one_line,
)
from ._output import stderr_console, summary_table

__all__ = ["BulkSummary", "register", "run_bulk"]

# Malformed lines reported one by one on stderr before the rest are only counted.
_MAX_LINE_REPORTS: Final = 20


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

    def supersede(self, request_id: RequestId) -> None: ...

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
    strict_resume: bool


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
        display: Display,
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
        # The fingerprint of each request in flight, for its record (at most max_pending).
        self.fingerprints: dict[RequestId, str] = {}
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
            line_fingerprint = None if isinstance(parsed, BadLine) else self._fingerprint(parsed)
            verdict = self.done.verdict(key, line_fingerprint)
            was_error = self.done.forget(key)  # seen holds it now; one set per id, not two
            if verdict is Verdict.SKIP:
                self._skip()
                continue
            if verdict is Verdict.STALE:
                if self.options.strict_resume:
                    self._stale(key)
                    continue
                summary.rescored += 1
                # The old record goes at the end: an error it was no longer counts.
                summary.earlier_errors -= was_error
                self.output.supersede(key)
            if isinstance(parsed, BadLine):
                self._bad_line(parsed)
                continue
            assert line_fingerprint is not None
            self.fingerprints[key] = line_fingerprint
            self.submitted += 1
            yield parsed
            # Let the request just started reach its first await before reading on, as
            # rerank_many does for a plain iterable: measured ~1.6x faster on small requests
            # than starting a burst of them at once.
            await anyio.lowlevel.checkpoint()

    def _fingerprint(self, request: RerankRequest) -> str:
        meta = request.metadata
        return fingerprint(
            provider=self.client.provider.name,
            model=self.client.model,
            instruction=None,
            query=request.query,
            documents=request.documents,
            top_k=request.top_k,
            fields=meta.fields if isinstance(meta, LineMeta) else None,
        )

    def _stale(self, key: RequestId) -> None:
        # --strict-resume: the record stays as it is, and the run ends saying so.
        summary = self.summary
        summary.stale += 1
        if len(summary.stale_ids) < 10:
            summary.stale_ids.append(key)
        self._skip()

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
        line_fingerprint = self.fingerprints.pop(outcome.id, None)
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
                    fingerprint=line_fingerprint,
                    model=result.model,
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
                    fingerprint=line_fingerprint,
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
    add_arguments(parser)
    parser.set_defaults(handler=run_bulk)


def run_bulk(args: argparse.Namespace) -> int:
    """Run ``rerank-async bulk``; returns the exit code."""
    if args.ray:
        try:
            from ._bulk_ray import run_bulk_ray  # the ray extra, loaded only for --ray
        except ImportError as error:
            raise MissingExtraError(f"{error}: install rerank-async[cli,ray]") from error
        return run_bulk_ray(args)
    console = stderr_console()
    problem = usage_problem(args)
    if problem is not None:
        console.print(Text(f"rerank-async bulk: error: {problem}"), soft_wrap=True)
        return EXIT_USAGE
    options = _Options(
        input=args.input,
        output=args.output,
        default_top_k=args.top_k,
        max_pending=args.max_pending,
        quiet=args.quiet,
        strict_resume=args.strict_resume,
    )

    def warn(message: str) -> None:
        console.print(Text(f"rerank-async: warning: {message}", style="yellow"), soft_wrap=True)

    parquet_input = args.input != "-" and is_parquet(args.input)
    with contextlib.ExitStack() as stack:
        source: _Source
        counter: Callable[[], int] | None = None
        if parquet_input:
            from ._bulk_parquet_input import ParquetSource, count_parquet_rows

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
        client = client_from_args(
            args,
            retry=RetryPolicy(initial_delay=args.retry_initial_delay),
            cache=None if args.cache is None else ScoreCache(path=args.cache),
        )
        output: _Output
        if is_parquet(args.output):
            from ._bulk_parquet import ParquetOutput

            output, done = ParquetOutput.open(
                args.output,
                retry_failed=args.retry_failed,
                warn=warn,
                part_rows=args.part_rows,
                overwrite=args.overwrite,
            )
        else:
            output, done = OutputFile.open(
                args.output, retry_failed=args.retry_failed, warn=warn, overwrite=args.overwrite
            )
        stack.callback(output.close)
        if done.unfingerprinted:
            warn(
                f"{args.output}: {done.unfingerprinted:,} records have no fingerprint (written "
                "by an older rerank-async): they are resumed by id alone, so a line changed "
                "since then is not noticed; --overwrite scores everything again"
            )
        display = Display(console, enabled=console.is_terminal and not args.quiet, counter=counter)
        bulk = _BulkRun(options, client, source, records, output, done, display)
        with display:
            anyio.run(bulk.run)
    summary = bulk.summary
    if bulk.signal is not None:
        summary.interrupted_by = signal.Signals(bulk.signal).name
    if not args.quiet:
        console.print(summary_table(summary_rows(summary), title="Summary"))
    if args.json_summary:
        with open(args.json_summary, "w", encoding="utf-8") as handle:
            json.dump(summary.as_json(), handle, indent=2)
            handle.write("\n")
    return exit_code(summary, output=args.output, written=output.written, console=console)
