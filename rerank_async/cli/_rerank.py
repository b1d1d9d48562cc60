"""``rerank-async rerank``: rank documents from arguments, a file or stdin."""

from __future__ import annotations

import argparse
import json
import sys

import anyio

from .._client import RerankClient
from .._models import RerankResult
from ._common import add_client_options, add_verbose_option, client_from_args
from ._output import ranked_table, stdout_console

__all__ = ["read_documents", "register", "run_rerank"]

BASE_URL_HELP = "endpoint root (default: $RERANK_ASYNC_BASE_URL, else the provider's)"


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``rerank`` command's flags and handler to its ``parser``."""
    parser.add_argument("query", help="the search query")
    parser.add_argument(
        "documents", nargs="*", help="documents as arguments (or use --file, or pipe them in)"
    )
    parser.add_argument(
        "-f",
        "--file",
        help="documents file: one per line, or a JSON array of strings; '-' reads stdin",
    )
    parser.add_argument("-k", "--top-k", type=int, help="show only the best K")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_client_options(parser, base_url_help=BASE_URL_HELP, replicas=True)
    add_verbose_option(parser)
    parser.set_defaults(handler=run_rerank)


def run_rerank(args: argparse.Namespace) -> int:
    """Rank the documents and print a table, or JSON with ``--json``."""
    documents = read_documents(args.documents, args.file)
    client = client_from_args(args)
    result = anyio.run(_rerank, client, args.query, documents, args.top_k)
    if args.json:
        print(json.dumps(result.model_dump(), ensure_ascii=False))
    else:
        console = stdout_console()
        console.print(ranked_table(result, width=console.width))
    return 0


async def _rerank(
    client: RerankClient, query: str, documents: list[str], top_k: int | None
) -> RerankResult:
    async with client:
        return await client.rerank(query, documents, top_k=top_k)


def read_documents(arguments: list[str], path: str | None) -> list[str]:
    """Documents from the command line, a file, or stdin (when piped).

    A file holds one document per line (blank lines skipped), or a JSON array
    of strings.

    Raises:
        ValueError: No documents anywhere, or both arguments and a file.
        OSError: The file cannot be read.
    """
    if arguments and path is not None:
        raise ValueError("give documents as arguments or with --file, not both")
    if arguments:
        return list(arguments)
    if path is None and sys.stdin.isatty():
        raise ValueError("no documents: pass them as arguments, with --file, or on stdin")
    if path is None or path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    return _parse_documents(text, path or "stdin")


def _parse_documents(text: str, source: str) -> list[str]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except ValueError as error:
            raise ValueError(f"{source}: not a valid JSON array: {error}") from error
        if not isinstance(parsed, list) or not all(isinstance(d, str) for d in parsed):
            raise ValueError(f"{source}: the JSON array must hold strings only")
        return parsed
    documents = [line.strip() for line in text.splitlines() if line.strip()]
    if not documents:
        raise ValueError(f"{source}: no documents found")
    return documents
