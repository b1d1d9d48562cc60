"""Cohere's Rerank API (v2, with v1 as an option).

``POST {base_url}/v2/rerank`` (or ``/v1/rerank``) with
``Authorization: Bearer $CO_API_KEY`` (https://docs.cohere.com/reference/rerank):

- request: ``{"model", "query", "documents": [str, ...], "top_n", "max_tokens_per_doc"?}``;
  v1 has no ``max_tokens_per_doc`` and takes ``"return_documents": false``
  (v2 never returns the documents).
- response: ``{"id", "results": [{"index", "relevance_score"}, ...], "meta":
  {"api_version", "billed_units": {"search_units"}}}``, results sorted by
  relevance; mapped back to input order through ``index``.

Limits: Cohere recommends at most 1,000 documents per request; long documents
are truncated to ``max_tokens_per_doc`` (4,096 by default on v2). Billing is
per search unit, one query with up to 100 documents, so batches of 100 cost
the least.

Scores: ``relevance_score`` is normalized to [0, 1] by Cohere (a probability-
like relevance, comparable across calls of one model); no sigmoid is needed.

Uncertain (not verified against the live API from here): the exact wording
of the "too many documents" error (any "at most N documents"-style message
or a 413 splits the batch), and whether ``meta`` ever reports tokens
(billed search units are not tokens, so ``input_tokens`` stays ``None``;
``meta`` is not read).
Errors arrive as ``{"message": "..."}``.
"""

from __future__ import annotations

from typing import Final, Literal

from ._base import Provider
from ._indexed import RelevanceResultsProvider
from ._wire import join_url

__all__ = ["CohereApiVersion", "CohereProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_COHERE_API_KEY: Final = "CO_API_KEY"  # the Cohere SDK's variable, read first
ENV_COHERE_API_KEY_ALT: Final = "COHERE_API_KEY"
COHERE_BASE_URL: Final = "https://api.cohere.com"

CohereApiVersion = Literal["v1", "v2"]


class CohereProvider(RelevanceResultsProvider):
    """Cohere's ``/v2/rerank`` (or ``/v1/rerank``) endpoint.

    Args:
        api_version: ``"v2"`` (the default) or ``"v1"``.
        max_tokens_per_doc: v2 only: truncate each document to this many
            tokens; ``None`` leaves Cohere's default (4,096).

    Raises:
        ValueError: An unknown ``api_version``, or ``max_tokens_per_doc``
            below 1 or with ``api_version="v1"``.
    """

    name = "cohere"
    default_base_url = COHERE_BASE_URL
    api_key_env_vars = (ENV_COHERE_API_KEY, ENV_COHERE_API_KEY_ALT)
    # One search unit covers a query and up to 100 documents, so 100 per request
    # is the cheapest batch and well under the 1,000 Cohere recommends.
    default_batch_size = 100
    # Hosted, with per-minute rate limits per key (low on trial keys): 8 requests
    # in flight keep a call fast without provoking 429s; raise it for bulk jobs.
    default_max_concurrency = 8

    def __init__(
        self, *, api_version: CohereApiVersion = "v2", max_tokens_per_doc: int | None = None
    ) -> None:
        if api_version not in ("v1", "v2"):
            raise ValueError(f"api_version must be 'v1' or 'v2', not {api_version!r}")
        if max_tokens_per_doc is not None:
            if api_version == "v1":
                raise ValueError("max_tokens_per_doc is a v2 option; Cohere's v1 has no such field")
            if isinstance(max_tokens_per_doc, bool) or max_tokens_per_doc < 1:
                raise ValueError(f"max_tokens_per_doc must be >= 1, got {max_tokens_per_doc!r}")
        self.api_version: CohereApiVersion = api_version
        self.max_tokens_per_doc = max_tokens_per_doc

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, f"/{self.api_version}/rerank")

    def extra_fields(self) -> dict[str, object]:
        if self.api_version == "v1":
            return {"return_documents": False}
        if self.max_tokens_per_doc is not None:
            return {"max_tokens_per_doc": self.max_tokens_per_doc}
        return {}

    def native_truncation(self, max_tokens: int) -> Provider | None:
        # v2's max_tokens_per_doc cuts each document server-side, by Cohere's own
        # tokenizer: better than the client's estimate. v1 has no such field.
        if self.api_version == "v1":
            return None
        limit = max_tokens
        if self.max_tokens_per_doc is not None:
            limit = min(limit, self.max_tokens_per_doc)
        return type(self)(api_version="v2", max_tokens_per_doc=limit)
