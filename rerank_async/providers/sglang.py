"""SGLang's rerank endpoint, self-hosted (``python -m sglang.launch_server``).

``POST {base_url}/v1/rerank``; a bearer token only when the server was
started with ``--api-key`` (``$SGLANG_API_KEY``). Source: SGLang's
``docs/supported_models/rerank_models.md`` and
``python/sglang/srt/entrypoints/openai/protocol.py`` (``V1RerankReqInput``,
``RerankResponse``):

- request: ``{"model", "query", "documents": [str, ...], "top_n",
  "return_documents": false, "instruct"?}``;
- response: a bare array ``[{"index", "score", "document"?, "meta_info"?},
  ...]`` sorted by relevance (not a ``results`` object); mapped back to input
  order through ``index``.

Instructions: ``instruction=`` goes in ``instruct`` (decoder-only rerankers
such as Qwen3-Reranker; a cross-encoder ignores it).

Limits: none per request; each pair must fit the model's context. The server
serves one model; ``model`` defaults to SGLang's own default name.

Uncertain (not verified against a live server from here): older versions
accept only ``query`` and ``documents`` (pydantic ignores the other fields) and
always echo ``document``. Errors arrive as ``{"object": "error", "message",
"type", "code"}``.
"""

from __future__ import annotations

from typing import Final

from pydantic import RootModel

from ._indexed import RelevanceResultsProvider, ResponseShape, ScoreResult

__all__ = ["SGLangProvider"]

# Where the server listens by default and which variable holds its key.
ENV_SGLANG_API_KEY: Final = "SGLANG_API_KEY"
SGLANG_BASE_URL: Final = "http://localhost:30000"
# SGLang's DEFAULT_MODEL_NAME: a server answers for its one model under this name.
SGLANG_DEFAULT_MODEL: Final = "default"


class _SGLangResponse(RootModel[list[ScoreResult]]):
    pass


class SGLangProvider(RelevanceResultsProvider):
    """SGLang's ``/v1/rerank`` endpoint (``instruction=`` as ``instruct``)."""

    name = "sglang"
    default_base_url = SGLANG_BASE_URL
    default_model = SGLANG_DEFAULT_MODEL
    api_key_env_vars = (ENV_SGLANG_API_KEY,)
    path = "/v1/rerank"
    response_shape = ResponseShape(_SGLangResponse, "root", "score", label="body")
    instruction_field = "instruct"
    # SGLang batches concurrent requests itself (continuous batching): 64 per request,
    # 16 in flight keep it fed, as for vLLM.
    default_batch_size = 64
    default_max_concurrency = 16

    def extra_fields(self) -> dict[str, object]:
        return {"return_documents": False}
