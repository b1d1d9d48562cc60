"""Alibaba Cloud Model Studio (DashScope): the OpenAI-compatible rerank endpoint.

``POST {base_url}/reranks`` (base ``https://dashscope-intl.aliyuncs.com/compatible-api/v1``;
mainland China: ``https://dashscope.aliyuncs.com/compatible-api/v1``) with
``Authorization: Bearer $DASHSCOPE_API_KEY``
(https://docs.qwencloud.com/api-reference/rerank/openai-rerank and
https://www.alibabacloud.com/help/en/model-studio/text-rerank-api):

- request: ``{"model": "qwen3-rerank", "query", "documents": [str, ...],
  "top_n", "instruct"?}``;
- response: ``{"id", "object": "list", "model", "results": [{"index",
  "relevance_score", "document"?}, ...], "usage": {"total_tokens"}}``, results
  sorted by relevance; mapped back to input order through ``index``.

Limits (qwen3-rerank): at most 500 documents per request, 4,000 tokens per
query or document (longer ones are truncated by the service), and 120,000
tokens per request counted as query tokens x documents + the documents'
tokens. The client never plans more than 500 documents per request and cuts
batches by its token estimate to stay under 120,000: a 1,200-document call is
several requests, never a 400 (WeKnora's fallback to unranked results at this
cap is the failure this avoids).

Instructions: ``instruction=`` goes in ``instruct`` (default on the service:
"Given a web search query, retrieve relevant passages that answer the query.").

Uncertain (not verified against the live API from here): the compatible
endpoint's error shape (the native API answers ``{"code", "message",
"request_id"}``; both are read) and its rate-limit headers.
"""

from __future__ import annotations

from typing import Final

from ._base import ProviderCaps
from ._indexed import RelevanceResultsProvider

__all__ = ["DashScopeProvider"]

# Where the service lives and which variable holds its key (read once per client).
ENV_DASHSCOPE_API_KEY: Final = "DASHSCOPE_API_KEY"
DASHSCOPE_BASE_URL: Final = "https://dashscope-intl.aliyuncs.com/compatible-api/v1"
DASHSCOPE_CAPS: Final = ProviderCaps(
    documents=500, tokens_per_request=120_000, tokens_per_document=4_000
)


class DashScopeProvider(RelevanceResultsProvider):
    """DashScope's OpenAI-compatible ``/reranks`` endpoint (``instruction=`` as ``instruct``)."""

    name = "dashscope"
    default_base_url = DASHSCOPE_BASE_URL
    default_model = "qwen3-rerank"
    api_key_env_vars = (ENV_DASHSCOPE_API_KEY,)
    path = "/reranks"
    instruction_field = "instruct"
    caps_table = DASHSCOPE_CAPS
    # A fifth of the 500-document cap: small retries; the token budget cuts further.
    default_batch_size = 100
    # Hosted, rate-limited per key (requests and tokens per minute): 8 in flight.
    default_max_concurrency = 8
