"""The ``rerank-async bench`` flags: the sweep and output groups, and the shared client flags."""

from __future__ import annotations

import argparse
from typing import Final

from ._common import add_client_options, add_verbose_option

__all__ = ["BENCH_SERVER_DEFAULTS", "add_bench_arguments", "int_list"]

# The local server's behaviour in a bench unless flags say otherwise: a GPU-like
# pool of 8 workers, 15 ms per request plus 0.2 ms per document.
BENCH_SERVER_DEFAULTS: Final = {
    "server_latency_ms": 15.0,
    "server_per_doc_latency_ms": 0.2,
    "server_capacity": 8,
}


def int_list(text: str) -> list[int]:
    """``"16,32,64"`` -> ``[16, 32, 64]``; every value must be >= 1."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench command's own flags (the server flags are added by the caller)."""
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--batch-size", type=int_list, default=[16, 32, 64],
                       help="batch sizes to try, comma-separated (%(default)s)")  # fmt: skip
    sweep.add_argument("--concurrency", type=int_list, default=[4, 8, 16],
                       help="max_concurrency values to try (%(default)s)")  # fmt: skip
    sweep.add_argument("--candidates", type=int_list, default=[1000],
                       help="documents per call (%(default)s)")  # fmt: skip
    sweep.add_argument("--requests", type=int, default=20, help="calls per cell (%(default)s)")
    sweep.add_argument("--duration", type=float, help="seconds per cell, instead of --requests")
    sweep.add_argument("--warmup", type=int, default=2, help="untimed calls first (%(default)s)")
    sweep.add_argument("--parallel-calls", type=int, default=1,
                       help="calls in flight at once in a cell (%(default)s)")  # fmt: skip
    add_client_options(
        parser, base_url_help="endpoint root (default: start the local server)", sizes=False
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", dest="json_path", metavar="FILE", help="write results as JSON")
    output.add_argument("--plot", metavar="FILE.png", help="plot latency and throughput "
                        "(needs rerank-async[plot])")  # fmt: skip
    output.add_argument("--target-p99", type=float, metavar="MS",
                        help="report the fastest cell whose call p99 is within MS")  # fmt: skip
    add_verbose_option(parser)
