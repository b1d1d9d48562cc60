"""Self-hosted engines the local server also speaks: SGLang and llama.cpp's ``llama-server``.

Both serve ``POST /v1/rerank``, which the Cohere dialect already answers on this
server, so each lives under a prefix: pass ``base_url=f"{server.url}/sglang"`` (or
``/llamacpp``) and the provider appends its own ``/v1/rerank``.

- ``/sglang/v1/rerank`` (SGLang's ``V1RerankReqInput``): ``{"query", "documents":
  [str, ...], "model"?, "instruct"?, "top_n"?, "return_documents"?}`` answered with a
  bare array ``[{"index", "score", "document"?, "meta_info"}, ...]`` sorted by relevance,
  cut to ``top_n``; errors are ``{"object": "error", "message", "type", "code"}``. The
  lexical scorer ignores ``instruct`` (a real Qwen3-Reranker would read it).
- ``/llamacpp/v1/rerank`` (llama-server's Jina-style endpoint): ``{"query",
  "documents", "model"?, "top_n"?}`` answered with ``{"model", "object": "list",
  "usage": {"prompt_tokens", "total_tokens"}, "results": [{"index",
  "relevance_score"}, ...]}`` sorted by relevance; errors are ``{"error": {"code",
  "message", "type"}}``.
"""

from __future__ import annotations

from typing import Final

from starlette.responses import JSONResponse, Response

from ._dialects import BadRequestDialect, RerankCall
from ._http import InvalidBodyError, json_object, required_string, string_list
from ._scoring import count_tokens

__all__ = ["LlamaCppDialect", "SGLangDialect"]

# SGLang's and llama.cpp's error types per status (their OpenAI-style error bodies).
_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "unavailable_error",
}


def _parse_common(raw: bytes, *, model_required: bool) -> tuple[dict[str, object], RerankCall]:
    body = json_object(raw)
    query = required_string(body, "query")
    if body.get("documents") is None:
        msg = "missing required field: documents"
        raise InvalidBodyError(msg)
    documents = string_list(body["documents"], "documents")
    if not documents:
        msg = "documents must not be empty"
        raise InvalidBodyError(msg)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        msg = f"model must be a string, got {type(model).__name__}"
        raise InvalidBodyError(msg)
    if model_required and model is None:
        msg = "missing required field: model"
        raise InvalidBodyError(msg)
    top_n = body.get("top_n")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        msg = f"top_n must be a positive integer, got {top_n!r}"
        raise InvalidBodyError(msg)
    return body, RerankCall(queries=[query], documents=documents, model=model, top_n=top_n)


def _cut(call: RerankCall, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return ranked if call.top_n is None else ranked[: call.top_n]


class SGLangDialect(BadRequestDialect):
    """SGLang's ``/v1/rerank`` (under ``/sglang``): a bare array of ``{index, score}``."""

    path = "/sglang/v1/rerank"
    unauthorized_message = "Unauthorized"

    def parse(self, raw: bytes, model: str | None) -> RerankCall:
        body, call = _parse_common(raw, model_required=False)
        instruct = body.get("instruct")
        if instruct is not None and not isinstance(instruct, str):
            msg = f"instruct must be a string, got {type(instruct).__name__}"
            raise InvalidBodyError(msg)
        return_documents = body.get("return_documents", True)
        if not isinstance(return_documents, bool):
            msg = f"return_documents must be a boolean, got {type(return_documents).__name__}"
            raise InvalidBodyError(msg)
        return RerankCall(
            queries=call.queries,
            documents=call.documents,
            model=call.model,
            top_n=call.top_n,
            return_text=return_documents,
        )

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        body = {
            "object": "error",
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": None,
            "code": status,
        }
        return JSONResponse(body, status_code=status, headers=headers)

    def ranked_payload(
        self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str
    ) -> object:
        items: list[dict[str, object]] = []
        for index, score in _cut(call, ranked):
            item: dict[str, object] = {"index": index, "score": score}
            if call.return_text:
                item["document"] = call.documents[index]
            item["meta_info"] = {"id": request_id}
            items.append(item)
        return items

    def without_scores(self, payload: object) -> object:
        assert isinstance(payload, list)
        return [{"index": item["index"]} for item in payload]


class LlamaCppDialect(BadRequestDialect):
    """llama-server's ``/v1/rerank`` (under ``/llamacpp``): ``results`` of ``relevance_score``."""

    path = "/llamacpp/v1/rerank"
    unauthorized_message = "Invalid API Key"

    def parse(self, raw: bytes, model: str | None) -> RerankCall:
        return _parse_common(raw, model_required=False)[1]

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        body = {
            "error": {
                "code": status,
                "message": message,
                "type": _ERROR_TYPES.get(status, "server_error"),
            }
        }
        return JSONResponse(body, status_code=status, headers=headers)

    def ranked_payload(
        self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str
    ) -> object:
        tokens = sum(count_tokens(call.queries[0]) + count_tokens(d) for d in call.documents)
        return {
            "model": call.model or "default",
            "object": "list",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "results": [
                {"index": index, "relevance_score": score} for index, score in _cut(call, ranked)
            ],
        }

    def without_scores(self, payload: object) -> object:
        assert isinstance(payload, dict)
        del payload["results"]
        return payload
