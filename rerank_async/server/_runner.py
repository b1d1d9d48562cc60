"""Running the local server: in a background thread for tests and benchmarks, or blocking.

`running_server` binds the listening socket itself (port 0 picks a free port) and hands it to
uvicorn, so there is no window in which another process can take the port. Uvicorn runs in
a thread with its own event loop; the context manager waits until it accepts connections
and, on exit, stops it and joins the thread.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, cast

import httpx
import uvicorn

from ._app import INFERENCE_PREFIX, create_app
from ._config import ServerConfig
from ._stats import ServerStats

__all__ = ["RunningServer", "running_server", "serve"]

# Enough for a client opening 500+ connections at once; the kernel caps it at somaxconn.
_BACKLOG: Final = 4096
_STARTUP_TIMEOUT_S: Final = 10.0
# In-flight requests get this long to finish on exit before uvicorn cancels them.
_GRACEFUL_SHUTDOWN_S: Final = 2
_HELPER_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A server started by `running_server`.

    Attributes:
        host: The address it listens on.
        port: The port it listens on (the one picked when 0 was asked for).
        config: Its settings.
    """

    host: str
    port: int
    config: ServerConfig

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client takes as ``base_url``, e.g. ``http://127.0.0.1:41234/v1/inference``."""
        return self.url + INFERENCE_PREFIX

    def stats(self) -> ServerStats:
        """Fetch ``GET /stats`` (a blocking call; the server runs in another thread).

        Returns:
            The server's counters.
        """
        response = httpx.get(self.url + "/stats", timeout=_HELPER_TIMEOUT_S)
        response.raise_for_status()
        return cast("ServerStats", response.json())

    def reset_stats(self) -> None:
        """Zero the server's counters with ``POST /stats/reset`` (a blocking call)."""
        httpx.post(self.url + "/stats/reset", timeout=_HELPER_TIMEOUT_S).raise_for_status()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted
    # connections only when sock.proto == IPPROTO_TCP (base_events._set_nodelay), and without
    # it Nagle's algorithm meets delayed ACKs and every response waits ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def running_server(
    config: ServerConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningServer]:
    """Run the server in a background thread for the duration of a ``with`` block.

    Usable from sync and async tests alike: the server has its own thread and event loop.
    Uvicorn logs only warnings and errors, to the ``uvicorn.*`` loggers; logging is not
    configured.

    Args:
        config: The server settings; ``ServerConfig()`` by default.
        host: The address to listen on.
        port: The port to listen on; ``0`` picks a free one.

    Yields:
        The running server, with its ``base_url``.

    Raises:
        RuntimeError: If the server does not start within 10 seconds.
        OSError: If the address cannot be bound.
    """
    cfg = config if config is not None else ServerConfig()
    sock = _bind(host, port)
    try:
        uv_config = uvicorn.Config(
            create_app(cfg),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=_BACKLOG,
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        )
        server = uvicorn.Server(uv_config)
        errors: list[BaseException] = []

        def run() -> None:
            # Keep a crash inside the thread from reaching threading.excepthook; it is
            # re-raised (as the cause) in the caller's thread.
            try:
                server.run(sockets=[sock])
            except BaseException as err:
                errors.append(err)

        bound_port: int = sock.getsockname()[1]
        thread = threading.Thread(target=run, name=f"rerank-async-server:{bound_port}")
        thread.start()
        try:
            deadline = time.monotonic() + _STARTUP_TIMEOUT_S
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    msg = f"the reranker server on {host}:{bound_port} did not start"
                    if errors:
                        raise RuntimeError(msg) from errors[0]
                    raise RuntimeError(msg)
                time.sleep(0.002)
            yield RunningServer(host=host, port=bound_port, config=cfg)
        finally:
            server.should_exit = True
            thread.join(timeout=_GRACEFUL_SHUTDOWN_S + 3.0)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout=3.0)
    finally:
        sock.close()


def serve(
    config: ServerConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
) -> None:
    """Run the server in the foreground until interrupted (``rerank-async serve``).

    Uvicorn configures its own logging and prints its startup line at ``info``; access logs
    are off (a benchmark sends thousands of requests).

    Args:
        config: The server settings; ``ServerConfig()`` by default.
        host: The address to listen on.
        port: The port to listen on.
        log_level: Uvicorn's log level: ``"critical"`` ... ``"debug"``, or ``"trace"``.
    """
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        backlog=_BACKLOG,
    )
