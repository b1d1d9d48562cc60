"""Infinity (michaelfeil/infinity), self-hosted.

``POST {base_url}/rerank``; a bearer token only when the server was started
with ``--api-key`` (``$INFINITY_API_KEY``); OpenAPI at ``{base_url}/docs``:

- request: ``{"model", "query", "documents": [str, ...], "top_n",
  "return_documents": false, "raw_scores"}``;
- response: ``{"object": "rerank", "id", "model", "created", "results":
  [{"index", "relevance_score", "document"?}, ...], "usage": {"prompt_tokens",
  "total_tokens"}}``, results sorted by relevance; mapped back to input order
  through ``index``.

Limits: the server accepts at most 2,048 documents per request by default;
over it FastAPI answers 422 ``{"detail": [{"loc": ["body", "documents"],
"msg": "List should have at most 2048 items after validation, not 2049"}]}``,
which the client takes as "batch too large" with 2,048 as the size to use.

Scores: with ``raw_scores=False`` (the default) Infinity applies a sigmoid,
so scores are probabilities in [0, 1]; with ``raw_scores=True`` they are raw
logits, and ``sigmoid=True`` maps them through 1/(1+e^-x) here.

Uncertain (not verified against a live server from here): older Infinity
versions may not accept ``top_n`` or ``raw_scores``.
"""

from __future__ import annotations

from typing import Final

from ._indexed import RelevanceResultsProvider

__all__ = ["InfinityProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_INFINITY_API_KEY: Final = "INFINITY_API_KEY"
INFINITY_BASE_URL: Final = "http://localhost:7997"


class InfinityProvider(RelevanceResultsProvider):
    """Infinity's ``/rerank`` endpoint.

    Args:
        raw_scores: Ask for raw logits instead of sigmoid probabilities.
        sigmoid: Map raw logits through a sigmoid here; needs ``raw_scores``.

    Raises:
        ValueError: ``sigmoid=True`` without ``raw_scores=True``.
    """

    name = "infinity"
    default_base_url = INFINITY_BASE_URL
    api_key_env_vars = (ENV_INFINITY_API_KEY,)
    path = "/rerank"
    # Twice Infinity's default GPU batch (32) keeps its dynamic batcher fed;
    # far below the 2,048 documents it accepts per request.
    default_batch_size = 64
    # A self-hosted server queues what its GPU cannot take; 16 in flight keep it busy.
    default_max_concurrency = 16

    def __init__(self, *, raw_scores: bool = False, sigmoid: bool = False) -> None:
        if sigmoid and not raw_scores:
            raise ValueError(
                "sigmoid=True needs raw_scores=True: without it Infinity already returns "
                "probabilities"
            )
        self.raw_scores = raw_scores
        self.sigmoid = sigmoid

    def extra_fields(self) -> dict[str, object]:
        return {"return_documents": False, "raw_scores": self.raw_scores}
