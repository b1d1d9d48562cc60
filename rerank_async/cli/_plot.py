"""Plots for ``rerank-async bench --plot`` and ``--report`` (extra ``plot``: matplotlib).

Each returns PNG bytes: ``--plot`` writes them to a file, the report embeds them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import matplotlib

matplotlib.use("Agg")  # no display: draw off-screen
import matplotlib.pyplot as plt  # must follow the backend choice
from matplotlib.ticker import FuncFormatter, LogLocator

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

    from ._bench_cells import CellResult, OpenLoopCell

__all__ = ["grid_png", "open_loop_png"]

# Percentiles marked on the CDF's logit axis.
_CDF_TICKS: Final = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)


def grid_png(cells: Sequence[CellResult]) -> bytes:
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
    return _png(figure)


def open_loop_png(cells: Sequence[OpenLoopCell], target_p99_ms: float | None) -> bytes:
    """Latency CDF per target (and rate), and p99 against offered rate, side by side.

    The CDF's vertical axis is a logit scale, so p90, p99 and p99.9 are evenly spaced and
    the tail, where a stall shows, is not squeezed against the top.
    """
    figure, (cdf_axes, rate_axes) = plt.subplots(1, 2, figsize=(12, 4.8))
    targets = list(dict.fromkeys(cell.target for cell in cells))
    rates = sorted({cell.rate for cell in cells})
    colours = {name: f"C{index % 10}" for index, name in enumerate(targets)}
    styles = ("-", "--", ":", "-.")
    for cell in cells:
        if not cell.latencies_ms:
            continue
        ordered = sorted(cell.latencies_ms)
        n = len(ordered)
        # Hazen plotting positions: (i + 0.5) / n stays inside (0, 1), as a logit axis needs.
        fractions = [(index + 0.5) / n for index in range(n)]
        label = cell.target if len(rates) == 1 else f"{cell.target} @ {cell.rate:g}/s"
        style = styles[rates.index(cell.rate) % len(styles)]
        cdf_axes.step(ordered, fractions, where="post", color=colours[cell.target],
                      linestyle=style, label=label)  # fmt: skip
    cdf_axes.set_xscale("log")
    _plain_log_ticks(cdf_axes.xaxis)
    cdf_axes.set_yscale("logit")
    # Only the percentiles the data reaches: the top plotting position is 1 - 0.5 / n.
    most = max(1, *(len(cell.latencies_ms) for cell in cells))
    ticks = [q for q in _CDF_TICKS if q <= 1.0 - 0.5 / most]
    cdf_axes.set_yticks(ticks, [f"p{100 * q:g}" for q in ticks])
    cdf_axes.minorticks_off()
    cdf_axes.set(xlabel="latency from scheduled start (ms)", ylabel="percentile of calls",
                 title="Latency CDF")  # fmt: skip
    cdf_axes.grid(True, which="major", alpha=0.3)
    _legend(cdf_axes)
    for name in targets:
        row = sorted((c for c in cells if c.target == name), key=lambda c: c.rate)
        points = [(c.rate, c.summary()["p99_ms"]) for c in row]
        shown = [(rate, p99) for rate, p99 in points if p99 is not None]
        rate_axes.plot([r for r, _ in shown], [p for _, p in shown], "o-",
                       color=colours[name], label=name)  # fmt: skip
    if target_p99_ms is not None:
        rate_axes.axhline(target_p99_ms, color="grey", linestyle="--",
                          label=f"target p99 {target_p99_ms:g} ms")  # fmt: skip
    rate_axes.set_xticks(rates, [f"{rate:g}" for rate in rates])  # the offered rates only
    rate_axes.set_yscale("log")
    _plain_log_ticks(rate_axes.yaxis)
    rate_axes.set(xlabel="offered rate (calls/s)", ylabel="p99 latency (ms)",
                  title="p99 vs offered rate")  # fmt: skip
    rate_axes.grid(True, which="major", alpha=0.3)
    _legend(rate_axes)
    return _png(figure)


def _legend(axes: Axes) -> None:
    # A run where every call failed draws nothing; an empty legend would only warn.
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="best")


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _plain_log_ticks(axis: Axis) -> None:
    """Ticks at 1, 2 and 5 times powers of ten, labelled as plain numbers (20, 50, 100)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def _log2_ticks(axes: Axes, values: Sequence[int]) -> None:
    """A base-2 log axis labelled with the swept values themselves (16, 32, 64)."""
    ticks = sorted(set(values))
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, [str(tick) for tick in ticks])
    axes.minorticks_off()
