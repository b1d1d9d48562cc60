"""The local server a bench measures when no endpoint is named: its own process, on loopback.

A separate process, so that the client's and the server's CPU do not share one interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import Final

import httpx
from rich.console import Console

from ._common import server_config_from

__all__ = ["local_endpoint"]

_SERVER_START_TIMEOUT_S: Final = 15.0


@contextlib.contextmanager
def local_endpoint(args: argparse.Namespace, console: Console) -> Iterator[str]:
    """Start ``rerank-async serve`` with the server flags in ``args``; yields its base URL."""
    config = server_config_from(args)  # the server extra, only for the local server
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "rerank_async.cli", "serve", "--port", str(port)]
    for config_field in fields(config):
        value = getattr(config, config_field.name)
        if value == config_field.default or config_field.name in ("known_models", "api_key"):
            continue
        command += [f"--{config_field.name.replace('_', '-')}", str(value)]
    console.print(f"local server: {' '.join(command[3:])}")
    # Our own interpreter and module with flags built from ServerConfig: no untrusted input.
    process = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, process)
        yield f"{url}/v1/inference"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OSError(f"the local server exited with status {process.returncode} at start-up")
        try:
            httpx.get(f"{url}/healthz", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise OSError(f"the local server did not start within {_SERVER_START_TIMEOUT_S:g} s")
