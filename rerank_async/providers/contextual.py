"""Contextual AI's instruction-following reranker.

``POST {base_url}/rerank`` (base ``https://api.contextual.ai/v1``) with
``Authorization: Bearer $CONTEXTUAL_API_KEY``
(https://docs.contextual.ai/api-reference/rerank/rerank):

- request: ``{"model", "query", "documents": [str, ...], "top_n",
  "instruction"?, "metadata"?: [str, ...]}``;
- response: ``{"results": [{"index", "relevance_score"}, ...]}`` sorted by
  relevance; mapped back to input order through ``index``.

Instructions: ``instruction=`` goes in ``instruction`` (ranked "after
considering relevance": recency, document type, source, metadata).
``metadata`` (one string per document) is not sent.

Limits: the whole request at most 400,000 tokens; the query, the instruction
and one document with its metadata at most 8,000 tokens. The client cuts
batches by its token estimate to stay under the first; ``LongDocuments``
defaults to the second.

Uncertain (not verified against the live API from here): a document count
limit, rate-limit headers, whether ``usage`` is sent (it is not read). Errors
arrive as ``{"detail": ...}`` or ``{"message": ...}``.
"""

from __future__ import annotations

from typing import Final

from ._base import ProviderCaps
from ._indexed import RelevanceResultsProvider

__all__ = ["ContextualProvider"]

# Where the service lives and which variable holds its key (read once per client).
ENV_CONTEXTUAL_API_KEY: Final = "CONTEXTUAL_API_KEY"
CONTEXTUAL_BASE_URL: Final = "https://api.contextual.ai/v1"
CONTEXTUAL_CAPS: Final = ProviderCaps(tokens_per_request=400_000, tokens_per_document=8_000)


class ContextualProvider(RelevanceResultsProvider):
    """Contextual AI's ``/rerank`` endpoint (``instruction=`` as ``instruction``)."""

    name = "contextual"
    default_base_url = CONTEXTUAL_BASE_URL
    default_model = "ctxl-rerank-v2-instruct-multilingual"
    api_key_env_vars = (ENV_CONTEXTUAL_API_KEY,)
    path = "/rerank"
    instruction_field = "instruction"
    caps_table = CONTEXTUAL_CAPS
    # No documented document cap: 100 keeps a request and its retry small.
    default_batch_size = 100
    # Hosted, rate-limited per key: 8 in flight.
    default_max_concurrency = 8
