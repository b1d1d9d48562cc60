"""Cross-query packing over loopback: rerank_many with DeepInfra's one-query-per-document form.

The local server answers the ``{"queries", "documents"}`` form pair by pair
(docs/server.md), so every score can be checked against the reference scorer.
"""

from __future__ import annotations

import pytest

from rerank_async import (
    RerankClient,
    RerankOutcome,
    RerankRequest,
    ResponseValidationError,
    RetryPolicy,
)
from rerank_async.server import ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

pytestmark = pytest.mark.integration

QWEN = "Qwen/Qwen3-Reranker-0.6B"  # the "queries" form, by model name


def workload(n_queries: int, seed: int = 0) -> list[RerankRequest]:
    # Uneven sizes, so that packed requests cut through the middle of calls.
    return [
        RerankRequest(
            f"query {q} solar",
            [f"q{q} doc {i} battery" for i in range(5 + (q * 7 + seed) % 40)],
            id=q,
        )
        for q in range(n_queries)
    ]


async def run(client: RerankClient, requests: list[RerankRequest]) -> list[RerankOutcome]:
    outcomes: list[RerankOutcome] = []
    async with client.rerank_many(requests, max_pending=16) as stream:
        async for outcome in stream:
            outcomes.append(outcome)
    return outcomes


def assert_in_place(outcome: RerankOutcome) -> None:
    assert outcome.result is not None, outcome.error
    assert outcome.request is not None
    query, documents = outcome.request.query, outcome.request.documents
    assert outcome.result.scores == [reference_score(query, d) for d in documents]


@pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
async def test_packed_requests_are_full_and_every_score_lands_in_place(engine: str) -> None:
    requests = workload(60)
    pairs = sum(len(r.documents) for r in requests)
    per_query = sum(-(-len(r.documents) // 16) for r in requests)
    # Jitter scrambles the order in which requests complete.
    with running_server(ServerConfig(latency_ms=3, jitter_ms=3, capacity=4, seed=5)) as server:
        async with RerankClient(
            base_url=server.base_url, model=QWEN, batch_size=16, max_concurrency=4,
            http_client=engine,
        ) as client:  # fmt: skip
            outcomes = await run(client, requests)
        stats = server.stats()
    assert sorted(o.position for o in outcomes) == list(range(60))
    assert [o.position for o in outcomes] != list(range(60))  # completion really was scrambled
    for outcome in outcomes:
        assert_in_place(outcome)
    assert stats["documents"] == pairs
    # ceil(pairs / 16) full requests, a few short ones where the pool ran dry; per-query
    # batching would have needed one short request per query.
    assert stats["requests"] <= -(-pairs // 16) + 8 < per_query


async def test_faults_are_retried_without_losing_or_moving_a_score() -> None:
    requests = workload(40, seed=3)
    config = ServerConfig(
        latency_ms=2, jitter_ms=2, error_503_rate=0.15, error_429_rate=0.05,
        retry_after_s=0, drop_rate=0.03, seed=11,
    )  # fmt: skip
    with running_server(config) as server:
        async with RerankClient(
            base_url=server.base_url, model=QWEN, batch_size=16, max_concurrency=4,
            max_retries=10, retry=RetryPolicy(initial_delay=0, max_delay=0)
        ) as client:  # fmt: skip
            outcomes = await run(client, requests)
        stats = server.stats()
    assert stats["status_counts"].get("503", 0) > 0  # the faults really happened
    for outcome in outcomes:
        assert_in_place(outcome)
    retried = sum(o.result.usage.retries for o in outcomes if o.result is not None)
    assert retried > 0


async def test_a_request_that_fails_for_good_fails_only_the_calls_it_carried() -> None:
    requests = workload(30, seed=1)
    config = ServerConfig(malformed_rate=0.2, seed=2)
    with running_server(config) as server:
        async with RerankClient(
            base_url=server.base_url, model=QWEN, batch_size=16, max_concurrency=4, max_retries=0
        ) as client:
            outcomes = await run(client, requests)
        stats = server.stats()
    failed = [o for o in outcomes if not o.ok]
    assert stats["malformed"] > 0
    assert failed
    assert all(isinstance(o.error, ResponseValidationError) for o in failed)
    # A request of 16 pairs spans at most 4 calls (of at least 5 documents each).
    assert len(failed) <= 4 * stats["malformed"]
    for outcome in outcomes:
        if outcome.ok:
            assert_in_place(outcome)


async def test_usage_counts_the_shared_requests() -> None:
    requests = [RerankRequest("a", [f"a{i}" for i in range(10)], id=0),
                RerankRequest("b", [f"b{i}" for i in range(10)], id=1)]  # fmt: skip
    with running_server(ServerConfig(seed=1)) as server:
        async with RerankClient(
            base_url=server.base_url, model=QWEN, batch_size=16, max_concurrency=1
        ) as client:
            outcomes = {o.id: o for o in await run(client, requests)}
        stats = server.stats()
    assert stats["requests"] == 2  # [a x 10 + b x 6], [b x 4]
    first, second = outcomes[0].result, outcomes[1].result
    assert first is not None
    assert second is not None
    assert (first.usage.batches, second.usage.batches) == (1, 2)
    assert first.usage.documents == 10


async def test_formats_with_one_query_per_request_keep_per_query_batches() -> None:
    requests = workload(10)
    with running_server(ServerConfig(seed=1)) as server:
        async with RerankClient(
            base_url=server.base_url, model="cross-encoder/x", batch_size=16, max_concurrency=4
        ) as client:
            outcomes = await run(client, requests)
        stats = server.stats()
    for outcome in outcomes:
        assert_in_place(outcome)
    assert stats["requests"] == sum(-(-len(r.documents) // 16) for r in requests)
