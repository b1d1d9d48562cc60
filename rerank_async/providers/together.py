"""Together AI's Rerank API.

``POST {base_url}/v1/rerank`` with ``Authorization: Bearer $TOGETHER_API_KEY``
(https://docs.together.ai/reference/rerank):

- request: ``{"model", "query", "documents": [str, ...], "top_n", "return_documents": false}``;
- response: ``{"object": "rerank", "id", "model", "results": [{"index",
  "relevance_score", "document"?}, ...], "usage": {"prompt_tokens",
  "completion_tokens", "total_tokens"}}``, results sorted by relevance;
  mapped back to input order through ``index``.

Limits: no documented number of documents per request (uncertain); the
model's context bounds each query + document pair. Together answers 429
when you exceed your (dynamic) rate and 503 when the model is out of
capacity; both are retried with backoff. Together sends its reset time in
``x-ratelimit-reset``, which the client does not read (it honours
``Retry-After`` only), so 429s fall back to exponential backoff.

Scores: ``relevance_score`` as the model gives it; for Salesforce's LlamaRank
and similar rerankers a probability-like value in [0, 1] (not verified for
every model Together serves).

Uncertain (not verified against the live API from here): the per-request
limit and the wording of its error. Errors arrive as ``{"error": {"message",
"type", "code"}}``.
"""

from __future__ import annotations

from typing import Final

from ._indexed import HostedRelevanceProvider

__all__ = ["TogetherProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_TOGETHER_API_KEY: Final = "TOGETHER_API_KEY"
TOGETHER_BASE_URL: Final = "https://api.together.xyz"


class TogetherProvider(HostedRelevanceProvider):
    """Together AI's ``/v1/rerank`` endpoint."""

    name = "together"
    default_base_url = TOGETHER_BASE_URL
    api_key_env_vars = (ENV_TOGETHER_API_KEY,)
