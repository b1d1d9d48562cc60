"""Xorbits Inference (Xinference), self-hosted.

``POST {base_url}/v1/rerank``; a bearer token only when the server runs with
authentication (``$XINFERENCE_API_KEY``). Source: Xinference's RESTful API
(``xinference/api/restful_api.py``, ``RerankRequest``) and its docs, which
describe it as Jina/Cohere-compatible:

- request: ``{"model", "query", "documents": [str, ...], "top_n",
  "return_documents": false, "max_chunks_per_doc"?}``;
- response: ``{"id", "results": [{"index", "relevance_score", "document"?},
  ...], "meta": {"api_version", "billed_units", "tokens", "warnings"}}``,
  results sorted by relevance; mapped back to input order through ``index``.

Limits: none per request; each pair must fit the model's context.
``max_chunks_per_doc`` is not sent (``LongDocuments`` chunks client-side).

Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against a live server from here): whether ``meta``
reports input tokens for every model (it is not read), the auth variable name
(Xinference's own clients take ``api_key=``). Errors arrive as ``{"detail": ...}``.
"""

from __future__ import annotations

from typing import Final

from ._indexed import RelevanceResultsProvider

__all__ = ["XinferenceProvider"]

# Where the server listens by default and which variable holds its key.
ENV_XINFERENCE_API_KEY: Final = "XINFERENCE_API_KEY"
XINFERENCE_BASE_URL: Final = "http://localhost:9997"


class XinferenceProvider(RelevanceResultsProvider):
    """Xinference's ``/v1/rerank`` endpoint."""

    name = "xinference"
    default_base_url = XINFERENCE_BASE_URL
    api_key_env_vars = (ENV_XINFERENCE_API_KEY,)
    path = "/v1/rerank"
    # A self-hosted server queues what its GPU cannot take: 64 per request, 16 in flight.
    default_batch_size = 64
    default_max_concurrency = 16

    def extra_fields(self) -> dict[str, object]:
        return {"return_documents": False}
