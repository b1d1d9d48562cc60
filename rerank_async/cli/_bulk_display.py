"""The live progress line of ``rerank-async bulk`` on stderr (a terminal only)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from ._bulk_summary import BulkSummary

__all__ = ["Display"]


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


class Display:
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

    def __enter__(self) -> Display:
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
