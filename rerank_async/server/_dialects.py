"""The services the local server speaks, one class each, behind ``Dialect``.

Every dialect runs through the same pipeline (``_pipeline``); a dialect only says
what its bodies, answers and errors look like:

- ``POST /v1/inference/{model}`` (DeepInfra, as documented on DeepInfra's reranker
  model pages, e.g. ``Qwen/Qwen3-Reranker-4B``): ``{"query": str, "documents": [str,
  ...]}`` or ``{"queries": [str, ...], "documents": [...]}``, answered with ``{"scores":
  [...], "input_tokens": n, "request_id": ..., "inference_status": {...}}`` in input
  order; errors are ``{"error": {"message": ...}}``, invalid bodies FastAPI's 422
  ``{"detail": ...}``; over ``max_batch_size`` the answer is 413.
- ``POST /v1/rerank`` and ``POST /v2/rerank`` (Cohere): ``{"model", "query", "documents":
  [str | {"text"}, ...], "top_n"?}`` answered with ``{"id", "results": [{"index",
  "relevance_score"}, ...], "meta": {...}}`` sorted by relevance and cut to ``top_n``;
  errors are ``{"message": ...}``; over ``max_batch_size`` the answer is 400 "too many
  documents: N documents exceed the maximum of M per request". Other fields (Jina's and
  Together's ``return_documents``) are accepted and ignored.
- ``POST /rerank`` (TEI): ``{"query", "texts": [str, ...], "return_text"?, ...}`` answered
  with a bare array ``[{"index", "score"}, ...]`` sorted by relevance; errors are ``{"error",
  "error_type"}``; over ``max_batch_size`` the answer is TEI's own 422 "batch size N >
  maximum allowed batch size M". ``raw_scores`` is accepted, but the lexical scorer has no
  logits: scores are always in [0, 1].

Index-based answers (Cohere, TEI) let the client's index mapping be tested over real HTTP.
"""

from __future__ import annotations

import abc
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from starlette.responses import JSONResponse, Response

from ._http import InvalidBodyError, json_object, required_string, string_list
from ._scoring import count_tokens

__all__ = [
    "CohereDialect",
    "DeepInfraDialect",
    "Dialect",
    "IndexedDialect",
    "ReplyContext",
    "RerankCall",
    "TEIDialect",
    "parse_body",
]

# Cohere bills one search unit per query and up to 100 documents.
_DOCUMENTS_PER_SEARCH_UNIT: Final = 100


@dataclass(frozen=True, slots=True)
class RerankCall:
    """A valid request body, whatever the dialect.

    Attributes:
        queries: One query, or one per document (DeepInfra's ``queries`` form).
        documents: The texts to score.
        model: The model named in the body or the path, if the service names one.
        top_n: How many results to return (Cohere), or all.
        return_text: Echo each document's text in the answer (TEI).
    """

    queries: list[str]
    documents: list[str]
    model: str | None = None
    top_n: int | None = None
    return_text: bool = False


@dataclass(frozen=True, slots=True)
class ReplyContext:
    """What a 200 answer carries besides the scores.

    Attributes:
        request_id: The request's id, echoed in the body where the service does.
        started: ``time.perf_counter()`` when the request arrived, for runtimes.
        one_missing: Send one score too few (one too many for an empty call), so
            the client's count check must fire.
    """

    request_id: str
    started: float
    one_missing: bool = False


class Dialect(abc.ABC):
    """One service's route, request body, answer and error shapes.

    Attributes:
        path: The route, in Starlette's syntax.
        model_in_path: The model is a path parameter ``model``, checked before the body.
        unauthorized_message: The 401 message.
    """

    path: str
    model_in_path: bool = False
    unauthorized_message: str

    @abc.abstractmethod
    def parse(self, raw: bytes, model: str | None) -> RerankCall:
        """The call in ``raw`` (``model`` from the path, if any); ``InvalidBodyError`` if bad."""

    @abc.abstractmethod
    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        """An error answer in the service's shape."""

    def invalid_body(self, message: str, headers: dict[str, str]) -> Response:
        """The answer to a body ``parse`` rejected."""
        return self.error(422, message, headers)

    def model_not_found(self, model: str, headers: dict[str, str]) -> Response:
        """The 404 answer for a model the server does not serve."""
        return self.error(404, f"model '{model}' not found", headers)

    @abc.abstractmethod
    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        """The service's answer to a request over its batch limit."""

    @abc.abstractmethod
    def payload(self, call: RerankCall, scores: list[float], reply: ReplyContext) -> object:
        """The JSON answer for ``scores`` (in input order), as ``reply`` asks."""

    @abc.abstractmethod
    def without_scores(self, payload: object) -> object:
        """``payload`` with its scores taken out (the "missing scores" malformation)."""


