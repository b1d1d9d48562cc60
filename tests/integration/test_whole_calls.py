"""Plain and packed calls fail the same way: one deadline, the failure kept with its owner.

Over loopback against the local server: a document the server cannot score (``poison``)
fails its own query only, with ``partial`` holding exact scores, on both call paths;
``total_timeout`` is a deadline for ``rerank_many`` as it is for ``rerank``.
"""

from __future__ import annotations

import time

import pytest

from rerank_async import (
    APITimeoutError,
    DeadlineExceededError,
    RerankClient,
    RerankOutcome,
    RerankRequest,
    RetryPolicy,
    ServerError,
)
from rerank_async.server import ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

pytestmark = pytest.mark.integration

QWEN = "Qwen/Qwen3-Reranker-0.6B"  # the "queries" form: rerank_many packs pairs
PLAIN = "cross-encoder/ms-marco-MiniLM-L-12-v2"
POISON = "POISON"


def six_queries() -> list[RerankRequest]:
    requests = [
        RerankRequest(f"query {q} solar", [f"q{q} doc {i} battery" for i in range(20)], id=q)
        for q in range(6)
    ]
    poisoned = list(requests[2].documents)
    poisoned[13] = f"q2 doc 13 {POISON}"
    requests[2] = RerankRequest(requests[2].query, poisoned, id=2)
    return requests


async def outcomes_of(
    client: RerankClient, requests: list[RerankRequest], *, total_timeout: float | None = None
) -> list[RerankOutcome]:
    async with client.rerank_many(requests, total_timeout=total_timeout) as stream:
        return sorted([outcome async for outcome in stream], key=lambda o: o.position)


@pytest.mark.parametrize("model", [QWEN, PLAIN])
@pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
async def test_a_poisoned_document_fails_its_own_query_only(model: str, engine: str) -> None:
    requests = six_queries()
    with running_server(ServerConfig(poison=POISON, latency_ms=2)) as server:
        async with RerankClient(
            base_url=server.base_url, model=model, batch_size=16, max_retries=1,
            retry=RetryPolicy(initial_delay=0.0), http_client=engine,
        ) as client:  # fmt: skip
            outcomes = await outcomes_of(client, requests)
    assert [o.ok for o in outcomes] == [True, True, False, True, True, True]
    for outcome in outcomes:
        query, documents = requests[outcome.position].query, requests[outcome.position].documents
        if outcome.ok:
            assert outcome.result is not None
            assert outcome.result.scores == [reference_score(query, d) for d in documents]
            continue
        error = outcome.error
        assert isinstance(error, ServerError)
        assert error.status_code == 500
        assert error.partial is not None
        kept = error.partial.scores
        assert kept[13] is None  # the poisoned document has no score
        for index, score in enumerate(kept):  # every score kept is the right one
            assert score is None or score == reference_score(query, documents[index])


@pytest.mark.parametrize("model", [QWEN, PLAIN])
@pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
async def test_rerank_many_total_timeout_is_a_deadline(model: str, engine: str) -> None:
    requests = [RerankRequest(f"q{q}", [f"d{i}" for i in range(40)], id=q) for q in range(3)]
    # The server takes far longer than the deadline: nothing is ever answered in time.
    with running_server(ServerConfig(latency_ms=30_000)) as server:
        async with RerankClient(
            base_url=server.base_url, model=model, batch_size=16, http_client=engine
        ) as client:
            started = time.perf_counter()
            outcomes = await outcomes_of(client, requests, total_timeout=1.0)
            elapsed = time.perf_counter() - started
    # Not resumed on a fresh deadline (that took 2.0 s); the margin is for a busy machine.
    assert 1.0 <= elapsed < 1.3, elapsed
    for outcome in outcomes:
        assert isinstance(outcome.error, DeadlineExceededError)
        assert isinstance(outcome.error, APITimeoutError)  # what callers already catch
        assert outcome.error.partial is not None
        assert outcome.error.documents_scored == 0
