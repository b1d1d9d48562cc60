"""Pinecone Inference's rerank API.

``POST {base_url}/rerank`` with ``Api-Key: $PINECONE_API_KEY`` (not a bearer
token) and a required ``X-Pinecone-API-Version`` header
(https://docs.pinecone.io/reference/api/inference/rerank):

- request: ``{"model", "query", "documents": [{"text"}, ...], "top_n",
  "return_documents": false, "parameters"?: {"truncate"}}``
  (``return_documents`` defaults to true on Pinecone's side; sending false
  keeps the answers small);
- response: ``{"model", "data": [{"index", "score", "document"?}, ...],
  "usage": {"rerank_units"}}``, data sorted by relevance; mapped back to input
  order through ``index``.

Limits: per model: 100 documents for ``bge-reranker-v2-m3`` and
``pinecone-rerank-v0``, 200 for ``cohere-rerank-3.5`` (with per-pair token
limits of their own). The default batch size, 100, fits all three.

Scores: ``score`` is normalized to [0, 1] by Pinecone for its hosted
rerankers; no sigmoid is needed.

Uncertain (not verified against the live API from here): the current API
version (the default, ``"2025-04"``, is a dated version Pinecone documented;
pass ``api_version=`` to pin another), which models accept
``parameters.truncate`` (so it is sent only when set), and the wording of the
too-many-documents error. Errors arrive as ``{"error": {"code", "message"},
"status"}``. ``rerank_units`` are not tokens, so ``input_tokens`` stays
``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from pydantic import BaseModel

from ._indexed import IndexedProvider, ResponseShape, ScoreResult
from ._wire import RESPONSE_MODEL_CONFIG, dumps, join_url

__all__ = ["PineconeProvider", "PineconeTruncate"]

# Where the service lives and which variables hold its key (read once per client).
ENV_PINECONE_API_KEY: Final = "PINECONE_API_KEY"
PINECONE_BASE_URL: Final = "https://api.pinecone.io"
# Pinecone requires a dated API version on every request; a version its docs name
# for the Inference API (not verified to be the newest).
DEFAULT_PINECONE_API_VERSION: Final = "2025-04"

PineconeTruncate = Literal["END", "NONE"]


class _PineconeResponse(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    data: list[ScoreResult]


class PineconeProvider(IndexedProvider):
    """Pinecone's ``/rerank`` endpoint.

    Args:
        api_version: Sent as ``X-Pinecone-API-Version``.
        truncate: Sent as ``parameters.truncate`` when set (``"END"`` cuts an
            over-long pair, ``"NONE"`` rejects it); ``None`` leaves the model's
            default.

    Raises:
        ValueError: An empty ``api_version`` or an unknown ``truncate``.
    """

    name = "pinecone"
    default_base_url = PINECONE_BASE_URL
    api_key_env_vars = (ENV_PINECONE_API_KEY,)
    # The smallest per-model cap (bge-reranker-v2-m3, pinecone-rerank-v0).
    default_batch_size = 100
    # Hosted, with low per-minute request limits on starter plans: 4 in flight.
    default_max_concurrency = 4
    response_shape = ResponseShape(_PineconeResponse, "data", "score")

    def __init__(
        self,
        *,
        api_version: str = DEFAULT_PINECONE_API_VERSION,
        truncate: PineconeTruncate | None = None,
    ) -> None:
        if not isinstance(api_version, str) or not api_version.strip():
            raise ValueError(f"api_version must be a non-empty string, got {api_version!r}")
        if truncate not in (None, "END", "NONE"):
            raise ValueError(f"truncate must be 'END', 'NONE' or None, not {truncate!r}")
        self.api_version = api_version
        self.truncate: PineconeTruncate | None = truncate

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, "/rerank")

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        # The version header is required on every request, with or without a key.
        headers = {"X-Pinecone-API-Version": self.api_version}
        if api_key:
            headers["Api-Key"] = api_key
        return headers

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        body: dict[str, object] = {
            "model": model,
            "query": query,
            "documents": [{"text": document} for document in documents],
            "top_n": len(documents),
            "return_documents": False,
        }
        if self.truncate is not None:
            body["parameters"] = {"truncate": self.truncate}
        return dumps(body)
