"""Fireworks AI's Rerank API.

``POST {base_url}/rerank`` (base ``https://api.fireworks.ai/inference/v1``)
with ``Authorization: Bearer $FIREWORKS_API_KEY``
(https://fireworks.ai/docs/api-reference/rerank-documents, OpenAPI ``CreateRerankRequest``):

- request: ``{"model", "query", "documents": [str, ...], "top_n",
  "return_documents": false, "task"?}`` (``return_documents`` defaults to true
  on Fireworks' side; false keeps answers small);
- response: ``{"object": "list", "model", "data": [{"index", "relevance_score",
  "document"?}, ...], "usage": {"prompt_tokens", "total_tokens"}}``, data
  sorted by relevance; mapped back to input order through ``index``.

Instructions: ``instruction=`` goes in ``task`` ("Optional task description to
guide the reranking process", e.g. Qwen3-Reranker's default "Given a web search
query, retrieve relevant passages that answer the query").

Limits: none documented per request (uncertain); 100 per request keeps a
retry small. Each pair must fit the model's context.

Uncertain (not verified against the live API from here): a per-request cap,
rate-limit headers, and the error wording. Errors arrive as ``{"error":
{"object": "error", "type", "message"}}``.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from ._indexed import RelevanceResult, RelevanceResultsProvider, ResponseShape, TokenUsage

__all__ = ["FireworksProvider"]

# Where the service lives and which variable holds its key (read once per client).
ENV_FIREWORKS_API_KEY: Final = "FIREWORKS_API_KEY"
FIREWORKS_BASE_URL: Final = "https://api.fireworks.ai/inference/v1"


class _FireworksResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[RelevanceResult]
    usage: TokenUsage | None = None


class FireworksProvider(RelevanceResultsProvider):
    """Fireworks AI's ``/rerank`` endpoint (``instruction=`` as ``task``)."""

    name = "fireworks"
    default_base_url = FIREWORKS_BASE_URL
    # The reranker Fireworks' API reference shows.
    default_model = "accounts/fireworks/models/qwen3-reranker-8b"
    api_key_env_vars = (ENV_FIREWORKS_API_KEY,)
    path = "/rerank"
    response_shape = ResponseShape(_FireworksResponse, "data", "relevance_score")
    instruction_field = "task"
    # No documented cap: 100 keeps a request and its retry small.
    default_batch_size = 100
    # Hosted, rate-limited per account: 8 in flight avoids needless 429s.
    default_max_concurrency = 8

    def extra_fields(self) -> dict[str, object]:
        return {"return_documents": False}
