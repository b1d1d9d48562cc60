"""llama.cpp's ``llama-server`` rerank endpoint, self-hosted (``llama-server --reranking``).

``POST {base_url}/v1/rerank`` (also served as ``/rerank`` and ``/v1/reranking``);
a bearer token only when the server was started with ``--api-key``
(``$LLAMA_API_KEY``). Source: llama.cpp's ``tools/server/README.md``
("POST /reranking: Rerank documents according to a given query", Jina-compatible):

- request: ``{"model", "query", "documents": [str, ...], "top_n"}``;
- response: ``{"model", "object": "list", "usage": {"prompt_tokens",
  "total_tokens"}, "results": [{"index", "relevance_score"}, ...]}``, results
  sorted by relevance; mapped back to input order through ``index``.

Scores: the model's raw output (a logit for most GGUF rerankers); pass
``sigmoid=True`` to map them to [0, 1].

Limits: each pair must fit the server's context (``-c``, split over
``--parallel`` slots); the server batches up to ``-ub`` tokens. No document cap.

Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against a live server from here): whether ``top_n``
is honoured by every version (all results are read either way). Errors arrive
as ``{"error": {"code", "message", "type"}}``.
"""

from __future__ import annotations

from typing import Final

from ._indexed import RelevanceResultsProvider

__all__ = ["LlamaCppProvider"]

# Where the server listens by default and which variable holds its key.
ENV_LLAMA_API_KEY: Final = "LLAMA_API_KEY"
LLAMACPP_BASE_URL: Final = "http://localhost:8080"


class LlamaCppProvider(RelevanceResultsProvider):
    """llama-server's ``/v1/rerank`` endpoint.

    Args:
        sigmoid: Map the raw scores through 1/(1+e^-x) to [0, 1].
    """

    name = "llamacpp"
    default_base_url = LLAMACPP_BASE_URL
    # llama-server serves the one model it loaded and ignores the name.
    default_model = "default"
    api_key_env_vars = (ENV_LLAMA_API_KEY,)
    path = "/v1/rerank"
    # A llama-server has few slots (--parallel); 32 pairs per request and 4 in flight
    # keep them busy without long queues.
    default_batch_size = 32
    default_max_concurrency = 4

    def __init__(self, *, sigmoid: bool = False) -> None:
        self.sigmoid = sigmoid
