"""Terminal rendering for the command line (rich), kept apart from what the commands do."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from .._models import RerankResult

__all__ = [
    "percentile",
    "ranked_table",
    "stderr_console",
    "stdout_console",
    "summary_table",
]


# Columns, borders and padding of a ranked table besides the document text.
_RANKED_TABLE_FRAME = 28


def ranked_table(result: RerankResult, *, title: str | None = None, width: int = 120) -> Table:
    """The ranked documents as a table: rank, input index, score, text.

    Args:
        result: What to show.
        title: A caption above the table.
        width: The terminal's width; the document text is cut to fit it.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right", no_wrap=True, min_width=4)
    table.add_column("index", justify="right", no_wrap=True, min_width=5)
    table.add_column("score", justify="right", min_width=6, no_wrap=True)
    # Only the document text shrinks to fit the terminal; the numbers never do.
    table.add_column(
        "document",
        overflow="ellipsis",
        no_wrap=True,
        max_width=max(20, width - _RANKED_TABLE_FRAME),
    )
    for rank, ranked in enumerate(result.results, start=1):
        table.add_row(str(rank), str(ranked.index), f"{ranked.score:.4f}", ranked.document)
    return table


def summary_table(rows: Sequence[tuple[str, str]], *, title: str) -> Table:
    """A two-column table of labelled figures."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return table


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in [0, 1])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def stdout_console() -> Console:
    """Where tables go: the terminal's width, or 160 columns into a file or a pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def stderr_console() -> Console:
    """Where progress and summaries go, so that stdout stays clean for data."""
    return Console(stderr=True)
