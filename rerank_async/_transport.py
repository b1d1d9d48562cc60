"""One batch, one POST: send it, map every failure to a typed error, decode the body.

The HTTP engine is swappable: httpx (the default, or a caller's own client) here,
aiohttp in ``_aiohttp_transport`` for the lowest CPU cost per request.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol

import httpx
from httpx._client import UseClientDefault

from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from ._rate_limit_headers import seconds_until_reset
from ._retry import parse_retry_after
from .providers import BatchScores, Provider

__all__ = [
    "BatchRequest",
    "BatchSender",
    "Endpoint",
    "HttpxTransport",
    "Reply",
    "TimeoutTypes",
    "Transport",
]

# What httpx accepts as a per-request timeout; UseClientDefault defers to the client.
TimeoutTypes = httpx.Timeout | float | None | UseClientDefault

logger = logging.getLogger("rerank_async")

_STATUS_ERRORS: Final[dict[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}
_REDACTED: Final = "***"


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


@dataclass(frozen=True, slots=True)
class Reply:
    """The parts of an HTTP answer the client needs, whatever the engine."""

    status: int
    headers: Mapping[str, str]  # case-insensitive lookups
    content: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how batches go: the same for every engine."""

    provider: Provider
    url: str
    model: str
    headers: dict[str, str]
    api_key: str | None


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
    caller sees — errors, messages, logging, decoding — is shared here.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._provider = endpoint.provider
        self._url = endpoint.url
        self._model = endpoint.model
        self._headers = endpoint.headers
        self._api_key = endpoint.api_key

    @abc.abstractmethod
    async def _post(self, batch: BatchRequest) -> Reply:
        """Send the body; raise via ``_connection_error`` when no answer arrives."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections this transport owns."""

    async def send(self, batch: BatchRequest) -> BatchScores:
        """POST one batch and return its scores in batch order.

        Raises:
            APITimeoutError: The request timed out.
            APIConnectionError: No response (refused, reset, dropped).
            APIStatusError: A non-2xx answer, as its typed subclass.
            ResponseValidationError: A 2xx body that does not fit.
        """
        started = time.perf_counter()
        reply = await self._post(batch)
        if logger.isEnabledFor(logging.DEBUG):
            start, stop = batch.document_range
            logger.debug(
                "POST %s documents [%d, %d) -> %d in %.1f ms",
                self._url, start, stop, reply.status, (time.perf_counter() - started) * 1000.0,
            )  # fmt: skip
        if not 200 <= reply.status < 300:
            raise self._status_error(batch, reply)
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
        message = self._redact(self._provider.error_message(reply.content) or reply.reason)
        error_class = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIStatusError)
        detail = f"HTTP {status}: {message}"
        if error_class is AuthenticationError and self._api_key is None:
            env_names = " or ".join(self._provider.api_key_env_vars) or "api_key"
            detail += f" (no API key is configured: pass api_key= or set {env_names})"
        return error_class(
            self._describe(batch, detail),
            status_code=status,
            server_message=message,
            url=self._url,
            model=self._model,
            document_range=batch.document_range,
            request_id=reply.headers.get("x-request-id"),
            body=_decoded_body(reply.content),
            retry_after=parse_retry_after(reply.headers),
            limit_reset_s=seconds_until_reset(reply.headers, now=time.time()),
        )

    def _describe(self, batch: BatchRequest, detail: str) -> str:
        start, stop = batch.document_range
        return f"{detail} [POST {self._url}, model {self._model}, documents {start}..{stop - 1}]"

    def _redact(self, text: str) -> str:
        # A server that echoes the request's headers must not leak the key into our errors.
        return text.replace(self._api_key, _REDACTED) if self._api_key else text


def _decoded_body(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


class HttpxTransport(Transport):
    """The default engine: an ``httpx.AsyncClient``, the caller's or our own."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        http_client: httpx.AsyncClient,
        owns_client: bool,
        timeout: TimeoutTypes,
    ) -> None:
        super().__init__(endpoint)
        self.http_client = http_client
        self._owns_client = owns_client
        self._timeout = timeout
        # Parsed once: httpx would otherwise parse the URL string on every request.
        self._parsed_url = httpx.URL(endpoint.url)

    async def _post(self, batch: BatchRequest) -> Reply:
        try:
            response = await self.http_client.post(
                self._parsed_url, content=batch.body, headers=self._headers, timeout=self._timeout
            )
        except httpx.TimeoutException as error:
            raise self._connection_error(batch, error, timed_out=True) from error
        except httpx.RequestError as error:
            raise self._connection_error(batch, error, timed_out=False) from error
        return Reply(
            response.status_code, response.headers, response.content, response.reason_phrase
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self.http_client.aclose()
