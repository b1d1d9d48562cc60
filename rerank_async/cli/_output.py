"""Terminal rendering for the command line (rich), kept apart from what the commands do."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from .._models import RerankResult

__all__ = ["percentile", "ranked_table", "stderr_console", "summary_table"]


def ranked_table(result: RerankResult, *, title: str | None = None, width: int = 90) -> Table:
    """The ranked documents as a table: rank, input index, score, text."""
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("index", justify="right")
    table.add_column("score", justify="right")
    table.add_column("document", overflow="ellipsis", no_wrap=True, max_width=width)
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


def stderr_console() -> Console:
    """Where progress and summaries go, so that stdout stays clean for data."""
    return Console(stderr=True)
