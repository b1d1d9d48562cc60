"""The Starlette app of the local reranker server: routes, auth, faults, capacity, stats.

It speaks DeepInfra's reranker inference API (``POST /v1/inference/{model}``, as documented
on DeepInfra's reranker model pages, e.g. ``Qwen/Qwen3-Reranker-4B``): a body
``{"query": str, "documents": [str, ...]}`` or ``{"queries": [str, ...], "documents": [...]}``,
answered with ``{"scores": [...], "input_tokens": n, "request_id": ..., "inference_status":
{...}}``. Scores come from the pointwise lexical scorer in `_scoring`.

One inference request goes through, in order: auth (401), model (404), body (422), batch size
(413), the fault plan (503, 429 answered at once), the capacity queue, the simulated latency,
then a dropped connection, a malformed 200, or the real answer.
"""

from __future__ import annotations

import json
import math
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypedDict

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._config import ServerConfig
from ._faults import Fault, FaultInjector, FaultPlan, Malformation
from ._scoring import count_tokens, score_pairs

__all__ = ["INFERENCE_PREFIX", "InvalidBodyError", "ServerStats", "create_app", "parse_body"]

INFERENCE_PREFIX: Final = "/v1/inference"
_JSON: Final = "application/json"


class ServerStats(TypedDict):
    """Counters of ``GET /stats``, about inference requests only.

    Attributes:
        requests: Inference requests received, whatever their outcome.
        documents: Documents in requests whose body was valid.
        in_flight: Requests inside the handler now, including those waiting for capacity.
        max_in_flight: Highest ``in_flight`` since start or reset.
        processing: Requests holding a capacity slot now (simulated work).
        max_processing: Highest ``processing`` since start or reset; ``<= capacity``.
        status_counts: Responses by status code (as a string); dropped ones are not counted.
        dropped: Connections dropped on purpose.
        malformed: 200 responses sent with a broken body on purpose.
    """

    requests: int
    documents: int
    in_flight: int
    max_in_flight: int
    processing: int
    max_processing: int
    status_counts: dict[str, int]
    dropped: int
    malformed: int


class _Stats:
    """Mutable counters; touched only from the server's event loop, so no lock."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.processing = 0
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.documents = 0
        self.max_in_flight = self.in_flight
        self.max_processing = self.processing
        self.status_counts: dict[str, int] = {}
        self.dropped = 0
        self.malformed = 0

    def enter(self) -> None:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def start_processing(self) -> None:
        self.processing += 1
        self.max_processing = max(self.max_processing, self.processing)

    def snapshot(self) -> ServerStats:
        return ServerStats(
            requests=self.requests,
            documents=self.documents,
            in_flight=self.in_flight,
            max_in_flight=self.max_in_flight,
            processing=self.processing,
            max_processing=self.max_processing,
            status_counts=dict(self.status_counts),
            dropped=self.dropped,
            malformed=self.malformed,
        )


class InvalidBodyError(Exception):
    """The body is not a valid rerank request; the message is the 422 ``detail``."""


class _DroppedResponse(Response):
    """Sends the status line, headers (with the full Content-Length) and half the body, then
    returns: the server closes the connection and the client sees an incomplete response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )


def _error(status: int, message: str, headers: dict[str, str]) -> Response:
    # DeepInfra's own errors (auth, model, size, rate) use {"error": {"message": ...}};
    # validation errors use FastAPI's {"detail": ...}, see _detail().
    return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)


def _detail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _string_list(value: object, name: str) -> list[str]:
    if not isinstance(value, list):
        msg = f"{name} must be a list of strings, got {type(value).__name__}"
        raise InvalidBodyError(msg)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            msg = f"{name} must be a list of strings: {name}[{i}] is {type(item).__name__}"
            raise InvalidBodyError(msg)
    return value


