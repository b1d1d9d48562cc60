"""OpenRouter's Rerank API.

``POST {base_url}/rerank`` (base ``https://openrouter.ai/api/v1``) with
``Authorization: Bearer $OPENROUTER_API_KEY`` (https://openrouter.ai/docs/api/api-reference/rerank/submit-a-rerank-request,
and each reranker's ``llms.txt`` page, e.g. ``qwen/qwen3-reranker-0.6b``):

- request: ``{"model", "query", "documents": [str, ...], "top_n"}``, Cohere's shape;
- response: ``{"results": [{"index", "relevance_score", "document"?}, ...],
  "model", "usage"?}``, results sorted by relevance; mapped back to input order
  through ``index``.

Limits: none documented per request (they are the upstream provider's: Cohere
recommends 1,000 documents); 100 per request keeps a retry small.

Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against the live API from here): whether ``usage``
carries token counts for every upstream, a per-request cap, and the error
wording. Errors arrive as ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from typing import Final

from ._indexed import RelevanceResultsProvider

__all__ = ["OpenRouterProvider"]

# Where the service lives and which variable holds its key (read once per client).
ENV_OPENROUTER_API_KEY: Final = "OPENROUTER_API_KEY"
OPENROUTER_BASE_URL: Final = "https://openrouter.ai/api/v1"


class OpenRouterProvider(RelevanceResultsProvider):
    """OpenRouter's ``/rerank`` endpoint."""

    name = "openrouter"
    default_base_url = OPENROUTER_BASE_URL
    api_key_env_vars = (ENV_OPENROUTER_API_KEY,)
    path = "/rerank"
    # No documented cap: 100 keeps a request and its retry small.
    default_batch_size = 100
    # A router with per-key rate limits: 8 in flight avoids needless 429s.
    default_max_concurrency = 8
