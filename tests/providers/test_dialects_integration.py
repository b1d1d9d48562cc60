"""Cohere and TEI wire formats against the local server's dialect routes, over loopback HTTP.

The server answers these dialects with ``{index, score}`` pairs sorted by relevance, so
every test here checks the client's index mapping end to end on real sockets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async import AuthenticationError, RerankClient, ResponseValidationError
from rerank_async.providers import CohereProvider, JinaProvider, Provider, TEIProvider
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score
from tests.conftest import ENGINES

pytestmark = pytest.mark.integration

QUERY = "solar battery storage for the home grid"
WORDS = ["solar", "battery", "storage", "home", "grid", "panel", "roof", "energy", "coffee",
         "marathon", "volcano", "city"]  # fmt: skip


def corpus(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=7)) + f" #{i}" for i in range(n)]


def truth(documents: list[str]) -> list[float]:
    return [reference_score(QUERY, d) for d in documents]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=1)) as running:
        yield running


@ENGINES
@pytest.mark.parametrize(
    ("provider", "model"),
    [("cohere", "rerank-v3.5"), (CohereProvider(api_version="v1"), "rerank-english-v3.0"),
     ("tei", "BAAI/bge-reranker-base"), (JinaProvider(), "jina-reranker-v2-base-multilingual")],
    ids=["cohere-v2", "cohere-v1", "tei", "jina-on-cohere-route"],
)  # fmt: skip
async def test_3000_documents_score_in_input_order(
    server: RunningServer, engine: str, provider: str | Provider, model: str
) -> None:
    documents = corpus(3000)
    async with RerankClient(
        provider=provider, base_url=server.url, model=model, http_client=engine
    ) as client:
        result = await client.rerank(QUERY, documents, top_k=10)
    assert result.scores == truth(documents)
    assert len(set(result.scores)) > 20  # a real ranking, not a constant
    best = sorted(range(3000), key=lambda i: (-result.scores[i], i))[:10]
    assert [ranked.index for ranked in result.results] == best
    assert result.usage.batches == -(-3000 // client.options.batch_size)


async def test_tei_422_splits_the_batch_over_http() -> None:
    documents = corpus(500)
    with running_server(ServerConfig(max_batch_size=12)) as tei:
        async with RerankClient(
            provider="tei", base_url=tei.url, batch_size=32, max_concurrency=4
        ) as client:
            result = await client.rerank(QUERY, documents)
            assert client.batch_limit == 12
            again = await client.rerank(QUERY, documents[:100])
        stats = tei.stats()
    assert result.scores == truth(documents)
    assert again.scores == truth(documents[:100])
    assert stats["status_counts"]["422"] >= 1
    assert stats["status_counts"]["200"] == result.usage.requests - stats["status_counts"][
        "422"
    ] + (again.usage.requests)


async def test_cohere_too_many_documents_splits_over_http() -> None:
    documents = corpus(400)
    with running_server(ServerConfig(max_batch_size=30)) as cohere:
        async with RerankClient(
            provider="cohere", base_url=cohere.url, model="rerank-v3.5", max_concurrency=4
        ) as client:
            result = await client.rerank(QUERY, documents)
            assert client.batch_limit == 30
        stats = cohere.stats()
    assert result.scores == truth(documents)
    assert stats["status_counts"]["400"] >= 1


@pytest.mark.parametrize(
    ("provider", "no_scores"),
    [("tei", "0.score: Field required"), ("cohere", "results: Field required")],
)
async def test_malformed_answers_are_caught_over_http(provider: str, no_scores: str) -> None:
    # The server breaks every answer, in turn: truncated JSON, a missing index, no scores.
    with running_server(ServerConfig(malformed_rate=1.0, seed=3)) as broken:
        reasons = []
        async with RerankClient(
            provider=provider, base_url=broken.url, model="m", max_retries=0
        ) as client:
            for _ in range(3):
                with pytest.raises(ResponseValidationError) as caught:
                    await client.rerank(QUERY, corpus(5))
                reasons.append(str(caught.value))
    assert "Invalid JSON: EOF while parsing" in reasons[0]
    assert "has 4 entries for a batch of 5 documents; missing indices" in reasons[1]
    assert no_scores in reasons[2]


async def test_auth_over_http() -> None:
    with running_server(ServerConfig(api_key="sk-local")) as locked:
        async with RerankClient(provider="cohere", base_url=locked.url, model="m") as client:
            with pytest.raises(AuthenticationError, match="invalid api token"):
                await client.rerank(QUERY, ["a"])
        async with RerankClient(
            provider=TEIProvider(), base_url=locked.url, api_key="sk-local"
        ) as client:
            assert await client.score(QUERY, ["solar home"]) == truth(["solar home"])
