"""``rerank-async bulk``'s flags, and the checks of their values made before anything runs."""

from __future__ import annotations

import argparse
import contextlib
import os

from .._constants import DEFAULT_RETRY_INITIAL_DELAY
from ._bulk_files import special_file_problem
from ._common import add_client_options, add_verbose_option

__all__ = ["add_arguments", "usage_problem"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every flag of ``bulk`` to its ``parser`` (the handler is the caller's)."""
    parser.description = (
        'Rerank every request of a JSONL file ({"id"?, "query", "documents", '
        '"top_k"?} per line) into a JSONL output, one record per request. A rerun resumes: '
        "lines whose record in the output still answers them (same id, same fingerprint) are "
        "skipped, changed ones scored again; an existing file that bulk did not write is never "
        "changed. Parquet in and out by extension (extra parquet); --ray runs the job on Ray "
        "Data (extra ray). See docs/bulk.md and docs/distributed.md."
    )
    parser.add_argument("input", help="requests, one JSON object per line; '-' reads stdin")
    parser.add_argument("-o", "--output", required=True, help="records file (appended to, resumed)")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="drop the output's error records first, so their lines run again",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output, even one bulk did not write, instead of resuming it",
    )
    parser.add_argument(
        "--strict-resume",
        action="store_true",
        help="exit 1 naming the records whose input line changed, instead of rescoring them",
    )
    parser.add_argument("-k", "--top-k", type=int, help="top_k of lines that give none")
    parser.add_argument(
        "--cache",
        metavar="FILE",
        help="keep scores in this SQLite file and reuse them across runs (docs/fleet.md)",
    )
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
        parser,
        base_url_help="endpoint root (default: $RERANK_ASYNC_BASE_URL, else the provider's)",
        replicas=True,
    )
    add_verbose_option(parser)


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


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags of a local (not ``--ray``) run, or ``None``."""
    if args.output == "-":
        return "--output must be a file: a rerun reads it back to resume"
    special = special_file_problem(args.output)
    if special is not None:
        return special
    if args.overwrite and args.retry_failed:
        return "--overwrite starts the output afresh: --retry-failed has nothing to retry"
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
