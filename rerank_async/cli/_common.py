"""What every command shares: exit codes, one-line errors, client and server options.

A leaf of the CLI: subcommands and ``_main`` import it, it imports none of them
(openai's ``cli/_utils.py``). Nothing here needs an optional extra at import time.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Final, Unpack

from .._client import ClientArguments, RerankClient
from .._constants import DEFAULT_MAX_RETRIES
from ..providers import provider_names

if TYPE_CHECKING:
    from ..server import ServerConfig

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MissingExtraError",
    "add_client_options",
    "add_server_options",
    "add_verbose_option",
    "base_url_of",
    "client_arguments",
    "client_from_args",
    "one_line",
    "server_config_from",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

DEFAULT_REQUEST_TIMEOUT_S: Final = 60.0


class MissingExtraError(RuntimeError):
    """An optional dependency of the command is not installed."""


def one_line(error: BaseException) -> str:
    """An error as one line of text, for stderr and error records."""
    text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.strerror or text}: {error.filename}"
    return " ".join(text.split())


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """``-v`` / ``-vv``: retries at INFO, each request at DEBUG."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v retries, -vv requests"
    )


def add_client_options(
    parser: argparse.ArgumentParser,
    *,
    base_url_help: str,
    sizes: bool = True,
    replicas: bool = False,
) -> None:
    """The client's flags, one definition for every command.

    Sizes default to ``None``: the provider decides (DeepInfra: 64 per request,
    32 in flight; others have their own).

    Args:
        parser: The command's parser.
        base_url_help: What ``--base-url`` defaults to for this command.
        sizes: Add ``--batch-size`` and ``--concurrency`` (``bench`` sweeps its own).
        replicas: ``--base-url`` may be repeated, once per replica of the model.
    """
    group = parser.add_argument_group("client")
    if replicas:
        group.add_argument(
            "--base-url",
            action="append",
            help=base_url_help + "; repeat it for replicas of one model",
        )
    else:
        group.add_argument("--base-url", help=base_url_help)
    group.add_argument(
        "--provider",
        default="deepinfra",
        type=str.lower,
        choices=provider_names(),
        help="wire format of the endpoint (%(default)s)",
    )
    group.add_argument(
        "--model", help="model name (default: $RERANK_ASYNC_MODEL, else the provider's)"
    )
    group.add_argument(
        "--api-key",
        help="API key (default: the provider's variable, e.g. $DEEPINFRA_TOKEN)",
    )
    if sizes:
        group.add_argument(
            "--batch-size",
            type=int,
            help="most documents per request (default: the provider's; DeepInfra 64)",
        )
        group.add_argument(
            "--concurrency",
            type=int,
            help="most requests in flight (default: the provider's; DeepInfra 32)",
        )
    group.add_argument("--max-retries", type=int, default=DEFAULT_MAX_RETRIES)
    group.add_argument(
        "--timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT_S, help="per request, seconds"
    )
    group.add_argument(
        "--engine",
        choices=["auto", "httpx", "aiohttp"],
        default="auto",
        help="HTTP engine of the client: %(default)s is aiohttp on asyncio (the CLI's loop)",
    )


def client_arguments(args: argparse.Namespace) -> ClientArguments:
    """``RerankClient``'s arguments from the ``add_client_options`` flags."""
    arguments = ClientArguments(
        provider=args.provider,
        model=args.model,
        api_key=args.api_key,
        base_url=base_url_of(args),
        max_retries=args.max_retries,
        timeout=args.timeout,
        http_client=args.engine,
    )
    if getattr(args, "batch_size", None) is not None:
        arguments["batch_size"] = args.batch_size
    if getattr(args, "concurrency", None) is not None:
        arguments["max_concurrency"] = args.concurrency
    return arguments


def client_from_args(
    args: argparse.Namespace, **overrides: Unpack[ClientArguments]
) -> RerankClient:
    """A client from the ``add_client_options`` flags, plus ``overrides`` (which win)."""
    arguments = client_arguments(args)
    arguments.update(overrides)
    if arguments.get("base_url") is None:
        arguments["base_url"] = base_url_of(args)
    return RerankClient(**arguments)


def base_url_of(args: argparse.Namespace) -> str | list[str] | None:
    """``--base-url``: one root, or a list when repeated for replicas."""
    base_url: str | list[str] | None = args.base_url
    if isinstance(base_url, list) and len(base_url) == 1:
        return base_url[0]
    return base_url


def add_server_options(parser: argparse.ArgumentParser, *, api_key_flag: str) -> None:
    """One flag per ``ServerConfig`` field, named after it, so the two never drift apart.

    Raises:
        ImportError: The server extra is not installed.
    """
    from ..server import ServerConfig  # the server extra is needed by these commands only

    group = parser.add_argument_group("local server")
    for field in fields(ServerConfig):
        help_text = field.metadata.get("help")
        if field.name == "known_models":
            group.add_argument("--known-model", dest="known_models", action="append",
                               metavar="MODEL", help=f"{help_text} Repeatable.")  # fmt: skip
            continue
        flag = api_key_flag if field.name == "api_key" else f"--{field.name.replace('_', '-')}"
        if field.type in (bool, "bool"):
            group.add_argument(flag, dest=f"server_{field.name}", action="store_true",
                               default=field.default, help=help_text)  # fmt: skip
            continue
        kind = {"api_key": str, "capacity": int, "max_batch_size": int, "seed": int,
                "max_in_flight": int}.get(field.name, float)  # fmt: skip
        group.add_argument(flag, dest=f"server_{field.name}", type=kind, default=field.default,
                           metavar=field.name.upper(), help=help_text)  # fmt: skip


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
