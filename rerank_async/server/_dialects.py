"""Other services' rerank APIs on the local server: Cohere and TEI, index-based answers.

Real services answer with ``{index, score}`` pairs sorted by relevance rather than scores in
input order; these routes let the client's index mapping be tested over real HTTP, with the
same scorer, auth, stats, capacity queue and fault injection as the DeepInfra route:

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

One request goes through the same steps as on the DeepInfra route: auth (401), body (Cohere
400, TEI 422), model (404, Cohere only: TEI serves one model), batch size, the fault plan
(503, 429), the capacity queue, the simulated latency, then a dropped connection, a
malformed 200 (truncated JSON, one result missing, or no scores), or the real answer.
"""

from __future__ import annotations

import abc
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._app import InvalidBodyError, _DroppedResponse, _dumps, _string_list
from ._faults import Fault, FaultPlan, Malformation
from ._scoring import score_pairs

if TYPE_CHECKING:
    from ._app import _RerankService

__all__ = ["CohereDialect", "Dialect", "TEIDialect", "dialect_routes"]

_JSON: Final = "application/json"
# Cohere bills one search unit per query and up to 100 documents.
_DOCUMENTS_PER_SEARCH_UNIT: Final = 100


@dataclass(frozen=True, slots=True)
class RerankCall:
    """A valid request body, whatever the dialect."""

    query: str
    documents: list[str]
    model: str | None = None
    top_n: int | None = None
    return_text: bool = False


class Dialect(abc.ABC):
    """One service's request body, answer and error shapes."""

    name: str
    # The status of an invalid body: FastAPI/axum 422 or a service's own 400.
    invalid_body_status: int

    @abc.abstractmethod
    def parse(self, raw: bytes) -> RerankCall:
        """The call in ``raw``; ``InvalidBodyError`` with the message if it is not valid."""

    @abc.abstractmethod
    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        """An error answer in the service's shape."""

    @abc.abstractmethod
    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        """The service's answer to a request over its batch limit."""

    @abc.abstractmethod
    def payload(self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str) -> object:
        """The JSON answer for ``(index, score)`` pairs, best first."""

    @abc.abstractmethod
    def without_scores(self, payload: object) -> object:
        """``payload`` with its scores taken out (the "missing scores" malformation)."""


def _ranked(scores: list[float]) -> list[tuple[int, float]]:
    # Best first, ties by input position: what every index-based service does.
    return sorted(enumerate(scores), key=lambda pair: (-pair[1], pair[0]))


def _object(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw)
    except ValueError as err:
        msg = f"invalid JSON body: {err}"
        raise InvalidBodyError(msg) from err
    if not isinstance(body, dict):
        msg = "request body must be a JSON object"
        raise InvalidBodyError(msg)
    return body


def _required_string(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if value is None:
        msg = f"missing required field: {name}"
        raise InvalidBodyError(msg)
    if not isinstance(value, str):
        msg = f"{name} must be a string, got {type(value).__name__}"
        raise InvalidBodyError(msg)
    return value


class CohereDialect(Dialect):
    """Cohere's ``/v1/rerank`` and ``/v2/rerank``.

    Args:
        version: ``"1"`` or ``"2"``, reported in ``meta.api_version``.
    """

    name = "cohere"
    invalid_body_status = 400

    def __init__(self, version: str) -> None:
        self.version = version

    def parse(self, raw: bytes) -> RerankCall:
        body = _object(raw)
        model = _required_string(body, "model")
        query = _required_string(body, "query")
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
            query=query,
            documents=_string_list(texts, "documents"),
            model=model,
            top_n=top_n,
        )

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        return JSONResponse(
            {"id": headers.get("x-request-id"), "message": message},
            status_code=status,
            headers=headers,
        )

    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        message = f"too many documents: {n} documents exceed the maximum of {maximum} per request"
        return self.error(400, message, headers)

    def payload(self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str) -> object:
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


# TEI's error_type per status (text-embeddings-inference's ErrorType).
_TEI_ERROR_TYPES: Final = {
    401: "Unauthorized",
    413: "Validation",
    422: "Validation",
    429: "Overloaded",
    503: "Unhealthy",
}


