"""Argument parsing and dispatch for ``rerank-async``; every failure becomes one line on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Final

from .._constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_INITIAL_DELAY,
)
from .._exceptions import RerankError
from .._version import __version__
from ._bench_args import BENCH_SERVER_DEFAULTS, add_bench_arguments

if TYPE_CHECKING:
    from ..server import ServerConfig

__all__ = ["MissingExtraError", "build_parser", "main", "server_config_from"]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

# The local server's behaviour in the demo unless flags say otherwise: a small
# GPU-like worker pool with a per-document cost, so batching shows its effect.
DEMO_SERVER_DEFAULTS: Final = {
    "server_latency_ms": 15.0,
    "server_per_doc_latency_ms": 0.1,
    "server_jitter_ms": 3.0,
    "server_capacity": 16,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rerank-async``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MissingExtraError as error:
        print(f"rerank-async: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RerankError, OSError, ValueError, TypeError) as error:
        print(f"rerank-async: error: {one_line(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return code


class MissingExtraError(RuntimeError):
    """An optional dependency of the command is not installed."""


def one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.strerror or text}: {error.filename}"
    return " ".join(text.split())


def _configure_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    level = logging.INFO if verbosity == 1 else logging.DEBUG
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("rerank_async").setLevel(level)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    rich's live progress display swaps ``sys.stderr`` for a proxy that prints
    above the bar; a handler holding the original stream would garble it.
    """

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("client")
    group.add_argument(
        "--base-url",
        help="endpoint root (default: $RERANK_ASYNC_BASE_URL, else the provider's; "
        "demo: the embedded local server)",
    )
    group.add_argument("--model", help="model name (default: $RERANK_ASYNC_MODEL, else "
                       "cross-encoder/ms-marco-MiniLM-L-12-v2)")  # fmt: skip
    group.add_argument(
        "--api-key", help="API key (default: $DEEPINFRA_TOKEN, then $DEEPINFRA_API_KEY)"
    )
    group.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="most documents per request"
    )
    group.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_MAX_CONCURRENCY,
        help="most requests in flight",
    )
    group.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES)
    group.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v retries, -vv requests"
    )


