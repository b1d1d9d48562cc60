"""Transport construction: the chosen engine, then the wrappers around it."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ._config import NotGiven, ResolvedConfig
from ._constants import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from ._models import RequestRecord
from ._observe import ObservedTransport
from ._transport import BatchSender, Endpoint, HttpxTransport, TimeoutTypes, Transport

__all__ = ["open_transport"]


def open_transport(
    config: ResolvedConfig, *, on_request: Callable[[RequestRecord], None] | None
) -> BatchSender:
    """The sender a client uses: its engine, observed when ``on_request`` is given.

    The wrapper chain is built here and only here, outermost last.
    """
    sender: BatchSender = _open_engine(config)
    if on_request is not None:
        sender = ObservedTransport(sender, model=config.options.model, on_request=on_request)
    return sender


def _open_engine(config: ResolvedConfig) -> Transport:
    options = config.options
    endpoint = Endpoint(
        provider=config.provider,
        url=options.url,
        model=options.model,
        headers=config.headers,
        api_key=config.api_key,
    )
    default_timeout = httpx.Timeout(DEFAULT_TIMEOUT, connect=DEFAULT_CONNECT_TIMEOUT)
    timeout = config.timeout
    if config.http_engine == "aiohttp":
        from ._aiohttp_transport import AiohttpTransport  # the optional extra

        return AiohttpTransport(
            endpoint,
            max_connections=options.max_concurrency,
            timeout=default_timeout if isinstance(timeout, NotGiven) else timeout,
        )
    http_client = config.http_client
    request_timeout: TimeoutTypes
    if isinstance(timeout, NotGiven):
        # A caller's client keeps its own timeout unless one is given here.
        request_timeout = httpx.USE_CLIENT_DEFAULT if http_client is not None else default_timeout
    else:
        request_timeout = timeout
    own_client = http_client is None
    client = http_client or httpx.AsyncClient(
        # The limiter already bounds requests in flight, so a pool of the same
        # size never makes a request wait for a connection (no PoolTimeout).
        limits=httpx.Limits(
            max_connections=options.max_concurrency,
            max_keepalive_connections=options.max_concurrency,
        ),
        timeout=default_timeout,
        follow_redirects=False,
    )
    return HttpxTransport(
        endpoint, http_client=client, owns_client=own_client, timeout=request_timeout
    )
