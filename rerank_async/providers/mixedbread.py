"""Mixedbread's Reranking API.

``POST {base_url}/v1/reranking`` with ``Authorization: Bearer $MXBAI_API_KEY``
(https://www.mixedbread.com/api-reference/endpoints/reranking):

- request: ``{"model", "query", "input": [str, ...], "top_k", "return_input": false}``
  (the documents go in ``input``);
- response: ``{"object": "list", "model", "data": [{"index", "score",
  "object": "rank_result", "input"?}, ...], "usage": {"prompt_tokens",
  "total_tokens"}, "top_k", "return_input"}``, data sorted by relevance;
  mapped back to input order through ``index``.

Limits: at most 1,000 inputs per request.

Scores: ``score`` as the model gives it; for the mxbai-rerank models a
relevance in [0, 1] (not verified: it may be a raw model score for some
models).

Uncertain (not verified against the live API from here): the score scale,
the error wording for too many inputs (any "at most N inputs"-style message
or a 413 splits the batch), and whether the old host ``api.mixedbread.ai``
is still the one to use (the default here is ``api.mixedbread.com``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel

from ._indexed import IndexedProvider, ResponseShape, ScoreResult, TokenUsage
from ._wire import RESPONSE_MODEL_CONFIG, dumps, join_url

__all__ = ["MixedbreadProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_MIXEDBREAD_API_KEY: Final = "MXBAI_API_KEY"
MIXEDBREAD_BASE_URL: Final = "https://api.mixedbread.com"


class _MixedbreadResponse(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    data: list[ScoreResult]
    usage: TokenUsage | None = None


class MixedbreadProvider(IndexedProvider):
    """Mixedbread's ``/v1/reranking`` endpoint."""

    name = "mixedbread"
    default_base_url = MIXEDBREAD_BASE_URL
    api_key_env_vars = (ENV_MIXEDBREAD_API_KEY,)
    # A tenth of the 1,000-input cap: small retries, few requests per call.
    default_batch_size = 100
    # Hosted, rate-limited per key: 8 in flight avoids needless 429s.
    default_max_concurrency = 8
    response_shape = ResponseShape(_MixedbreadResponse, "data", "score")

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, "/v1/reranking")

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(
            {
                "model": model,
                "query": query,
                "input": documents,
                "top_k": len(documents),
                "return_input": False,
            }
        )
