"""The Starlette app of the local reranker server: one route per dialect, stats, health.

Scores come from the pointwise lexical scorer in ``_scoring``; every inference route runs
the one pipeline in ``_pipeline``. Adding a service means adding a ``Dialect`` class in
``_dialects`` (self-hosted engines: ``_dialects_local``) and an instance to ``DIALECTS``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._config import ServerConfig
from ._dialects import CohereDialect, DeepInfraDialect, Dialect, TEIDialect
from ._dialects_local import LlamaCppDialect, SGLangDialect
from ._pipeline import RerankService

__all__ = ["DIALECTS", "INFERENCE_PREFIX", "create_app"]

INFERENCE_PREFIX: Final = "/v1/inference"

# Every service the server speaks, each on its own route.
DIALECTS: Final[tuple[Dialect, ...]] = (
    DeepInfraDialect(),
    CohereDialect("1"),
    CohereDialect("2"),
    TEIDialect(),
    # /v1/rerank is Cohere's here: these two engines live under /sglang and /llamacpp.
    SGLangDialect(),
    LlamaCppDialect(),
)


async def _http_exception(request: Request, exc: Exception) -> Response:
    # FastAPI's shape for routing errors: 404 {"detail": "Not Found"}, 405 likewise.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _endpoint(service: RerankService, dialect: Dialect) -> Callable[[Request], Awaitable[Response]]:
    # A coroutine function: Starlette treats any other callable as a raw ASGI app.
    async def endpoint(request: Request) -> Response:
        return await service.handle(request, dialect)

    return endpoint


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build the ASGI app of the local reranker server.

    Each app has its own stats, fault random stream and capacity queue, shared by
    every dialect's route.

    Args:
        config: The server settings; ``ServerConfig()`` (no faults, no auth) by default.

    Returns:
        A Starlette app, to serve with uvicorn or to test with ``httpx.ASGITransport``.
    """
    service = RerankService(config if config is not None else ServerConfig())
    routes = [
        Route(dialect.path, _endpoint(service, dialect), methods=["POST"]) for dialect in DIALECTS
    ]
    routes += [
        Route("/stats", service.get_stats, methods=["GET"]),
        Route("/stats/reset", service.reset_stats, methods=["POST"]),
        Route("/healthz", service.healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})