def _add_server_options(parser: argparse.ArgumentParser, *, api_key_flag: str) -> None:
    # One flag per ServerConfig field, named after it, so the two never drift apart.
    from ..server import ServerConfig  # the server extra is needed by these commands only

    group = parser.add_argument_group("local server")
    for field in fields(ServerConfig):
        help_text = field.metadata.get("help")
        if field.name == "known_models":
            group.add_argument("--known-model", dest="known_models", action="append",
                               metavar="MODEL", help=f"{help_text} Repeatable.")  # fmt: skip
            continue
        kind = {"api_key": str, "capacity": int, "max_batch_size": int, "seed": int}.get(
            field.name, float
        )
        flag = api_key_flag if field.name == "api_key" else f"--{field.name.replace('_', '-')}"
        group.add_argument(flag, dest=f"server_{field.name}", type=kind, default=field.default,
                           metavar=field.name.upper(), help=help_text)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The full ``rerank-async`` parser."""
    parser = argparse.ArgumentParser(
        prog="rerank-async",
        description="Async reranking client: score documents against a query with a reranker API.",
    )
    parser.add_argument("--version", action="version", version=f"rerank-async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rerank = commands.add_parser("rerank", help="rank documents against a query")
    rerank.add_argument("query", help="the search query")
    rerank.add_argument(
        "documents", nargs="*", help="documents as arguments (or use --file, or pipe them in)"
    )
    rerank.add_argument(
        "-f",
        "--file",
        help="documents file: one per line, or a JSON array of strings; '-' reads stdin",
    )
    rerank.add_argument("-k", "--top-k", type=int, help="show only the best K")
    rerank.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_client_options(rerank)
    rerank.set_defaults(handler=_run_rerank)

    demo = commands.add_parser(
        "demo", help="rerank examples on the embedded local server and report speed"
    )
    demo.add_argument("--documents", type=int, default=5000, help="synthetic documents in all")
    demo.add_argument(
        "--queries", type=int, default=20, help="concurrent queries they are split over"
    )
    _add_client_options(demo)
    demo.set_defaults(handler=_run_demo)

    bulk = commands.add_parser(
        "bulk",
        help="rerank a JSONL file of requests, resumably, with progress and a summary",
        description='Rerank every request of a JSONL file ({"id"?, "query", "documents", '
        '"top_k"?} per line) into a JSONL output, one record per request. A rerun resumes: '
        "ids already in the output are skipped. See docs/bulk.md.",
    )
    bulk.add_argument("input", help="requests, one JSON object per line; '-' reads stdin")
    bulk.add_argument("-o", "--output", required=True, help="records file (appended to, resumed)")
    bulk.add_argument(
        "--retry-failed",
        action="store_true",
        help="drop the output's error records first, so their lines run again",
    )
    bulk.add_argument("-k", "--top-k", type=int, help="top_k of lines that give none")
    bulk.add_argument(
        "--max-pending", type=int, help="requests held at once (default: 4 x --concurrency)"
    )
    bulk.add_argument(
        "--retry-initial-delay",
        type=float,
        default=DEFAULT_RETRY_INITIAL_DELAY,
        help="backoff ceiling after a first failure, seconds (%(default)s; 0: retry at once)",
    )
    bulk.add_argument("--json-summary", metavar="FILE", help="also write the summary as JSON")
    bulk.add_argument(
        "--part-rows",
        type=int,
        default=10_000,
        metavar="N",
        help="Parquet output: records per part file, at most (%(default)s)",
    )
    bulk.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary table"
    )
    _add_bulk_ray_options(bulk)
    _add_client_options(bulk)
    bulk.set_defaults(handler=_run_bulk)

    bench = commands.add_parser(
        "bench",
        help="benchmark an endpoint: sweep batch size x concurrency x candidates",
        description="Benchmark a reranker endpoint (the local server when no --base-url is "
        "given) over a grid of batch sizes, concurrency limits and candidate counts. "
        "See docs/benchmarks.md.",
    )
    add_bench_arguments(bench)
    bench.set_defaults(handler=_run_bench)

    serve = commands.add_parser("serve", help="run the local DeepInfra-compatible reranker server")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (%(default)s)")
    serve.add_argument("-v", "--verbose", action="count", default=0)
    serve.set_defaults(handler=_run_serve, server_options=True)
    try:
        _add_server_options(serve, api_key_flag="--api-key")
        _add_server_options(demo, api_key_flag="--server-api-key")
        demo.set_defaults(**DEMO_SERVER_DEFAULTS)
        _add_server_options(bench, api_key_flag="--server-api-key")
        bench.set_defaults(**BENCH_SERVER_DEFAULTS)
    except ImportError:
        # Without the server extra, serve and demo explain what to install when run.
        pass
    return parser


def _run_rerank(args: argparse.Namespace) -> int:
    try:
        from ._rerank import run_rerank
    except ImportError as error:
        raise MissingExtraError(f"{error}: install rerank-async[cli]") from error
    return run_rerank(args)


def _add_bulk_ray_options(bulk: argparse.ArgumentParser) -> None:
    group = bulk.add_argument_group("Ray Data (docs/distributed.md)")
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


def _run_bulk(args: argparse.Namespace) -> int:
    if args.ray:
        try:
            from ._bulk_ray import run_bulk_ray
        except ImportError as error:
            raise MissingExtraError(f"{error}: install rerank-async[cli,ray]") from error
        return run_bulk_ray(args)
    try:
        from ._bulk import run_bulk
    except ImportError as error:
        raise MissingExtraError(f"{error}: install rerank-async[cli]") from error
    return run_bulk(args)


def _run_bench(args: argparse.Namespace) -> int:
    try:
        from ._bench import run_bench
    except ImportError as error:
        raise MissingExtraError(f"{error}: install rerank-async[cli,server]") from error
    return run_bench(args)


def _run_demo(args: argparse.Namespace) -> int:
    try:
        from ._demo import run_demo
    except ImportError as error:
        raise MissingExtraError(f"{error}: install rerank-async[cli,server]") from error
    return run_demo(args)


def _run_serve(args: argparse.Namespace) -> int:
    config = server_config_from(args)
    from ..server import serve

    serve(config, host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def server_config_from(args: argparse.Namespace) -> ServerConfig:
    """A ``ServerConfig`` from the ``--latency-ms``-style flags.

    Raises:
        MissingExtraError: The server extra is not installed.
    """
    try:
        from ..server import ServerConfig
    except ImportError as error:
        raise MissingExtraError(str(error)) from error
    values: dict[str, Any] = {
        field.name: getattr(args, f"server_{field.name}", field.default)
        for field in fields(ServerConfig)
        if field.name != "known_models"
    }
    return ServerConfig(known_models=getattr(args, "known_models", None), **values)
