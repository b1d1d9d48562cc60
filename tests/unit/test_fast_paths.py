"""The fast paths keep the behaviour: large calls, lazy encoding, packed requests (respx)."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
import respx

from rerank_async import APITimeoutError, Limits, RerankRequest
from tests.conftest import (
    BASE_URL,
    FakeReranker,
    make_client,
    pointwise_score,
)

QUERY = "solar battery storage"


def expected_scores(documents: list[str]) -> list[float]:
    return [pointwise_score(QUERY, d) for d in documents]


QWEN = "Qwen/Qwen3-Reranker-4B"
QWEN_URL = f"{BASE_URL}/{QWEN}"


def big_documents(n: int, *, distinct: int) -> list[str]:
    # 2 KB each: 600 of them are 1.2 MB of text, a "large" call.
    return [(f"doc {i % distinct} " * 300)[:2048] for i in range(n)]


@pytest.mark.parametrize("batch_size", [100, 300])  # 300: 600 KB bodies take the encoding turn
async def test_a_large_call_with_duplicates_scores_every_document(
    fake: FakeReranker, batch_size: int
) -> None:
    documents = big_documents(600, distinct=450)
    async with make_client(batch_size=batch_size, max_concurrency=4) as client:
        result = await client.rerank(QUERY, documents)
    assert result.scores == expected_scores(documents)
    assert result.usage.unique_documents == 450
    assert sum(fake.batch_sizes) == 450


async def test_a_large_call_without_dedupe_sends_everything(fake: FakeReranker) -> None:
    documents = big_documents(600, distinct=300)
    async with make_client(batch_size=300, limits=Limits(dedupe=False)) as client:
        assert await client.score(QUERY, documents) == expected_scores(documents)
    assert sum(fake.batch_sizes) == 600


async def test_str_subclasses_are_documents(fake: FakeReranker) -> None:
    class Text(str):
        pass

    async with make_client() as client:
        assert await client.score(QUERY, [Text("a"), "b"]) == expected_scores(["a", "b"])


async def test_packed_requests_split_when_the_server_says_too_large(
    mock_api: respx.MockRouter,
) -> None:
    fake = FakeReranker()

    def at_most_eight(request: httpx.Request) -> httpx.Response | None:
        if len(json.loads(request.content)["documents"]) > 8:
            return httpx.Response(413, json={"detail": "too many documents"})
        return None

    async def handler(request: httpx.Request) -> httpx.Response:
        return at_most_eight(request) or await fake(request)

    mock_api.post(QWEN_URL).mock(side_effect=handler)
    requests = [RerankRequest(f"q{q}", [f"q{q} d{i}" for i in range(7)], id=q) for q in range(6)]
    async with make_client(model=QWEN, batch_size=16, max_concurrency=2) as client:
        async with client.rerank_many(requests) as outcomes:
            results = {o.id: o.result for o in [o async for o in outcomes]}
        assert client.batch_limit == 8
    for request in requests:
        result = results[request.id]
        assert result is not None
        assert result.scores == [pointwise_score(request.query, d) for d in request.documents]
    assert max(fake.batch_sizes) <= 8
    assert sum(fake.batch_sizes) == 42


async def test_a_packed_call_past_its_deadline_times_out(mock_api: respx.MockRouter) -> None:
    release = anyio.Event()

    async def never(request: httpx.Request) -> httpx.Response:
        await release.wait()
        raise AssertionError("not reached")  # pragma: no cover

    mock_api.post(QWEN_URL).mock(side_effect=never)
    async with make_client(model=QWEN, batch_size=16) as client:
        async with client.rerank_many([("q", ["a", "b"])], total_timeout=0.05) as outcomes:
            [outcome] = [o async for o in outcomes]
    assert isinstance(outcome.error, APITimeoutError)
    assert "0 of 2 documents scored" in str(outcome.error)
