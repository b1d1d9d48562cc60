"""Transports: one batch, one POST, through a chain chosen once per client.

One entry point, ``open_transport`` (``engines.py``), which builds the chain:

    engines.py         the engine choice ("auto": aiohttp on asyncio, httpx elsewhere)
    base.py            BatchSender, Transport: send, map every failure, decode
    httpx_engine.py    the httpx engine (also a caller's http_client)
    aiohttp_engine.py  the aiohttp engine, imported only when chosen
    environment.py     proxies and TLS trust from the environment, httpx's rules
    observe.py         ObservedTransport: ``on_request`` as a wrapper
    body.py            the response size limit and the bounded body reader
    rate_limit_headers.py  x-ratelimit-* / RateLimit-* headers to a wait
"""

from .base import BatchRequest, BatchSender
from .engines import OpenTransport, open_transport

__all__ = ["BatchRequest", "BatchSender", "OpenTransport", "open_transport"]
