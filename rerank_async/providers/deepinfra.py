"""DeepInfra's reranker inference API.

``POST {base_url}/{model}`` with a bearer token; the response is
``{"scores": [...], "input_tokens", "request_id", "inference_status"}`` with
scores in input order (https://deepinfra.com/docs, model pages' "HTTP/cURL
API"). Two body forms exist:

- ``{"query": str, "documents": [...]}`` for cross-encoders such as
  ``cross-encoder/ms-marco-MiniLM-L-12-v2``;
- ``{"queries": [...], "documents": [...]}`` for Qwen3-Reranker and Nemotron
  rerank models. The query is repeated once per document, the form every
  public client agrees works; ``queries_layout="single"`` sends a one-element
  list instead.

Only ``scores`` is required; every other field is parsed when present.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from pydantic import BaseModel

from ._base import BatchScores, Provider
from ._wire import RESPONSE_MODEL_CONFIG, FiniteScore, dumps, join_url, model_path, parse_json

__all__ = ["BodyForm", "DeepInfraProvider", "QueriesLayout"]

# Where the service lives and which variables hold its key (read once per client).
ENV_DEEPINFRA_TOKEN: Final = "DEEPINFRA_TOKEN"  # noqa: S105  # a variable name, not a secret
ENV_DEEPINFRA_API_KEY: Final = "DEEPINFRA_API_KEY"
DEEPINFRA_BASE_URL: Final = "https://api.deepinfra.com/v1/inference"
DEFAULT_MODEL: Final = "cross-encoder/ms-marco-MiniLM-L-12-v2"
# 64 (query, document) pairs fill a cross-encoder's GPU batch well and keep one
# request's latency near 100 ms; larger requests mostly add queueing delay.
DEFAULT_BATCH_SIZE: Final = 64
# DeepInfra allows 200 concurrent requests per model per account. One client
# takes 32 so that several workers or processes can share an account without
# tripping the limit (which DeepInfra answers with 429).
DEFAULT_MAX_CONCURRENCY: Final = 32

BodyForm = Literal["auto", "query", "queries"]
QueriesLayout = Literal["repeat", "single"]

# Model families DeepInfra serves with the {"queries", "documents"} form.
_QUERIES_FORM_MARKERS: Final = ("qwen3-reranker", "nemotron")


class _InferenceStatus(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    status: str | None = None
    runtime_ms: float | None = None
    cost: float | None = None


class _RerankResponse(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    scores: list[FiniteScore]
    input_tokens: int | None = None
    request_id: str | None = None
    inference_status: _InferenceStatus | None = None


class DeepInfraProvider(Provider):
    """DeepInfra's ``/v1/inference/{model}`` reranker endpoint.

    Args:
        body_form: ``"query"``, ``"queries"``, or ``"auto"`` to pick by model
            name (Qwen3-Reranker and Nemotron models take ``"queries"``).
        queries_layout: With the ``"queries"`` form, ``"repeat"`` sends the
            query once per document; ``"single"`` sends it once.
    """

    name = "deepinfra"
    default_base_url = DEEPINFRA_BASE_URL
    api_key_env_vars = (ENV_DEEPINFRA_TOKEN, ENV_DEEPINFRA_API_KEY)
    default_model = DEFAULT_MODEL
    default_batch_size = DEFAULT_BATCH_SIZE
    default_max_concurrency = DEFAULT_MAX_CONCURRENCY

    def __init__(
        self, *, body_form: BodyForm = "auto", queries_layout: QueriesLayout = "repeat"
    ) -> None:
        if body_form not in ("auto", "query", "queries"):
            raise ValueError(f"body_form must be 'auto', 'query' or 'queries', not {body_form!r}")
        if queries_layout not in ("repeat", "single"):
            raise ValueError(f"queries_layout must be 'repeat' or 'single', not {queries_layout!r}")
        self.body_form: BodyForm = body_form
        self.queries_layout: QueriesLayout = queries_layout

    def __repr__(self) -> str:
        return (
            f"DeepInfraProvider(body_form={self.body_form!r}, "
            f"queries_layout={self.queries_layout!r})"
        )

    def form_for(self, model: str) -> Literal["query", "queries"]:
        """The body form used for ``model``."""
        if self.body_form != "auto":
            return self.body_form
        lowered = model.lower()
        return "queries" if any(marker in lowered for marker in _QUERIES_FORM_MARKERS) else "query"

    def url(self, base_url: str, model: str) -> str:
        # Model ids are "org/name": each segment is percent-encoded, "/" kept.
        return join_url(base_url, model_path(model, keep_slashes=True))

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        body: dict[str, object]
        if self.form_for(model) == "query":
            body = {"query": query, "documents": documents}
        else:
            repeats = len(documents) if self.queries_layout == "repeat" else 1
            body = {"queries": [query] * repeats, "documents": documents}
        return dumps(body)

    def packs_pairs(self, model: str) -> bool:
        # The repeated "queries" form pairs queries[i] with documents[i], so one request
        # may carry several queries; the "single" layout and the "query" form may not.
        return self.form_for(model) == "queries" and self.queries_layout == "repeat"

    def encode_pairs(self, model: str, queries: Sequence[str], documents: Sequence[str]) -> bytes:
        if not self.packs_pairs(model):
            return super().encode_pairs(model, queries, documents)
        return dumps({"queries": queries, "documents": documents})

    def decode_response(self, content: bytes, n_documents: int) -> BatchScores:
        parsed = parse_json(_RerankResponse, content)
        if len(parsed.scores) != n_documents:
            raise ValueError(f"expected {n_documents} scores, got {len(parsed.scores)}")
        status = parsed.inference_status
        return BatchScores(
            scores=parsed.scores,
            input_tokens=parsed.input_tokens,
            request_id=parsed.request_id,
            runtime_ms=status.runtime_ms if status is not None else None,
        )