class TEIDialect(Dialect):
    """Text Embeddings Inference's ``/rerank``."""

    name = "tei"
    invalid_body_status = 422

    def parse(self, raw: bytes) -> RerankCall:
        body = _object(raw)
        query = _required_string(body, "query")
        if body.get("texts") is None:
            msg = "missing field `texts`"
            raise InvalidBodyError(msg)
        texts = _string_list(body["texts"], "texts")
        if not texts:
            msg = "`texts` cannot be empty"
            raise InvalidBodyError(msg)
        return_text = body.get("return_text", False)
        if not isinstance(return_text, bool):
            msg = f"return_text must be a boolean, got {type(return_text).__name__}"
            raise InvalidBodyError(msg)
        return RerankCall(query=query, documents=texts, return_text=return_text)

    def error(self, status: int, message: str, headers: dict[str, str]) -> Response:
        error_type = _TEI_ERROR_TYPES.get(status, "Backend")
        return JSONResponse(
            {"error": message, "error_type": error_type}, status_code=status, headers=headers
        )

    def too_large(self, n: int, maximum: int, headers: dict[str, str]) -> Response:
        return self.error(422, f"batch size {n} > maximum allowed batch size {maximum}", headers)

    def payload(self, call: RerankCall, ranked: list[tuple[int, float]], request_id: str) -> object:
        if call.return_text:
            return [
                {"index": index, "score": score, "text": call.documents[index]}
                for index, score in ranked
            ]
        return [{"index": index, "score": score} for index, score in ranked]

    def without_scores(self, payload: object) -> object:
        assert isinstance(payload, list)
        return [{"index": item["index"]} for item in payload]


class _DialectRoute:
    """One dialect's endpoint over the DeepInfra route's service: same stats, faults, queue."""

    def __init__(self, service: _RerankService, dialect: Dialect) -> None:
        self.service = service
        self.dialect = dialect

    async def endpoint(self, request: Request) -> Response:
        started = time.perf_counter()
        return await self.service.counted(lambda: self._handle(request, uuid.uuid4().hex, started))

    async def _handle(self, request: Request, request_id: str, started: float) -> Response:
        service, dialect = self.service, self.dialect
        cfg = service.config
        headers = {"x-request-id": request_id}
        if not service._authorized(request):
            return dialect.error(401, "invalid api token", headers)
        try:
            call = dialect.parse(await request.body())
        except InvalidBodyError as err:
            return dialect.error(dialect.invalid_body_status, str(err), headers)
        if (
            call.model is not None
            and cfg.known_models is not None
            and call.model not in cfg.known_models
        ):
            return dialect.error(404, f"model '{call.model}' not found", headers)
        n = len(call.documents)
        service.stats.documents += n
        if cfg.max_batch_size is not None and n > cfg.max_batch_size:
            return dialect.too_large(n, cfg.max_batch_size, headers)

        plan = service.faults.plan(n)
        if plan.fault is Fault.ERROR_503:
            return dialect.error(503, "Service temporarily unavailable (simulated)", headers)
        if plan.fault is Fault.ERROR_429:
            if cfg.retry_after_s is not None:
                headers["retry-after"] = str(math.ceil(cfg.retry_after_s))
            return dialect.error(429, "Rate limit exceeded (simulated)", headers)

        limiter = service.capacity_limiter()
        if limiter is None:
            return await self._process(call, plan, headers, request_id)
        async with limiter:
            return await self._process(call, plan, headers, request_id)

    async def _process(
        self, call: RerankCall, plan: FaultPlan, headers: dict[str, str], request_id: str
    ) -> Response:
        stats = self.service.stats
        stats.start_processing()
        try:
            if plan.delay_s > 0.0:
                await anyio.sleep(plan.delay_s)
            scores = score_pairs([call.query], call.documents)
        finally:
            stats.processing -= 1
        ranked = _ranked(scores)
        if plan.fault is Fault.MALFORMED and plan.malformation is Malformation.WRONG_COUNT:
            # One index missing, so the client's "every index exactly once" check must fire.
            ranked = ranked[:-1]
        payload = self.dialect.payload(call, ranked, request_id)
        if plan.fault is Fault.DROP:
            return _DroppedResponse(_dumps(payload), media_type=_JSON, headers=headers)
        body: bytes
        if plan.fault is Fault.MALFORMED and plan.malformation is not None:
            stats.malformed += 1
            if plan.malformation is Malformation.TRUNCATED_JSON:
                full = _dumps(payload)
                body = full[: len(full) // 2]
            elif plan.malformation is Malformation.MISSING_SCORES:
                body = _dumps(self.dialect.without_scores(payload))
            else:
                body = _dumps(payload)
        else:
            body = _dumps(payload)
        return Response(body, media_type=_JSON, headers=headers)


def dialect_routes(service: _RerankService) -> list[Route]:
    """The Cohere and TEI routes, sharing ``service``'s stats, faults and capacity."""
    return [
        # Bound methods: Starlette treats any other callable as a raw ASGI app.
        Route("/v1/rerank", _DialectRoute(service, CohereDialect("1")).endpoint, methods=["POST"]),
        Route("/v2/rerank", _DialectRoute(service, CohereDialect("2")).endpoint, methods=["POST"]),
        Route("/rerank", _DialectRoute(service, TEIDialect()).endpoint, methods=["POST"]),
    ]
