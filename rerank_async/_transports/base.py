"""One batch, one POST: send it, map every failure to a typed error, decode the body.

The HTTP engine is swappable: httpx (``httpx_engine.py``, also for a caller's own
client) or aiohttp (``aiohttp_engine.py``, the lowest CPU cost per request); what a
caller sees is the same on both, and lives here.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import anyio
import httpx
from httpx._client import UseClientDefault

from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    NotFoundError,
    RateLimitError,
    RerankError,
    ResponseTimeoutError,
    ResponseTooLargeError,
    ResponseValidationError,
    ServerError,
)
from .._retry import parse_retry_after
from .._secrets import Redactor
from ..providers import BatchScores, Provider
from .body import ACCEPT_ENCODING, BodyReader, BodyTooLarge, response_size_limit
from .rate_limit_headers import seconds_until_reset

__all__ = [
    "STALE_CONNECTION_RETRIES",
    "BatchRequest",
    "BatchSender",
    "Endpoint",
    "Reply",
    "TimeoutTypes",
    "Transport",
    "attempt_deadline",
]

# What httpx accepts as a per-request timeout; UseClientDefault defers to the client.
TimeoutTypes = httpx.Timeout | float | None | UseClientDefault

logger = logging.getLogger("rerank_async")

# An attempt that failed on a reused keep-alive connection before any byte of an answer
# (the server closed it as the request went out, so it never processed the request) is
# sent again at once, inside the engine: it is no retry of the caller's, draws nothing
# from the retry budget and says nothing about load. Each resend may meet another stale
# pooled connection; a failure on a new connection is final.
STALE_CONNECTION_RETRIES: Final = 2

_STATUS_ERRORS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One encoded batch and where its documents sit in the call.

    Attributes:
        body: The encoded JSON body, built once and reused by every retry.
        n_documents: Documents in the batch.
        document_range: ``(start, stop)`` in the caller's document indices.
    """

    body: bytes
    n_documents: int
    document_range: tuple[int, int]
    # Headers of this attempt only (a signature over ``body``), added to the endpoint's.
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The parts of an HTTP answer the client needs, whatever the engine.

    Attributes:
        body_problem: Why the body could not be decoded (an unknown or corrupt
            ``Content-Encoding``), in which case ``content`` is empty.
    """

    status: int
    headers: Mapping[str, str]  # case-insensitive lookups
    content: bytes
    reason: str
    body_problem: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how batches go: the same for every engine.

    The headers and the key stay out of ``repr``: they carry the secret.
    """

    provider: Provider
    url: str
    model: str
    headers: dict[str, str] = field(repr=False)
    api_key: str | None = field(repr=False)
    # A proxy's password and Proxy-Authorization token: redacted like the key.
    other_secrets: tuple[str, ...] = field(default=(), repr=False)


def attempt_deadline(timeout: httpx.Timeout | float | None) -> float | None:
    """Seconds one whole attempt may take, from sending to the last byte of the body.

    httpx and aiohttp bound each wait for data, so a body trickling one byte
    per second never times out. A number bounds the whole attempt; an
    ``httpx.Timeout`` does so with its ``read`` value (``None``: no bound).
    """
    if isinstance(timeout, httpx.Timeout):
        return timeout.read
    return timeout


class BatchSender(Protocol):
    """What the runner sends through: an engine, or a wrapper around one.

    Wrappers (``ObservedTransport``, and later ones for rate limits or read
    limits) take a ``BatchSender`` and are one; the runner never knows which.
    """

    async def send(self, batch: BatchRequest) -> BatchScores:
        """POST one batch and return its scores in batch order, or raise a ``RerankError``."""
        ...

    async def aclose(self) -> None:
        """Release what this sender owns."""
        ...


