"""What the ``reranker_server`` fixture yields; imported only when a test uses it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Unpack

from rerank_async import ClientArguments, RerankClient, RetryPolicy, SyncRerankClient
from rerank_async.server import RunningServer, ServerConfig, ServerStats, running_server

__all__ = ["RerankerServer", "start_server"]

# Tests should never wait out a real backoff: retries go again at once unless asked otherwise.
_NO_BACKOFF = RetryPolicy(initial_delay=0.0, max_delay=0.0)


class RerankerServer:
    """A running local reranker server and clients pointed at it.

    Attributes:
        running: The ``RunningServer`` itself (``host``, ``port``, ``config``).
    """

    def __init__(self, running: RunningServer) -> None:
        self.running = running
        self._sync_clients: list[SyncRerankClient] = []

    @property
    def base_url(self) -> str:
        """What a DeepInfra-format client takes as ``base_url``."""
        return self.running.base_url

    @property
    def url(self) -> str:
        """The server's root, the ``base_url`` of the Cohere and TEI dialects."""
        return self.running.url

    @property
    def config(self) -> ServerConfig:
        """The server's settings, marker fields included."""
        return self.running.config

    def stats(self) -> ServerStats:
        """The server's counters (``GET /stats``): requests, documents, status codes, ..."""
        return self.running.stats()

    def reset_stats(self) -> None:
        """Zero the server's counters."""
        self.running.reset_stats()

    def client(self, **options: Unpack[ClientArguments]) -> RerankClient:
        """A new ``RerankClient`` pointed at this server; use it as ``async with``.

        Args:
            options: ``RerankClient`` options; ``base_url`` is this server's and
                backoff waits are zero unless given.
        """
        return RerankClient(**self._with_defaults(options))

    def sync_client(self, **options: Unpack[ClientArguments]) -> SyncRerankClient:
        """A new ``SyncRerankClient`` pointed at this server, closed when the test ends."""
        client = SyncRerankClient(**self._with_defaults(options))
        self._sync_clients.append(client)
        return client

    def _with_defaults(self, options: ClientArguments) -> ClientArguments:
        arguments = ClientArguments(base_url=self.base_url, retry=_NO_BACKOFF)
        arguments.update(options)
        return arguments

    def close(self) -> None:
        for client in self._sync_clients:
            client.close()
        self._sync_clients.clear()

    def __repr__(self) -> str:
        return f"RerankerServer(base_url={self.base_url!r})"


@contextmanager
def start_server(config: ServerConfig | None, fields: dict[str, Any]) -> Iterator[RerankerServer]:
    """Run the server for one test.

    Raises:
        TypeError: A marker field is not a ``ServerConfig`` field (the message names it).
    """
    base = config if config is not None else ServerConfig()
    known = {field.name for field in dataclasses.fields(ServerConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(
            f"@pytest.mark.reranker_server got unknown ServerConfig field(s) {unknown}; "
            f"known: {sorted(known)}"
        )
    with running_server(dataclasses.replace(base, **fields)) as running:
        server = RerankerServer(running)
        try:
            yield server
        finally:
            server.close()
