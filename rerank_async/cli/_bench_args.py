"""The ``rerank-async bench`` flags: grid, open loop, payload, output, and the client's."""

from __future__ import annotations

import argparse
import math
from typing import Final

from ._bench_payloads import parse_doc_tokens
from ._bench_report import report_path
from ._bench_schedule import ARRIVALS
from ._bench_targets import TARGET_SYNTAX, AppendTarget, parse_target
from ._common import add_client_options, add_verbose_option

__all__ = [
    "BENCH_SERVER_DEFAULTS",
    "GRID_DEFAULTS",
    "OPEN_LOOP_CANDIDATES",
    "OPEN_LOOP_DURATION_S",
    "add_bench_arguments",
    "int_list",
    "rate_list",
]

# The local server's behaviour in a bench unless flags say otherwise: a GPU-like
# pool of 8 workers, 15 ms per request plus 0.2 ms per document.
BENCH_SERVER_DEFAULTS: Final = {
    "server_latency_ms": 15.0,
    "server_per_doc_latency_ms": 0.2,
    "server_capacity": 8,
}

# Flags left out take these in a grid sweep; in an open-loop run the sizes are the
# provider's (what an application would use) and a call carries 100 candidates.
GRID_DEFAULTS: Final = {"batch_size": [16, 32, 64], "concurrency": [4, 8, 16], "candidates": [1000]}
OPEN_LOOP_CANDIDATES: Final = 100
OPEN_LOOP_DURATION_S: Final = 10.0


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


def rate_list(text: str) -> list[float]:
    """``"10,20,40"`` -> ``[10.0, 20.0, 40.0]``: calls per second, each > 0, ascending."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected rates > 0 (calls per second), got {text!r}")
    return sorted(set(values))


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench command's own flags (the server flags are added by the caller)."""
    sweep = parser.add_argument_group("grid sweep (closed loop)")
    sweep.add_argument("--batch-size", type=int_list,
                       help="batch sizes to try, comma-separated (16,32,64; with --rate one "
                       "value, default the provider's)")  # fmt: skip
    sweep.add_argument("--concurrency", type=int_list,
                       help="max_concurrency values to try (4,8,16; with --rate one value, "
                       "default the provider's)")  # fmt: skip
    sweep.add_argument(
        "--candidates",
        type=int_list,
        help="documents per call (1000; with --rate one value, default 100)",
    )
    sweep.add_argument("--requests", type=int, default=20, help="calls per cell (%(default)s)")
    sweep.add_argument("--duration", type=float,
                       help="seconds per cell instead of --requests; with --rate, seconds "
                       "per rate (10)")  # fmt: skip
    sweep.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed calls first, per cell or per target (%(default)s)",
    )
    sweep.add_argument("--parallel-calls", type=int, default=1,
                       help="calls in flight at once in a cell (%(default)s)")  # fmt: skip
    open_loop = parser.add_argument_group(
        "open loop", "Calls start on a schedule whether or not earlier ones finished; "
        "latency counts from the scheduled start. See docs/benchmarks.md."
    )  # fmt: skip
    open_loop.add_argument("--rate", dest="rates", type=rate_list, metavar="R[,R2,...]",
                           help="offered calls per second; several make a sweep")  # fmt: skip
    open_loop.add_argument("--arrivals", choices=ARRIVALS, default="poisson",
                           help="arrival process (%(default)s)")  # fmt: skip
    open_loop.add_argument("--target", dest="targets", type=parse_target, action=AppendTarget,
                           metavar=TARGET_SYNTAX,
                           help="an endpoint to measure, repeatable: targets run interleaved "
                           "in one run; each key from its provider's variable unless "
                           "--api-key is given")  # fmt: skip
    open_loop.add_argument("--arrival-seed", type=int, default=0,
                           help="seed of the Poisson arrivals (%(default)s)")  # fmt: skip
    payload = parser.add_argument_group("payload")
    payload.add_argument("--documents", dest="documents_path", metavar="FILE",
                         help="real queries and documents: the bulk command's JSONL or "
                         "Parquet input (default: synthetic)")  # fmt: skip
    payload.add_argument("--doc-tokens", type=parse_doc_tokens, metavar="DIST",
                         help="synthetic document length in tokens: N, LOW-HIGH or "
                         "lognormal:MEDIAN[:SIGMA] (default: short sentences, ~15)")  # fmt: skip
    add_client_options(
        parser, base_url_help="endpoint root (default: start the local server)", sizes=False
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", dest="json_path", metavar="FILE", help="write results as JSON")
    output.add_argument("--plot", metavar="FILE.png", help="plot latency and throughput "
                        "(needs rerank-async[plot])")  # fmt: skip
    output.add_argument("--report", type=report_path, metavar="FILE.html|.md",
                        help="a self-contained report: command, versions, machine, tables "
                        "and plots (plots need rerank-async[plot])")  # fmt: skip
    output.add_argument("--target-p99", type=float, metavar="MS",
                        help="grid: recommend the fastest cell whose call p99 is within MS; "
                        "--rate: report each target's highest rate within MS")  # fmt: skip
    add_verbose_option(parser)