class Transport(abc.ABC):
    """Sends batches to one endpoint and turns the answer into scores or a typed error.

    Engines (httpx, aiohttp) implement ``_post`` and ``aclose``; everything a
    caller sees — errors, messages, logging, decoding — is shared here, and so
    are the limits: the body is read through ``BodyReader`` (size capped after
    decompression) and the whole attempt runs under one deadline.

    Args:
        endpoint: Where batches go.
        response_timeout: Seconds one attempt may take in all; ``None`` for no bound.
    """

    def __init__(self, endpoint: Endpoint, *, response_timeout: float | None) -> None:
        self._provider = endpoint.provider
        self._url = endpoint.url
        self._model = endpoint.model
        # The engines inflate bodies themselves, with a cap: ask only for what they can.
        self._headers = {**endpoint.headers, "Accept-Encoding": ACCEPT_ENCODING}
        self._api_key = endpoint.api_key
        self._redactor = Redactor(endpoint.api_key, *endpoint.other_secrets)
        self._response_timeout = response_timeout
        # Set by aclose: from then on nothing is sent and no connection or session is
        # opened again (a retry or a hedge racing the close gets ClientClosedError).
        self.closed = False

    @abc.abstractmethod
    async def _post(self, batch: BatchRequest) -> Reply:
        """Send the body and read the answer's raw bytes through ``_read_body``.

        Raise via ``_connection_error`` when no answer arrives.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections this transport owns."""

    async def _post_in_time(self, batch: BatchRequest, seconds: float) -> Reply:
        """``_post``, or ``TimeoutError`` once it has taken ``seconds`` in all."""
        with anyio.fail_after(seconds):
            return await self._post(batch)

    async def send(self, batch: BatchRequest) -> BatchScores:
        """POST one batch and return its scores in batch order.

        Raises:
            APITimeoutError: The request timed out.
            APIConnectionError: No response (refused, reset, dropped).
            APIStatusError: A non-2xx answer, as its typed subclass.
            ResponseValidationError: A 2xx body that does not fit.
            ClientClosedError: The transport is closed.
        """
        if self.closed:
            raise self._closed_error(batch)
        if self._provider.signs_requests:
            batch = await self._signed(batch)
        started = time.perf_counter()
        if self._response_timeout is None:
            reply = await self._post(batch)
        else:
            try:
                reply = await self._post_in_time(batch, self._response_timeout)
            except TimeoutError as error:
                raise ResponseTimeoutError(
                    self._describe(
                        batch,
                        f"timed out: the response was not complete within "
                        f"timeout={self._response_timeout:g} s",
                    ),
                    timeout=self._response_timeout,
                    url=self._url,
                    model=self._model,
                    document_range=batch.document_range,
                ) from error
        if logger.isEnabledFor(logging.DEBUG):
            start, stop = batch.document_range
            logger.debug(
                "POST %s documents [%d, %d) -> %d in %.1f ms",
                self._url, start, stop, reply.status, (time.perf_counter() - started) * 1000.0,
            )  # fmt: skip
        if not 200 <= reply.status < 300:
            raise self._status_error(batch, reply)
        if reply.body_problem is not None:
            raise ResponseValidationError(
                self._describe(batch, f"invalid response body: {reply.body_problem}"),
                url=self._url,
                model=self._model,
                document_range=batch.document_range,
            )
        try:
            scores = self._provider.decode_response(reply.content, batch.n_documents)
        except ValueError as error:
            raise ResponseValidationError(
                self._describe(batch, f"invalid response body: {self._redact(str(error))}"),
                url=self._url,
                model=self._model,
                document_range=batch.document_range,
            ) from error
        limit_reset_s = seconds_until_reset(reply.headers, now=time.time())
        if limit_reset_s is None:
            return scores
        return dataclasses.replace(scores, limit_reset_s=limit_reset_s)

    # --- per-attempt headers: a provider that signs each request (SigV4) or refreshes a
    # token sees the body exactly as it is sent; every engine sends _headers_for(batch).
    async def _signed(self, batch: BatchRequest) -> BatchRequest:
        try:
            headers = await self._provider.request_headers(self._url, batch.body)
        except Exception as error:  # a missing extra, no credentials, a failed refresh
            raise RerankError(
                self._describe(
                    batch,
                    f"could not authenticate the request: {type(error).__name__}: "
                    f"{self._redact(str(error))}",
                ),
                url=self._url,
                model=self._model,
                document_range=batch.document_range,
            ) from error
        return dataclasses.replace(batch, headers=headers)

    def _headers_for(self, batch: BatchRequest) -> Mapping[str, str]:
        if batch.headers is None:
            return self._headers
        return {**self._headers, **batch.headers}

    # --- end of per-attempt headers

    async def _read_body(
        self,
        batch: BatchRequest,
        status: int,
        content_encoding: str | None,
        chunks: AsyncIterator[bytes],
    ) -> tuple[bytes, str | None]:
        """The decoded body from raw ``chunks``, or ``b""`` and why it could not be decoded.

        Raises:
            ResponseTooLargeError: The decoded body passed the batch's limit;
                reading stopped there. The engine's own errors pass through.
        """
        limit = response_size_limit(n_documents=batch.n_documents, request_bytes=len(batch.body))
        try:
            reader = BodyReader(limit, content_encoding)
            async for chunk in chunks:
                reader.feed(chunk)
            return reader.finish(), None
        except BodyTooLarge as error:
            raise self._too_large(batch, status, error) from error
        except ValueError as error:  # an unknown or corrupt Content-Encoding
            return b"", str(error)

    def _too_large(
        self, batch: BatchRequest, status: int, error: BodyTooLarge
    ) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            self._describe(
                batch,
                f"HTTP {status} response body exceeds the limit of {error.limit} bytes for "
                f"{batch.n_documents} documents (reading stopped at {error.received} bytes)",
            ),
            limit=error.limit,
            status_code=status,
            url=self._url,
            model=self._model,
            document_range=batch.document_range,
        )

    def _closed_error(self, batch: BatchRequest) -> ClientClosedError:
        return ClientClosedError(
            self._describe(batch, "the client is closed; nothing is sent after close"),
            url=self._url,
            model=self._model,
            document_range=batch.document_range,
        )

    def _connection_error(
        self, batch: BatchRequest, error: BaseException, *, timed_out: bool
    ) -> APIConnectionError:
        """The typed error for a request that got no answer; raise it ``from error``."""
        if timed_out:
            return APITimeoutError(
                self._describe(batch, f"timed out ({type(error).__name__})"),
                url=self._url,
                model=self._model,
                document_range=batch.document_range,
            )
        detail = f"connection failed: {type(error).__name__}: {self._redact(str(error))}"
        return APIConnectionError(
            self._describe(batch, detail.rstrip(": ")),
            url=self._url,
            model=self._model,
            document_range=batch.document_range,
        )

    def _status_error(self, batch: BatchRequest, reply: Reply) -> APIStatusError:
        status = reply.status
        # Redact the raw bytes first: the message is cut to 500 characters, and a
        # cut through the key would leave a prefix the text-level pass cannot see.
        content = self._redactor.content(reply.content)
        message = self._redact(self._provider.error_message(content) or reply.reason)
        error_class = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIStatusError)
        detail = f"HTTP {status}: {message}"
        if error_class is AuthenticationError and self._api_key is None:
            env_names = " or ".join(self._provider.api_key_env_vars) or "api_key"
            detail += f" (no API key is configured: pass api_key= or set {env_names})"
        elif 300 <= status < 400:
            # Following a redirect would send the key to wherever the server points.
            location = self._redact(reply.headers.get("location") or "no Location header")
            detail += (
                f" (a redirect to {location}; redirects are not followed, so the request and "
                "its key go nowhere else: set base_url to the final address)"
            )
        return error_class(
            self._describe(batch, detail),
            status_code=status,
            server_message=message,
            url=self._url,
            model=self._model,
            document_range=batch.document_range,
            request_id=self._redact_optional(reply.headers.get("x-request-id")),
            body=self._redactor.value(_decoded_body(content)),
            retry_after=parse_retry_after(reply.headers),
            limit_reset_s=seconds_until_reset(reply.headers, now=time.time()),
        )

    def _describe(self, batch: BatchRequest, detail: str) -> str:
        start, stop = batch.document_range
        return f"{detail} [POST {self._url}, model {self._model}, documents {start}..{stop - 1}]"

    def _redact(self, text: str) -> str:
        # A server that echoes the request's headers must not leak the key into our errors.
        return self._redactor.text(text)

    def _redact_optional(self, text: str | None) -> str | None:
        return None if text is None else self._redactor.text(text)


def _decoded_body(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")