def parse_body(raw: bytes) -> tuple[list[str], list[str]]:
    """Validate a rerank request body.

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
    documents = _string_list(body["documents"], "documents")
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
    queries = _string_list(queries, "queries")
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


def _malform(payload: dict[str, object], scores: list[float], kind: Malformation) -> bytes:
    if kind is Malformation.TRUNCATED_JSON:
        body = _dumps(payload)
        return body[: len(body) // 2]
    if kind is Malformation.WRONG_COUNT:
        # One score short (a missing index) or, for an empty request, one too many.
        payload["scores"] = scores[:-1] if scores else [0.0]
    else:
        del payload["scores"]
    return _dumps(payload)


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


class _RerankService:
    """The endpoints, closing over one config, one fault injector and one set of stats."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = FaultInjector(config)
        self.stats = _Stats()
        # Created on first use, inside the event loop that serves requests (running_server
        # builds the app in the caller's thread, which may be running a loop of its own).
        self._limiter: anyio.CapacityLimiter | None = None
        self._api_key = config.api_key.encode() if config.api_key is not None else None

    async def inference(self, request: Request) -> Response:
        started = time.perf_counter()
        return await self.counted(lambda: self._inference(request, uuid.uuid4().hex, started))

    async def counted(self, handle: Callable[[], Awaitable[Response]]) -> Response:
        """Run one inference handler of any dialect, keeping the stats."""
        stats = self.stats
        # Counted on entry, before any capacity wait: a client that overshoots its own
        # concurrency bound shows up in max_in_flight.
        stats.enter()
        try:
            response = await handle()
        finally:
            stats.in_flight -= 1
        if isinstance(response, _DroppedResponse):
            stats.dropped += 1
        else:
            key = str(response.status_code)
            stats.status_counts[key] = stats.status_counts.get(key, 0) + 1
        return response

    async def _inference(self, request: Request, request_id: str, started: float) -> Response:
        cfg = self.config
        headers = {"x-request-id": request_id}
        if not self._authorized(request):
            return _error(401, "Invalid API key", headers)
        model: str = request.path_params["model"]
        if not model or (cfg.known_models is not None and model not in cfg.known_models):
            return _error(404, f"Model not found: {model}", headers)
        try:
            queries, documents = parse_body(await request.body())
        except InvalidBodyError as err:
            return _detail(422, str(err), headers)
        n = len(documents)
        self.stats.documents += n
        if cfg.max_batch_size is not None and n > cfg.max_batch_size:
            msg = f"batch size {n} > maximum allowed batch size {cfg.max_batch_size}"
            return _error(413, msg, headers)

        plan = self.faults.plan(n)
        if plan.fault is Fault.ERROR_503:
            return _error(503, "Service temporarily unavailable (simulated)", headers)
        if plan.fault is Fault.ERROR_429:
            if cfg.retry_after_s is not None:
                headers["retry-after"] = str(math.ceil(cfg.retry_after_s))
            return _error(429, "Rate limit exceeded (simulated)", headers)

        limiter = self.capacity_limiter()
        if limiter is None:
            return await self._process(queries, documents, plan, headers, request_id, started)
        async with limiter:
            return await self._process(queries, documents, plan, headers, request_id, started)

    def capacity_limiter(self) -> anyio.CapacityLimiter | None:
        """The capacity queue every inference route shares, or None when unlimited."""
        if self.config.capacity is None:
            return None
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.config.capacity)
        return self._limiter

    async def _process(
        self,
        queries: list[str],
        documents: list[str],
        plan: FaultPlan,
        headers: dict[str, str],
        request_id: str,
        started: float,
    ) -> Response:
        stats = self.stats
        stats.start_processing()
        try:
            if plan.delay_s > 0.0:
                await anyio.sleep(plan.delay_s)
            scores = score_pairs(queries, documents)
        finally:
            stats.processing -= 1
        tokens = _input_tokens(queries, documents)
        payload: dict[str, object] = {
            "scores": scores,
            "input_tokens": tokens,
            "request_id": request_id,
            "inference_status": {
                "status": "succeeded",
                "runtime_ms": int((time.perf_counter() - started) * 1000),
                "cost": 0.0,
                "tokens_input": tokens,
            },
        }
        if plan.fault is Fault.DROP:
            return _DroppedResponse(_dumps(payload), media_type=_JSON, headers=headers)
        if plan.fault is Fault.MALFORMED and plan.malformation is not None:
            stats.malformed += 1
            body = _malform(payload, scores, plan.malformation)
        else:
            body = _dumps(payload)
        return Response(body, media_type=_JSON, headers=headers)

    def _authorized(self, request: Request) -> bool:
        if self._api_key is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant-time comparison; the presented key is never echoed back.
        return secrets.compare_digest(token.strip().encode(), self._api_key)

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.snapshot())

    async def reset_stats(self, request: Request) -> Response:
        self.stats.reset()
        return JSONResponse(self.stats.snapshot())

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})


async def _http_exception(request: Request, exc: Exception) -> Response:
    # FastAPI's shape for routing errors: 404 {"detail": "Not Found"}, 405 likewise.
    assert isinstance(exc, HTTPException)
    return _detail(exc.status_code, exc.detail, exc.headers)


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build the ASGI app of the local reranker server.

    Each app has its own stats, fault random stream and capacity queue.

    Args:
        config: The server settings; ``ServerConfig()`` (no faults, no auth) by default.

    Returns:
        A Starlette app, to serve with uvicorn or to test with ``httpx.ASGITransport``.
    """
    service = _RerankService(config if config is not None else ServerConfig())
    routes = [
        Route(INFERENCE_PREFIX + "/{model:path}", service.inference, methods=["POST"]),
        Route("/stats", service.get_stats, methods=["GET"]),
        Route("/stats/reset", service.reset_stats, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
    ]
    # Imported here: _dialects builds on this module's helpers.
    from ._dialects import dialect_routes

    routes += dialect_routes(service)
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
