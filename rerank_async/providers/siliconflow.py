"""SiliconFlow's Rerank API.

``POST {base_url}/rerank`` (base ``https://api.siliconflow.com/v1``; mainland
China: ``https://api.siliconflow.cn/v1``) with ``Authorization: Bearer
$SILICONFLOW_API_KEY`` (https://docs.siliconflow.cn/en/api-reference/rerank/create-rerank):

- request: ``{"model", "query", "documents": [str, ...], "top_n",
  "return_documents": false, "instruction"?, "max_chunks_per_doc"?,
  "overlap_tokens"?}``;
- response: ``{"id", "results": [{"index", "relevance_score", "document"?},
  ...], "meta": {"tokens": {"input_tokens", "output_tokens"}, "billed_units"}}``
  (older answers put ``tokens`` at the top level), results sorted by relevance;
  mapped back to input order through ``index``.

Instructions: ``instruction=`` goes in ``instruction``, which SiliconFlow
documents for the Qwen3-Reranker models only (others may ignore or reject it).

Long documents: the service's own ``max_chunks_per_doc`` / ``overlap_tokens``
(bge-reranker-v2-m3 and bce-reranker-base_v1 only) score a document as the
best of its chunks; ``LongDocuments`` does the same client-side for every model,
so those fields are not sent.

Limits: no documented number of documents per request (uncertain); 100 keeps a
retry small.

Uncertain (not verified against the live API from here): a per-request cap
and the rate-limit headers. Errors arrive as ``{"code", "message", "data"}``.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from ._indexed import RelevanceResult, RelevanceResultsProvider, ResponseShape, TokenUsage

__all__ = ["SiliconFlowProvider"]

# Where the service lives and which variable holds its key (read once per client).
ENV_SILICONFLOW_API_KEY: Final = "SILICONFLOW_API_KEY"
SILICONFLOW_BASE_URL: Final = "https://api.siliconflow.com/v1"


class _Tokens(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_tokens: int | None = None


class _Meta(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tokens: _Tokens | None = None


class _SiliconFlowResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[RelevanceResult]
    id: str | None = None
    meta: _Meta | None = None
    tokens: _Tokens | None = None

    @property
    def usage(self) -> TokenUsage | None:
        """The input tokens SiliconFlow reports, where the shared decoder reads them."""
        tokens = self.meta.tokens if self.meta is not None and self.meta.tokens else self.tokens
        if tokens is None or tokens.input_tokens is None:
            return None
        return TokenUsage(prompt_tokens=tokens.input_tokens)


class SiliconFlowProvider(RelevanceResultsProvider):
    """SiliconFlow's ``/rerank`` endpoint (``instruction=`` as ``instruction``)."""

    name = "siliconflow"
    default_base_url = SILICONFLOW_BASE_URL
    # SiliconFlow's instruction-following reranker.
    default_model = "Qwen/Qwen3-Reranker-8B"
    api_key_env_vars = (ENV_SILICONFLOW_API_KEY,)
    path = "/rerank"
    response_shape = ResponseShape(_SiliconFlowResponse, "results", "relevance_score")
    instruction_field = "instruction"
    # No documented cap: 100 keeps a request and its retry small.
    default_batch_size = 100
    # Hosted, rate-limited per key (RPM and TPM by tier): 8 in flight.
    default_max_concurrency = 8

    def extra_fields(self) -> dict[str, object]:
        return {"return_documents": False}
