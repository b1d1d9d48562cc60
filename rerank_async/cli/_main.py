"""``rerank-async``: a lazy dispatch table; every failure becomes one line on stderr.

The table below names every command once. Each command's module fills in its own
parser (``register(parser)``: flags, description, handler) and is imported only
when that command runs, so ``rerank-async serve`` never loads rich and a missing
extra is reported for the one command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

from .._exceptions import RerankError
from .._version import __version__
from ._common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, MissingExtraError, one_line

__all__ = ["build_parser", "main"]


@dataclass(frozen=True, slots=True)
class _Command:
    module: str  # relative to this package; defines register(parser)
    help: str
    extra: str  # what to install when the module cannot be imported


_COMMANDS: Final = {
    "rerank": _Command("._rerank", "rank documents against a query", "rerank-async[cli]"),
    "demo": _Command(
        "._demo",
        "rerank examples on the embedded local server and report speed",
        "rerank-async[cli,server]",
    ),
    "bulk": _Command(
        "._bulk",
        "rerank a JSONL file of requests, resumably, with progress and a summary",
        "rerank-async[cli]",
    ),
    "bench": _Command(
        "._bench",
        "benchmark an endpoint: sweep batch size x concurrency x candidates",
        "rerank-async[cli,server]",
    ),
    "serve": _Command(
        "._serve", "run the local DeepInfra-compatible reranker server", "rerank-async[server]"
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rerank-async``; returns the process exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(arguments)
    args = parser.parse_args(arguments)
    args.argv = arguments  # the command as typed, for reports that record it
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


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The ``rerank-async`` parser, with the full flags of the command ``argv`` names.

    Every command is listed; only the chosen one's module is imported to add
    its flags.
    """
    parser = argparse.ArgumentParser(
        prog="rerank-async",
        description="Async reranking client: score documents against a query with a reranker API.",
    )
    parser.add_argument("--version", action="version", version=f"rerank-async {__version__}")
    parser.set_defaults(verbose=0)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((token for token in argv if not token.startswith("-")), None)
    for name, command in _COMMANDS.items():
        subparser = commands.add_parser(name, help=command.help)
        if name != chosen:
            continue
        try:
            module = importlib.import_module(command.module, __package__)
        except ImportError as error:
            _add_unavailable(subparser, command, error)
            continue
        module.register(subparser)
    return parser


def _add_unavailable(stub: argparse.ArgumentParser, command: _Command, error: ImportError) -> None:
    """A command whose extra is missing: any arguments, and a message saying what to install."""
    stub.add_argument("rest", nargs=argparse.REMAINDER)

    def explain(args: argparse.Namespace) -> NoReturn:
        raise MissingExtraError(f"{error}: install {command.extra}") from error

    stub.set_defaults(handler=explain)


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
