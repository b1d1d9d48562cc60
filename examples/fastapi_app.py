"""A FastAPI app that reranks search candidates with one shared RerankClient.

Run it against the local server::

    rerank-async serve --port 8080 &
    RERANK_ASYNC_BASE_URL=http://127.0.0.1:8080/v1/inference \\
        uvicorn examples.fastapi_app:app --port 8000

then ``curl -X POST localhost:8000/rerank -H 'content-type: application/json'
-d '{"query": "capital of France", "documents": ["Paris is in France.", "Berlin."]}'``.

The client is created once, in the app's lifespan, and shared by every request: its one
``max_concurrency`` bound then holds for the whole process, however many requests arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from rerank_async import APIStatusError, RerankClient, RerankError


class RerankRequest(BaseModel):
    query: str = Field(min_length=1)
    documents: list[str]
    top_k: int | None = Field(default=None, ge=1)


class Hit(BaseModel):
    index: int
    score: float
    document: str


class RerankResponse(BaseModel):
    hits: list[Hit]
    requests: int


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Model, base URL and API key come from RERANK_ASYNC_MODEL, RERANK_ASYNC_BASE_URL
    # and DEEPINFRA_TOKEN; the deadline keeps one slow upstream from piling up requests.
    async with RerankClient(max_concurrency=16, total_timeout=10.0) as reranker:
        app.state.reranker = reranker
        yield


app = FastAPI(title="rerank_async example", lifespan=lifespan)


@app.post("/rerank")
async def rerank(body: RerankRequest, request: Request) -> RerankResponse:
    reranker: RerankClient = request.app.state.reranker
    try:
        result = await reranker.rerank(body.query, body.documents, top_k=body.top_k)
    except APIStatusError as error:
        # Say what the upstream said, without echoing request details.
        raise HTTPException(502, f"reranker answered {error.status_code}") from error
    except RerankError as error:
        raise HTTPException(503, f"reranker unavailable: {type(error).__name__}") from error
    hits = [Hit(index=r.index, score=r.score, document=r.document) for r in result.results]
    return RerankResponse(hits=hits, requests=result.usage.requests)
