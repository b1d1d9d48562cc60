"""The httpx engine: the client's own ``httpx.AsyncClient``, or a caller's ``http_client``.

Used under trio, with ``http_client=``, behind HTTPS or SOCKS proxies, and when chosen
(``http_engine="httpx"``); aiohttp sends on asyncio otherwise (``aiohttp_engine.py``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx._client import UseClientDefault

from .base import (
    STALE_CONNECTION_RETRIES,
    BatchRequest,
    Endpoint,
    Reply,
    TimeoutTypes,
    Transport,
    attempt_deadline,
)

__all__ = ["HttpxTransport"]

logger = logging.getLogger("rerank_async")


class _ConnectionTrace:
    """httpcore's trace hook for one attempt: was it sent, and on a new connection?

    httpcore reports ``connection.connect_tcp`` only when it opens a connection, so a
    request whose headers went out without it rode a pooled keep-alive connection.
    """

    __slots__ = ("new_connection", "sent")

    def __init__(self) -> None:
        self.new_connection = False
        self.sent = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.started":
            self.new_connection = True
        elif event == "http11.send_request_headers.started":
            self.sent = True

    def stale(self, error: httpx.RequestError) -> bool:
        """Whether ``error`` is a reused connection's, before any byte of an answer.

        ``client.send`` raised it, so no response head arrived: the server closed the
        connection as the request went out (reset while writing or reading, or closed
        "without sending a response").
        """
        return (
            self.sent
            and not self.new_connection
            and isinstance(error, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError)
        )


async def _one_chunk(content: bytes) -> AsyncIterator[bytes]:
    yield content


class HttpxTransport(Transport):
    """Sends through an ``httpx.AsyncClient``, the caller's or our own."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        http_client: httpx.AsyncClient,
        owns_client: bool,
        timeout: TimeoutTypes,
    ) -> None:
        effective = http_client.timeout if isinstance(timeout, UseClientDefault) else timeout
        super().__init__(endpoint, response_timeout=attempt_deadline(effective))
        self.http_client = http_client
        self._owns_client = owns_client
        self._timeout = timeout
        # Parsed once: httpx would otherwise parse the URL string on every request.
        self._parsed_url = httpx.URL(endpoint.url)

    async def _post(self, batch: BatchRequest) -> Reply:
        client = self.http_client
        if client.is_closed:  # a caller's own client, closed under us: httpx's RuntimeError
            raise self._closed_error(batch)
        for resends_left in range(STALE_CONNECTION_RETRIES, -1, -1):
            trace = _ConnectionTrace()
            request = client.build_request(
                "POST",
                self._parsed_url,
                content=batch.body,
                headers=self._headers_for(batch),
                timeout=self._timeout,
                extensions={"trace": trace},
            )
            try:
                # Streamed, so that the body is read raw and inflated under the size cap.
                response = await client.send(request, stream=True)
            except httpx.TimeoutException as error:
                raise self._connection_error(batch, error, timed_out=True) from error
            except httpx.RequestError as error:
                if resends_left and trace.stale(error):
                    logger.debug("resending on another connection after %r", error)
                    continue
                raise self._connection_error(batch, error, timed_out=False) from error
            return await self._read_reply(batch, response)
        raise AssertionError("unreachable: the last pass returns or raises")  # pragma: no cover

    async def _read_reply(self, batch: BatchRequest, response: httpx.Response) -> Reply:
        try:
            try:
                if response.is_stream_consumed:
                    # A mock transport's answer: already in memory, and already decoded.
                    encoding, chunks = None, _one_chunk(response.content)
                else:
                    encoding, chunks = (
                        response.headers.get("content-encoding"),
                        response.aiter_raw(),
                    )
                content, problem = await self._read_body(
                    batch, response.status_code, encoding, chunks
                )
            finally:
                await response.aclose()
        except httpx.TimeoutException as error:
            raise self._connection_error(batch, error, timed_out=True) from error
        except httpx.RequestError as error:
            raise self._connection_error(batch, error, timed_out=False) from error
        return Reply(
            response.status_code, response.headers, content, response.reason_phrase, problem
        )

    async def aclose(self) -> None:
        self.closed = True
        if self._owns_client:
            await self.http_client.aclose()
