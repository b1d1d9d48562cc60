"""Plots for ``rerank-async bench --plot`` (extra ``plot``: matplotlib, drawn off-screen)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # no display: draw straight to a file
import matplotlib.pyplot as plt  # must follow the backend choice

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ._bench_cells import CellResult

__all__ = ["plot_cells"]


def plot_cells(cells: Sequence[CellResult], path: str) -> None:
    """Latency percentiles vs batch size, and throughput vs concurrency, side by side."""
    figure, (latency_axes, throughput_axes) = plt.subplots(1, 2, figsize=(12, 4.5))
    top_concurrency = max(cell.concurrency for cell in cells)
    at_top = sorted(
        (cell for cell in cells if cell.concurrency == top_concurrency), key=lambda c: c.batch_size
    )
    for name, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
        latency_axes.plot(
            [c.batch_size for c in at_top], [c.call_ms[name] for c in at_top], style, label=name
        )
    latency_axes.set(
        xlabel="batch size (documents per request)",
        ylabel="call latency (ms)",
        title=f"Call latency vs batch size (concurrency {top_concurrency})",
    )
    _log2_ticks(latency_axes, [c.batch_size for c in at_top])
    latency_axes.legend()
    for batch_size in sorted({cell.batch_size for cell in cells}):
        row = sorted((c for c in cells if c.batch_size == batch_size), key=lambda c: c.concurrency)
        throughput_axes.plot(
            [c.concurrency for c in row],
            [c.documents_per_s for c in row],
            "o-",
            label=f"B={batch_size}",
        )
    throughput_axes.set(
        xlabel="max_concurrency (requests in flight)",
        ylabel="documents / s",
        title="Throughput vs concurrency",
    )
    _log2_ticks(throughput_axes, [c.concurrency for c in cells])
    throughput_axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _log2_ticks(axes: Axes, values: Sequence[int]) -> None:
    """A base-2 log axis labelled with the swept values themselves (16, 32, 64)."""
    ticks = sorted(set(values))
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, [str(tick) for tick in ticks])
    axes.minorticks_off()
