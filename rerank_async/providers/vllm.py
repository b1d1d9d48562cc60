"""vLLM's OpenAI-compatible server, self-hosted (``vllm serve <reranker> --task score``).

Two endpoints (https://docs.vllm.ai, "OpenAI-Compatible Server": Re-rank API
and Score API); a bearer token only when the server was started with
``--api-key`` (``$VLLM_API_KEY``):

- ``endpoint="rerank"`` (the default): ``POST {base_url}/rerank`` with
  ``{"model", "query", "documents": [str, ...], "top_n"}``; the answer is
  ``{"id", "model", "usage": {"total_tokens"}, "results": [{"index",
  "document": {"text"}, "relevance_score"}, ...]}`` sorted by relevance. It
  always echoes each document's text, which is parsed and ignored.
- ``endpoint="score"``: ``POST {base_url}/score`` with ``{"model", "text_1":
  query, "text_2": [str, ...]}``; the answer is ``{"id", "data": [{"index",
  "object": "score", "score"}, ...], "usage"}`` in input order. No documents
  are echoed, so bodies are smaller.

Either way the scores are placed by ``index`` and checked, never trusted by
position.

Limits: no document count limit; each query + document pair must fit the
model's context (``--max-model-len``), and ``truncate_prompt_tokens`` is not
sent.

Scores: the model's own activation is applied (a sigmoid for single-label
cross-encoders such as BGE rerankers), so they are usually probabilities in
[0, 1]; a model configured without an activation returns raw logits.

Uncertain (not verified against a live server from here): recent vLLM
versions may rename the ``/score`` fields (``text_1``/``text_2``); the
``/rerank`` form has been stable. Errors arrive as ``{"object": "error",
"message", "type", "code"}`` or ``{"error": {"message", ...}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from pydantic import BaseModel

from ._indexed import RelevanceResultsProvider, ResponseShape, ScoreResult, TokenUsage
from ._wire import RESPONSE_MODEL_CONFIG, dumps, join_url

__all__ = ["VLLMEndpoint", "VLLMProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_VLLM_API_KEY: Final = "VLLM_API_KEY"
VLLM_BASE_URL: Final = "http://localhost:8000"

VLLMEndpoint = Literal["rerank", "score"]


class _ScoreResponse(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    data: list[ScoreResult]
    id: str | None = None
    usage: TokenUsage | None = None


_SCORE_SHAPE = ResponseShape(_ScoreResponse, "data", "score")


class VLLMProvider(RelevanceResultsProvider):
    """vLLM's ``/rerank`` (or ``/score``) endpoint.

    Args:
        endpoint: ``"rerank"`` (the default) or ``"score"``.

    Raises:
        ValueError: An unknown ``endpoint``.
    """

    name = "vllm"
    default_base_url = VLLM_BASE_URL
    api_key_env_vars = (ENV_VLLM_API_KEY,)
    # vLLM schedules every pair of a request itself (continuous batching);
    # 64 per request matches the client's general default for cross-encoders.
    default_batch_size = 64
    # A self-hosted server queues what its GPU cannot take; 16 in flight keep it busy.
    default_max_concurrency = 16

    def __init__(self, *, endpoint: VLLMEndpoint = "rerank") -> None:
        if endpoint not in ("rerank", "score"):
            raise ValueError(f"endpoint must be 'rerank' or 'score', not {endpoint!r}")
        self.endpoint: VLLMEndpoint = endpoint

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, f"/{self.endpoint}")

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        if self.endpoint == "score":
            return dumps({"model": model, "text_1": query, "text_2": documents})
        return super().encode_request(model, query, documents)

    def packs_pairs(self, model: str) -> bool:
        # /score with two lists of equal length scores text_1[i] against text_2[i]
        # (vLLM's examples/online_serving/openai_cross_encoder_score.py).
        return self.endpoint == "score"

    def encode_pairs(self, model: str, queries: Sequence[str], documents: Sequence[str]) -> bytes:
        if not self.packs_pairs(model):
            return super().encode_pairs(model, queries, documents)
        return dumps({"model": model, "text_1": queries, "text_2": documents})

    def shape_of_response(self) -> ResponseShape:
        if self.endpoint == "score":
            return _SCORE_SHAPE
        return super().shape_of_response()
