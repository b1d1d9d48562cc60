"""``rerank-async serve``: the local reference server in the foreground."""

from __future__ import annotations

import argparse
import contextlib

from ._common import EXIT_OK, add_server_options, server_config_from

__all__ = ["register", "run_serve"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` command's flags and handler to its ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (%(default)s)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.set_defaults(handler=run_serve)
    with contextlib.suppress(ImportError):  # without the server extra, run_serve says so
        add_server_options(parser, api_key_flag="--api-key")


def run_serve(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    config = server_config_from(args)
    from ..server import serve

    serve(config, host=args.host, port=args.port, log_level="info")
    return EXIT_OK
