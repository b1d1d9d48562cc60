"""The local server's Cohere and TEI routes, in-process through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.server import ServerConfig, create_app
from rerank_async.server._scoring import score

QUERY = "capital of France"
DOCUMENTS = ["Berlin is in Germany.", "Paris is the capital of France.", "France has wine."]


@asynccontextmanager
async def client_for(config: ServerConfig | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def ranked(documents: list[str]) -> list[tuple[int, float]]:
    scores = [score(QUERY, d) for d in documents]
    return sorted(enumerate(scores), key=lambda pair: (-pair[1], pair[0]))


@pytest.mark.parametrize("version", ["1", "2"])
async def test_cohere_answers_sorted_results_cut_to_top_n(version: str) -> None:
    async with client_for() as client:
        response = await client.post(
            f"/v{version}/rerank",
            json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 2},
        )
    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [{"index": i, "relevance_score": s} for i, s in ranked(DOCUMENTS)[:2]]
    assert body["meta"] == {
        "api_version": {"version": version},
        "billed_units": {"search_units": 1},
    }
    assert body["id"] == response.headers["x-request-id"]


async def test_cohere_accepts_text_objects() -> None:
    async with client_for() as client:
        response = await client.post(
            "/v1/rerank",
            json={"model": "m", "query": QUERY, "documents": [{"text": d} for d in DOCUMENTS]},
        )
    assert [r["index"] for r in response.json()["results"]] == [i for i, _ in ranked(DOCUMENTS)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": QUERY, "documents": ["a"]}, "missing required field: model"),
        ({"model": "m", "documents": ["a"]}, "missing required field: query"),
        ({"model": "m", "query": QUERY, "documents": "a"}, "documents must be a list"),
        ({"model": "m", "query": QUERY, "documents": [1]}, "documents[0] is int"),
        ({"model": "m", "query": QUERY, "documents": ["a"], "top_n": 0}, "top_n must be at least"),
        ({"model": "m", "query": QUERY, "documents": ["a"], "top_n": "1"}, "top_n must be an"),
    ],
)
async def test_cohere_invalid_body_is_400_with_message(body: object, message: str) -> None:
    async with client_for() as client:
        response = await client.post("/v2/rerank", json=body)
    assert response.status_code == 400
    assert message in response.json()["message"]


async def test_cohere_unknown_model_and_too_many_documents() -> None:
    config = ServerConfig(known_models=frozenset({"rerank-v3.5"}), max_batch_size=2)
    async with client_for(config) as client:
        unknown = await client.post(
            "/v2/rerank", json={"model": "x", "query": QUERY, "documents": ["a"]}
        )
        too_many = await client.post(
            "/v2/rerank", json={"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS}
        )
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "model 'x' not found"
    assert too_many.status_code == 400
    assert too_many.json()["message"] == (
        "too many documents: 3 documents exceed the maximum of 2 per request"
    )


async def test_tei_answers_a_bare_sorted_array() -> None:
    async with client_for() as client:
        plain = await client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})
        with_text = await client.post(
            "/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True}
        )
    assert plain.json() == [{"index": i, "score": s} for i, s in ranked(DOCUMENTS)]
    assert with_text.json() == [
        {"index": i, "score": s, "text": DOCUMENTS[i]} for i, s in ranked(DOCUMENTS)
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": QUERY}, "missing field `texts`"),
        ({"query": QUERY, "texts": []}, "`texts` cannot be empty"),
        ({"texts": ["a"]}, "missing required field: query"),
        (
            {"query": QUERY, "texts": ["a"], "return_text": "yes"},
            "return_text must be a boolean, got str",
        ),
    ],
)
async def test_tei_invalid_body_is_422(body: object, message: str) -> None:
    async with client_for() as client:
        response = await client.post("/rerank", json=body)
    assert response.status_code == 422
    assert response.json() == {"error": message, "error_type": "Validation"}


async def test_tei_batch_limit_is_its_own_422() -> None:
    async with client_for(ServerConfig(max_batch_size=2)) as client:
        response = await client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})
    assert response.status_code == 422
    assert response.json() == {
        "error": "batch size 3 > maximum allowed batch size 2",
        "error_type": "Validation",
    }


async def test_dialects_share_stats_auth_and_faults() -> None:
    config = ServerConfig(api_key="k", error_429_rate=1.0, retry_after_s=2)
    headers = {"authorization": "Bearer k"}
    async with client_for(config) as client:
        no_key = await client.post("/rerank", json={"query": QUERY, "texts": ["a"]})
        tei = await client.post("/rerank", json={"query": QUERY, "texts": ["a"]}, headers=headers)
        cohere = await client.post(
            "/v2/rerank", json={"model": "m", "query": QUERY, "documents": ["a", "b"]},
            headers=headers,
        )  # fmt: skip
        stats = (await client.get("/stats")).json()
    assert no_key.status_code == 401
    assert no_key.json()["error_type"] == "Unauthorized"
    assert (tei.status_code, tei.headers["retry-after"]) == (429, "2")
    assert tei.json() == {"error": "Rate limit exceeded (simulated)", "error_type": "Overloaded"}
    assert cohere.status_code == 429
    assert cohere.json()["message"] == "Rate limit exceeded (simulated)"
    assert stats["requests"] == 3
    assert stats["documents"] == 3
    assert stats["status_counts"] == {"401": 1, "429": 2}