class IndexedDialect(Dialect):
    """A service that answers with ``(index, score)`` pairs, best first (Cohere, TEI)."""

    def payload(self, call: RerankCall, scores: list[float], reply: ReplyContext) -> object:
        # Best first, ties by input position: what every index-based service does.
        ranked = sorted(enumerate(scores), key=lambda pair: (-pair[1], pair[0]))
        if reply.one_missing:
            # One index missing, so the client's "every index exactly once" check must fire.
            ranked = ranked[:-1]
        return self.ranked_payload(call, ranked, reply.request_id)

    @abc.abstractmethod
    def ranked_payload(
        self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str
    ) -> object:
        """The JSON answer for ``(index, score)`` pairs, best first."""


# -- DeepInfra ------------------------------------------------------------------------------------


def parse_body(raw: bytes) -> tuple[list[str], list[str]]:
    """Validate a DeepInfra rerank request body.

    A field set to ``null`` counts as absent, so ``{"query": "q", "queries": null, ...}`` is
    accepted (clients that serialize every optional field send that).

    Args:
        raw: The request body.

    Returns:
        ``(queries, documents)``; ``queries`` has 1 or ``len(documents)`` entries.

    Raises:
        InvalidBodyError: With the 422 detail.
    """
    try:
        body = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        msg = f"Invalid JSON body: {err}"
        raise InvalidBodyError(msg) from err
    if not isinstance(body, dict):
        msg = "Request body must be a JSON object"
        raise InvalidBodyError(msg)
    if body.get("documents") is None:
        msg = "Field required: documents"
        raise InvalidBodyError(msg)
    documents = string_list(body["documents"], "documents")
    query, queries = body.get("query"), body.get("queries")
    if query is not None and queries is not None:
        msg = "Provide either query or queries, not both"
        raise InvalidBodyError(msg)
    if query is not None:
        if not isinstance(query, str):
            msg = f"query must be a string, got {type(query).__name__}"
            raise InvalidBodyError(msg)
        return [query], documents
    if queries is None:
        msg = "Field required: query (or queries)"
        raise InvalidBodyError(msg)
    queries = string_list(queries, "queries")
    if len(queries) not in (1, len(documents)):
        msg = (
            f"queries has length {len(queries)}; expected 1 or the number of documents "
            f"({len(documents)})"
        )
        raise InvalidBodyError(msg)
    return queries, documents


def _input_tokens(queries: list[str], documents: list[str]) -> int:
    doc_tokens = sum(count_tokens(d) for d in documents)
    if len(queries) == 1:
        return count_tokens(queries[0]) * len(documents) + doc_tokens
    return sum(count_tokens(q) for q in queries) + doc_tokens


def _detail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


class BadRequestDialect(IndexedDialect):
    """A service that answers a bad body, and a request over its cap, with a 400."""

    def invalid_body(self, message: str, headers: dict[str, str]) -> Response:
        return self.error(400, message, headers)

    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        message = f"too many documents: {n} documents exceed the maximum of {maximum} per request"
        return self.error(400, message, headers)


class DeepInfraDialect(Dialect):
    """DeepInfra's ``/v1/inference/{model}``: scores in input order."""

    path = "/v1/inference/{model:path}"
    model_in_path = True
    unauthorized_message = "Invalid API key"

    def parse(self, raw: bytes, model: str | None) -> RerankCall:
        queries, documents = parse_body(raw)
        return RerankCall(queries=queries, documents=documents, model=model)

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        # DeepInfra's own errors (auth, model, size, rate) use {"error": {"message": ...}};
        # validation errors use FastAPI's {"detail": ...}.
        return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)

    def invalid_body(self, message: str, headers: dict[str, str]) -> Response:
        return _detail(422, message, headers)

    def model_not_found(self, model: str, headers: dict[str, str]) -> Response:
        return self.error(404, f"Model not found: {model}", headers)

    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        return self.error(413, f"batch size {n} > maximum allowed batch size {maximum}", headers)

    def payload(self, call: RerankCall, scores: list[float], reply: ReplyContext) -> object:
        tokens = _input_tokens(call.queries, call.documents)
        if reply.one_missing:
            scores = scores[:-1] if scores else [0.0]
        return {
            "scores": scores,
            "input_tokens": tokens,
            "request_id": reply.request_id,
            "inference_status": {
                "status": "succeeded",
                "runtime_ms": int((time.perf_counter() - reply.started) * 1000),
                "cost": 0.0,
                "tokens_input": tokens,
            },
        }

    def without_scores(self, payload: object) -> object:
        assert isinstance(payload, dict)
        del payload["scores"]
        return payload


