"""ZeroEntropy's reranker (zerank models).

``POST {base_url}/models/rerank`` (base ``https://api.zeroentropy.dev/v1``) with
``Authorization: Bearer $ZEROENTROPY_API_KEY``
(https://docs.zeroentropy.dev/api-reference/models/rerank):

- request: ``{"model", "query", "documents": [str, ...], "top_n"}`` (and an
  optional ``"latency": "fast" | "slow"``, not sent: the service then tries
  fast and falls back to slow);
- response: ``{"results": [{"index", "relevance_score"}, ...],
  "total_bytes"?, "total_tokens"?, ...}``, results sorted by relevance; mapped
  back to input order through ``index``.

Limits: by bytes, not documents. A request is at most 5,000,000 bytes, counted
as the sum over documents of 150 + the query's UTF-8 bytes + the document's;
an organization gets 500,000 bytes (fast) per minute and 1,000 requests per
minute by default, after which calls are slowed, then answered 429. The
client's token estimate (4 characters per token) makes the request cap a
budget of 1,250,000 tokens; set ``max_tokens_per_minute`` to a quarter of your
bytes-per-minute limit to pace a bulk job under it.

Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against the live API from here): whether the bytes
limits are sent as rate-limit headers, and the error wording. Errors arrive as
``{"detail": ...}``.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from ._base import ProviderCaps
from ._indexed import RelevanceResult, RelevanceResultsProvider, ResponseShape, TokenUsage

__all__ = ["ZeroEntropyProvider"]

# Where the service lives and which variable holds its key (read once per client).
ENV_ZEROENTROPY_API_KEY: Final = "ZEROENTROPY_API_KEY"
ZEROENTROPY_BASE_URL: Final = "https://api.zeroentropy.dev/v1"
# 5,000,000 bytes per request at about 4 bytes per estimated token.
ZEROENTROPY_CAPS: Final = ProviderCaps(tokens_per_request=1_250_000)


class _ZeroEntropyResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[RelevanceResult]
    total_tokens: int | None = None

    @property
    def usage(self) -> TokenUsage | None:
        """The tokens ZeroEntropy reports, where the shared decoder reads them."""
        return None if self.total_tokens is None else TokenUsage(total_tokens=self.total_tokens)


class ZeroEntropyProvider(RelevanceResultsProvider):
    """ZeroEntropy's ``/models/rerank`` endpoint."""

    name = "zeroentropy"
    default_base_url = ZEROENTROPY_BASE_URL
    default_model = "zerank-2"
    api_key_env_vars = (ENV_ZEROENTROPY_API_KEY,)
    path = "/models/rerank"
    response_shape = ResponseShape(_ZeroEntropyResponse, "results", "relevance_score")
    caps_table = ZEROENTROPY_CAPS
    # No documented document cap: 100 keeps a request and its retry small.
    default_batch_size = 100
    # 1,000 requests per minute by default: 8 in flight stay well under it.
    default_max_concurrency = 8
