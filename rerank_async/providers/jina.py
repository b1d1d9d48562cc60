"""Jina AI's Reranker API.

``POST {base_url}/v1/rerank`` with ``Authorization: Bearer $JINA_API_KEY``
(https://jina.ai/reranker/, "API" tab):

- request: ``{"model", "query", "documents": [str, ...], "top_n", "return_documents": false}``;
- response: ``{"model", "usage": {"total_tokens"}, "results": [{"index",
  "relevance_score", "document"?}, ...]}``, results sorted by relevance;
  mapped back to input order through ``index``.

Limits: not documented as a number of documents per request (uncertain);
requests are rate-limited per key in requests and tokens per minute.

Scores: ``relevance_score`` as the model gives it. For the v1/v2 cross-encoders
(``jina-reranker-v2-base-multilingual``) it is a sigmoid output in [0, 1];
``jina-reranker-v3`` is *listwise*: it reads the query and all documents of a
request together, so a document's score depends on the others in the same
request. Use ``RerankClient(provider="jina", split=False)`` for it, so that
one call is one request (see docs/providers.md).

Uncertain (not verified against the live API from here): the per-request
document limit and the wording of its error (any "at most N documents"-style
message or a 413 splits the batch), and the score range of v3. Errors arrive
as ``{"detail": "..."}``.
"""

from __future__ import annotations

from typing import Final

from ._indexed import HostedRelevanceProvider

__all__ = ["JinaProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_JINA_API_KEY: Final = "JINA_API_KEY"
JINA_BASE_URL: Final = "https://api.jina.ai"


class JinaProvider(HostedRelevanceProvider):
    """Jina AI's ``/v1/rerank`` endpoint.

    Listwise v3 callers set ``split=False`` and their own ``batch_size``."""

    name = "jina"
    default_base_url = JINA_BASE_URL
    api_key_env_vars = (ENV_JINA_API_KEY,)
