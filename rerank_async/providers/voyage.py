"""Voyage AI's Reranker API.

``POST {base_url}/v1/rerank`` with ``Authorization: Bearer $VOYAGE_API_KEY``
(https://docs.voyageai.com/reference/reranker-api):

- request: ``{"model", "query", "documents": [str, ...], "top_k",
  "truncation": true, "return_documents": false}``;
- response: ``{"object": "list", "data": [{"index", "relevance_score",
  "document"?}, ...], "model", "usage": {"total_tokens"}}``, data sorted by
  relevance; mapped back to input order through ``index``.

Limits: at most 1,000 documents per request, and a token budget: query tokens
x number of documents + the documents' tokens <= 600K (rerank-2.5,
rerank-2.5-lite, rerank-2, rerank-2-lite) or 300K (rerank-1, rerank-lite-1).
``max_tokens_per_request`` gives the client that budget; it then cuts batches
by estimated tokens (about 4 characters per token) as well as by count. The
estimate can fall short for scripts that tokenize densely; a 400 that says
the batch has too many tokens is then taken as "batch too large" and the
batch is halved.

Scores: ``relevance_score`` as the model gives it, in [0, 1] in practice
(not a raw logit); no sigmoid is needed.

Instructions: rerank-2.5 and rerank-2.5-lite follow natural-language
instructions given in the query (Voyage's rerank-2.5 announcement, August
2025); there is no separate field. ``instruction=`` is put before the query
on its own line for those models; other models raise ``ValueError``.

Uncertain (not verified against the live API from here): the wording of the
too-many-tokens and too-many-documents errors (matched loosely), and the exact
layout Voyage recommends for an instruction inside the query. Errors
arrive as ``{"detail": "..."}``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from pydantic import BaseModel

from ._indexed import IndexedProvider, RelevanceResult, ResponseShape, TokenUsage
from ._wire import RESPONSE_MODEL_CONFIG, dumps, join_url

__all__ = ["VoyageProvider"]

# Where the service lives and which variables hold its key (read once per client).
ENV_VOYAGE_API_KEY: Final = "VOYAGE_API_KEY"
VOYAGE_BASE_URL: Final = "https://api.voyageai.com"

# Tokens per request (query tokens x documents + document tokens), per Voyage's docs.
VOYAGE_TOKEN_BUDGET: Final = 600_000
VOYAGE_LEGACY_TOKEN_BUDGET: Final = 300_000
_LEGACY_MODELS: Final = frozenset({"rerank-1", "rerank-lite-1"})
# The instruction-following generation (rerank-2.5, rerank-2.5-lite).
_INSTRUCTED_PREFIX: Final = "rerank-2.5"
# "The max allowed tokens per submitted batch is 600000. Your batch has ..." and kin.
_TOO_MANY_TOKENS: Final = re.compile(
    r"tokens per (?:submitted )?(?:batch|request)|too many tokens", re.IGNORECASE
)


class _VoyageResponse(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    data: list[RelevanceResult]
    usage: TokenUsage | None = None


class VoyageProvider(IndexedProvider):
    """Voyage AI's ``/v1/rerank`` endpoint, with its per-request token budget.

    Args:
        truncation: Let Voyage truncate a query or document over the model's
            context instead of answering 400.
    """

    name = "voyage"
    default_base_url = VOYAGE_BASE_URL
    api_key_env_vars = (ENV_VOYAGE_API_KEY,)
    # A tenth of the 1,000-document cap: small retries, few requests per call;
    # the token budget cuts batches of long documents further.
    default_batch_size = 100
    # Hosted, with per-minute request and token limits per key: 8 in flight.
    default_max_concurrency = 8
    response_shape = ResponseShape(_VoyageResponse, "data", "relevance_score")

    def __init__(self, *, truncation: bool = True) -> None:
        self.truncation = truncation

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, "/v1/rerank")

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(
            {
                "model": model,
                "query": query,
                "documents": documents,
                "top_k": len(documents),
                "truncation": self.truncation,
                "return_documents": False,
            }
        )

    def accepts_instruction(self, model: str) -> bool:
        return model.rsplit("/", 1)[-1].lower().startswith(_INSTRUCTED_PREFIX)

    def encode_instructed(
        self, model: str, query: str, documents: Sequence[str], instruction: str
    ) -> bytes:
        if not self.accepts_instruction(model):
            return super().encode_instructed(model, query, documents, instruction)
        return self.encode_request(model, f"{instruction}\n{query}", documents)

    def max_tokens_per_request(self, model: str) -> int | None:
        """600K tokens per request, or 300K for ``rerank-1`` and ``rerank-lite-1``."""
        bare = model.rsplit("/", 1)[-1].lower()
        return VOYAGE_LEGACY_TOKEN_BUDGET if bare in _LEGACY_MODELS else VOYAGE_TOKEN_BUDGET

    def is_batch_too_large(self, status_code: int, message: str) -> bool:
        return super().is_batch_too_large(status_code, message) or (
            status_code == 400 and _TOO_MANY_TOKENS.search(message) is not None
        )