# -- Cohere ---------------------------------------------------------------------------------------


class CohereDialect(BadRequestDialect):
    """Cohere's ``/v1/rerank`` and ``/v2/rerank``.

    Args:
        version: ``"1"`` or ``"2"``: the route, and ``meta.api_version``.
    """

    unauthorized_message = "invalid api token"

    def __init__(self, version: str) -> None:
        self.version = version
        self.path = f"/v{version}/rerank"

    def parse(self, raw: bytes, model: str | None) -> RerankCall:
        body = json_object(raw)
        model = required_string(body, "model")
        query = required_string(body, "query")
        documents = body.get("documents")
        if not isinstance(documents, list):
            msg = "documents must be a list of strings or {'text': ...} objects"
            raise InvalidBodyError(msg)
        texts = [
            item["text"] if isinstance(item, dict) and isinstance(item.get("text"), str) else item
            for item in documents
        ]
        top_n = body.get("top_n")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)):
            msg = f"top_n must be an integer, got {type(top_n).__name__}"
            raise InvalidBodyError(msg)
        if top_n is not None and top_n < 1:
            msg = f"top_n must be at least 1, got {top_n}"
            raise InvalidBodyError(msg)
        return RerankCall(
            queries=[query],
            documents=string_list(texts, "documents"),
            model=model,
            top_n=top_n,
        )

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        return JSONResponse(
            {"id": headers.get("x-request-id"), "message": message},
            status_code=status,
            headers=headers,
        )

    def ranked_payload(
        self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str
    ) -> object:
        kept = ranked if call.top_n is None else ranked[: call.top_n]
        return {
            "id": request_id,
            "results": [{"index": index, "relevance_score": score} for index, score in kept],
            "meta": {
                "api_version": {"version": self.version},
                "billed_units": {
                    "search_units": max(1, math.ceil(len(ranked) / _DOCUMENTS_PER_SEARCH_UNIT))
                },
            },
        }

    def without_scores(self, payload: object) -> object:
        assert isinstance(payload, dict)
        del payload["results"]
        return payload


# -- TEI ------------------------------------------------------------------------------------------

# TEI's error_type per status (text-embeddings-inference's ErrorType).
_TEI_ERROR_TYPES: Final = {
    401: "Unauthorized",
    413: "Validation",
    422: "Validation",
    429: "Overloaded",
    503: "Unhealthy",
}


class TEIDialect(IndexedDialect):
    """Text Embeddings Inference's ``/rerank``; it serves one model and names none."""

    path = "/rerank"
    unauthorized_message = "invalid api token"

    def parse(self, raw: bytes, model: str | None) -> RerankCall:
        body = json_object(raw)
        query = required_string(body, "query")
        if body.get("texts") is None:
            msg = "missing field `texts`"
            raise InvalidBodyError(msg)
        texts = string_list(body["texts"], "texts")
        if not texts:
            msg = "`texts` cannot be empty"
            raise InvalidBodyError(msg)
        return_text = body.get("return_text", False)
        if not isinstance(return_text, bool):
            msg = f"return_text must be a boolean, got {type(return_text).__name__}"
            raise InvalidBodyError(msg)
        return RerankCall(queries=[query], documents=texts, return_text=return_text)

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        error_type = _TEI_ERROR_TYPES.get(status, "Backend")
        return JSONResponse(
            {"error": message, "error_type": error_type}, status_code=status, headers=headers
        )

    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        return self.error(422, f"batch size {n} > maximum allowed batch size {maximum}", headers)

    def ranked_payload(
        self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str
    ) -> object:
        if call.return_text:
            return [
                {"index": index, "score": score, "text": call.documents[index]}
                for index, score in ranked
            ]
        return [{"index": index, "score": score} for index, score in ranked]

    def without_scores(self, payload: object) -> object:
        assert isinstance(payload, list)
        return [{"index": item["index"]} for item in payload]
