"""Living within a server's limits, over loopback: what the server saw, not what we hoped.

Each test starts a local server with one of the limit knobs (a concurrency cap, a
request-rate bucket, a timed outage) and asserts on the server's own counters: its
maximum in flight, its 429 and 503 counts, and its request rate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from rerank_async import Limits, RerankClient, RerankRequest, RetryPolicy
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

pytestmark = pytest.mark.integration

MODEL = "acme/limits"


def documents(n: int, salt: str = "") -> list[str]:
    return [f"document {salt} {index}" for index in range(n)]


@contextmanager
def limited_server(**knobs: object) -> Iterator[RunningServer]:
    knobs.setdefault("latency_ms", 20.0)
    with running_server(ServerConfig(seed=3, **knobs)) as running:  # type: ignore[arg-type]
        yield running


def client_for(server: RunningServer, **options: object) -> RerankClient:
    options.setdefault("batch_size", 16)
    return RerankClient(base_url=server.base_url, model=MODEL, **options)  # type: ignore[arg-type]


def assert_scored(query: str, docs: list[str], scores: list[float]) -> None:
    assert scores == [pytest.approx(reference_score(query, d), abs=1e-12) for d in docs]


def rate_of(stats: dict[str, object]) -> float:
    first, last = stats["first_request_s"], stats["last_request_s"]
    assert isinstance(first, float)
    assert isinstance(last, float)
    return float(stats["requests"]) / (last - first)  # type: ignore[arg-type]


async def test_an_unknown_concurrency_cap_is_found_and_held() -> None:
    with limited_server(max_in_flight=4) as server:
        docs = documents(1_600)
        async with client_for(server, max_concurrency=32) as client:
            scores = await client.score("solar", docs)
            limit = client.statistics().concurrency_limit
        stats = server.stats()
    assert_scored("solar", docs, scores)
    rejected = stats["status_counts"].get("429", 0)
    assert stats["status_counts"]["200"] == 100
    # A fixed bound of 32 has 28 of its first 32 refused, then more on every retry;
    # the adaptive limit loses its first burst above 4 and a few probes.
    assert rejected <= 25, stats
    assert stats["refusals"] == {"max_in_flight": rejected}
    assert limit <= 6


async def test_a_fixed_bound_keeps_hitting_the_cap() -> None:
    """The contrast for the test above, so that it can fail."""
    with limited_server(max_in_flight=4) as server:
        async with client_for(
            server, max_concurrency=32,
            max_retries=20, limits=Limits(adaptive_concurrency=False),
            retry=RetryPolicy(budget_ratio=None, initial_delay=0.01)
        ) as client:  # fmt: skip
            await client.score("solar", documents(1_600))
        stats = server.stats()
    # More than the adaptive client's bound above (25): the first burst alone has 28 of
    # 32 refused; how many retries are refused too depends on the machine's load.
    assert stats["status_counts"].get("429", 0) > 25, stats


async def test_a_request_rate_is_kept_without_a_single_429() -> None:
    with limited_server(rate_limit_rps=100.0, latency_ms=5.0) as server:
        docs = documents(100 * 16)
        async with client_for(server, limits=Limits(max_requests_per_minute=6_000)) as client:
            scores = await client.score("wind", docs)
            used = client.statistics().requests_this_minute
        stats = server.stats()
    assert_scored("wind", docs, scores)
    assert stats["status_counts"].get("429", 0) == 0
    assert stats["requests"] == 100
    assert used == 100
    assert 70.0 <= rate_of(stats) <= 125.0  # paced at 100/s (after a burst of 10)


async def test_rate_limit_429s_without_retry_after_are_survived_by_the_adaptive_limit() -> None:
    with limited_server(rate_limit_rps=50.0, latency_ms=20.0) as server:
        requests = [
            RerankRequest(f"query {q}", documents(64, salt=str(q)), id=q) for q in range(15)
        ]
        async with client_for(server, max_concurrency=32) as client:
            async with client.rerank_many(requests) as outcomes:
                results = [outcome async for outcome in outcomes]
        stats = server.stats()
    assert all(outcome.ok for outcome in results), [o.error for o in results if not o.ok]
    assert sorted(int(outcome.id) for outcome in results) == list(range(15))
    for outcome in results:
        assert outcome.result is not None
        assert_scored(outcome.request.query, list(outcome.request.documents),  # type: ignore[union-attr]
                      outcome.result.scores)  # fmt: skip
    assert stats["status_counts"]["200"] >= 60
    assert stats["status_counts"].get("429", 0) < stats["status_counts"]["200"]


@pytest.mark.slow
async def test_an_outage_costs_retries_within_the_budget_and_scores_nothing_twice() -> None:
    with limited_server(outage_start_s=0.3, outage_duration_s=1.0) as server:
        requests = [RerankRequest(f"q{q}", documents(48, salt=str(q)), id=q) for q in range(120)]
        async with client_for(server, max_concurrency=16) as client:
            async with client.rerank_many(requests) as outcomes:
                results = [outcome async for outcome in outcomes]
            budget_left = client.statistics().retry_budget_left
        stats = server.stats()
    ids = [int(outcome.id) for outcome in results]
    assert sorted(ids) == list(range(120))  # every request once: scored or failed
    ok = stats["status_counts"].get("200", 0)
    outage = stats["refusals"].get("outage", 0)
    # Attempts that met the outage: first attempts plus retries, and retries are at most
    # 20% of first attempts plus 2/s plus the start reserve (20 + one per slot).
    first_attempts = ok + sum(1 for o in results if not o.ok)
    assert outage <= 0.2 * first_attempts + 2.0 * 3 + 36 + 16, stats
    assert budget_left is not None
    for outcome in results:
        if outcome.ok:
            assert outcome.result is not None
            assert_scored(outcome.request.query, list(outcome.request.documents),  # type: ignore[union-attr]
                          outcome.result.scores)  # fmt: skip


@pytest.mark.slow
async def test_an_outage_is_waited_out_and_no_request_fails() -> None:
    with limited_server(capacity=8, outage_start_s=0.3, outage_duration_s=1.5) as server:
        requests = [RerankRequest(f"q{q}", documents(48, salt=str(q)), id=q) for q in range(120)]
        async with client_for(server) as client:
            async with client.rerank_many(requests) as outcomes:
                results = [outcome async for outcome in outcomes]
            stats = client.statistics()
        served = server.stats()
    assert [o for o in results if not o.ok] == []
    assert stats.outage_probes > 0
    assert stats.outage_since is None
    ok = served["status_counts"].get("200", 0)
    # One probe at a time while the endpoint is down: the attempts that met the outage
    # stay near what was in flight when it began, plus the probes.
    assert served["refusals"].get("outage", 0) <= 0.2 * ok + 12 * 2.0, served


@pytest.mark.slow
async def test_the_planner_spreads_on_a_per_document_server_and_not_on_a_fixed_one() -> None:
    docs = documents(256)
    with limited_server(latency_ms=5.0, per_doc_latency_ms=1.0, capacity=8) as server:
        async with client_for(server, batch_size=256) as client:
            for index in range(6):
                await client.score(f"warm {index}", docs)
            spread = await client.rerank("q", docs)
            endpoint = client.statistics().endpoint
    assert endpoint is not None
    assert endpoint.per_document_s is not None
    assert endpoint.per_document_s > 0
    # It spreads. Staying within the server's capacity of 8 needs the capacity step to be
    # found, which on a loaded 2-core machine it sometimes is not (9-10 requests seen;
    # docs/planner.md, "Not met"): here only the client's own bound is held.
    assert 4 <= spread.usage.requests <= client.options.max_concurrency
    with limited_server(latency_ms=50.0, capacity=8) as server:
        async with client_for(server, batch_size=256) as client:
            for index in range(6):
                await client.score(f"warm {index}", docs)
            fixed = await client.rerank("q", docs)
    assert fixed.usage.requests <= 2
