"""The small interface every wire format implements.

A provider knows its endpoint path, auth header, request body and response
shape. Batching, concurrency, retries and merging live in the client and are
the same for every provider.
"""

from __future__ import annotations

import abc
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

__all__ = ["BatchScores", "Provider", "ProviderCaps", "error_message_from_body"]

# TEI: "batch size 33 > maximum allowed batch size 32"; Infinity and others say
# much the same. The number tells the client the size that will work.
_MAX_BATCH_PATTERN: Final = re.compile(r"maximum allowed batch size\D{0,8}(\d+)", re.IGNORECASE)
_TOO_LARGE_PATTERN: Final = re.compile(
    r"(batch size \d+ > |too many (documents|inputs|texts)|batch.{0,20}too large)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class BatchScores:
    """What one successful request returned.

    Attributes:
        scores: One score per document of the batch, in the batch's order.
        input_tokens: Tokens the server counted, when it says.
        request_id: The server's id for the request, when it says.
        runtime_ms: Server-side inference time, when it says.
        limit_reset_s: Seconds until a rate limit the response headers say is
            spent resets (``x-ratelimit-remaining-*: 0``), when they say so.
    """

    scores: list[float]
    input_tokens: int | None = None
    request_id: str | None = None
    runtime_ms: float | None = None
    limit_reset_s: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderCaps:
    """What one request may carry, as the service documents it; ``None``: no documented cap.

    Attributes:
        documents: Documents per request; the client never plans a larger batch.
        tokens_per_request: Query tokens x documents + the documents' tokens per
            request; batches are cut by the provider's estimate to stay under it.
        tokens_per_document: Tokens of one document (with its query, where the
            service counts it so); the default limit of ``LongDocuments``.
    """

    documents: int | None = None
    tokens_per_request: int | None = None
    tokens_per_document: int | None = None


class Provider(abc.ABC):
    """One reranking service's wire format.

    Subclasses set the class attributes and implement the abstract methods;
    both decode methods raise ``ValueError`` with a reason the client turns
    into ``ResponseValidationError``.
    """

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    api_key_env_vars: ClassVar[tuple[str, ...]] = ()
    # The model used when the caller names none; None makes ``model=`` required.
    default_model: ClassVar[str | None] = None
    # Client defaults when the caller sets none; each provider says why in its docstring.
    default_batch_size: ClassVar[int] = 64
    default_max_concurrency: ClassVar[int] = 32
    # The service's documented limits per request (see ProviderCaps); none by default.
    caps_table: ClassVar[ProviderCaps] = ProviderCaps()
    # Whether request_headers must be asked on every attempt (a signature over the body).
    signs_requests: ClassVar[bool] = False

    def base_url_default(self) -> str:
        """The base URL when the caller gives none; a provider whose URL needs a region
        or a project builds it here (``ValueError`` when it cannot)."""
        return self.default_base_url

    def caps(self, model: str) -> ProviderCaps:
        """The documented limits per request for ``model``."""
        return self.caps_table

    @abc.abstractmethod
    def url(self, base_url: str, model: str) -> str:
        """The endpoint one batch is POSTed to."""

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers carrying the API key (``Authorization: Bearer`` by default)."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @abc.abstractmethod
    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        """The JSON body for one batch, as bytes."""

    def accepts_instruction(self, model: str) -> bool:
        """Whether ``model`` takes an instruction (a body field, or one documented in the query)."""
        return False

    def encode_instructed(
        self, model: str, query: str, documents: Sequence[str], instruction: str
    ) -> bytes:
        """The body for one batch that carries ``instruction``; see ``accepts_instruction``.

        Raises:
            ValueError: The provider or the model has no instruction field.
        """
        raise ValueError(
            f"provider {self.name!r} has no instruction field for model {model!r}; "
            "pass instruction=None"
        )

    def native_truncation(self, max_tokens: int) -> Provider | None:
        """A copy that asks the service to cut each document to ``max_tokens``, when the
        service has such an option (Cohere v2 ``max_tokens_per_doc``); else ``None``."""
        return None

    async def request_headers(self, url: str, body: bytes) -> Mapping[str, str]:
        """Headers made for one attempt from the body as sent (a SigV4 signature, a fresh
        access token); asked only when ``signs_requests`` is set."""
        return {}

    def packs_pairs(self, model: str) -> bool:
        """Whether ``model``'s requests carry one query per document (``encode_pairs``).

        Then ``rerank_many`` fills each request with pairs of several queries
        instead of sending each query's remainder as a short request.
        """
        return False

    def encode_pairs(self, model: str, queries: Sequence[str], documents: Sequence[str]) -> bytes:
        """The JSON body scoring ``documents[i]`` against ``queries[i]``; see ``packs_pairs``."""
        raise NotImplementedError(f"{self.name} sends one query per request")

    @abc.abstractmethod
    def decode_response(self, content: bytes, n_documents: int) -> BatchScores:
        """Scores in batch order from a 2xx body; ``ValueError`` if it does not fit."""

    def error_message(self, content: bytes) -> str | None:
        """The server's own words from an error body, when it has any."""
        return error_message_from_body(content)

    def is_batch_too_large(self, status_code: int, message: str) -> bool:
        """Whether an error means "send fewer documents per request"."""
        return status_code == 413 or (
            status_code in (400, 422) and _TOO_LARGE_PATTERN.search(message) is not None
        )

    def max_tokens_per_request(self, model: str) -> int | None:
        """A token budget per request for ``model``, if the service has one."""
        return self.caps(model).tokens_per_request

    def estimate_tokens(self, text: str) -> int:
        """A cheap token estimate for budgeting: about 4 characters per token, rounded up."""
        return len(text) // 4 + 1

    def max_batch_size_hint(self, message: str) -> int | None:
        """The largest batch the server said it accepts, if it said."""
        match = _MAX_BATCH_PATTERN.search(message)
        return int(match.group(1)) if match else None


def error_message_from_body(content: bytes) -> str | None:
    """Find the message in the error bodies servers commonly send.

    Handles ``{"error": "..."}``, ``{"error": {"message": "..."}}``,
    ``{"message": "..."}``, FastAPI's ``{"detail": "..."}`` and its list of
    validation errors, and falls back to the raw text.
    """
    text = content.decode("utf-8", errors="replace").strip()
    if not text:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500]
    message = _message_in(body)
    return message if message is not None else text[:500]


def _message_in(body: object) -> str | None:
    if isinstance(body, str):
        return body or None
    if isinstance(body, list):
        parts = [part for part in map(_message_in, body) if part]
        return "; ".join(parts) or None
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "msg", "error_message"):
            if key in body:
                found = _message_in(body[key])
                if found:
                    location = body.get("loc")
                    if key == "msg" and isinstance(location, list):
                        return f"{'.'.join(map(str, location))}: {found}"
                    return found
    return None
