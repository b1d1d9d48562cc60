"""The client against the real local server over loopback HTTP."""

from __future__ import annotations

import random
import socket

import anyio
import pytest

from rerank_async import Limits, RetryPolicy

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    NotFoundError,
    RerankClient,
)
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score
from tests.conftest import ENGINES

pytestmark = pytest.mark.integration

QUERY = "solar battery storage for the home grid"
WORDS = [
    "solar",
    "battery",
    "storage",
    "home",
    "grid",
    "panel",
    "roof",
    "energy",
    "coffee",
    "marathon",
    "volcano",
    "city",
]


def corpus(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=6)) + f" #{i % (n // 2 + 1)}" for i in range(n)]


def truth(documents: list[str]) -> list[float]:
    return [reference_score(QUERY, d) for d in documents]


@ENGINES
@pytest.mark.slow
async def test_10k_documents_score_identically_at_any_batch_size(
    server: RunningServer, engine: str
) -> None:
    documents = corpus(10_000)  # about half are duplicates
    expected = truth(documents)
    for batch_size in (7, 64, 1000):
        async with RerankClient(
            http_client=engine, base_url=server.base_url, batch_size=batch_size, max_concurrency=32
        ) as client:
            result = await client.rerank(QUERY, documents)
        assert result.scores == expected, f"batch_size={batch_size}"
        assert result.usage.requests == result.usage.batches  # no faults, no retries


async def test_batch_size_one(server: RunningServer) -> None:
    documents = corpus(500, seed=5)
    async with RerankClient(base_url=server.base_url, batch_size=1, max_concurrency=16) as client:
        result = await client.rerank(QUERY, documents, top_k=10)
    assert result.scores == truth(documents)
    assert [r.index for r in result.results] == sorted(
        range(500), key=lambda i: (-result.scores[i], i)
    )[:10]


@ENGINES
async def test_concurrency_bound_is_respected_on_the_wire(
    server: RunningServer, engine: str
) -> None:
    # 20 ms answers keep the client's 12 slots full once a new client's first burst,
    # paced until the first answer, is out: at 5 ms, with server and client in one
    # process, answers sometimes came back faster than the client refilled its slots.
    with running_server(ServerConfig(latency_ms=20)) as slow:
        async with RerankClient(
            http_client=engine, base_url=slow.base_url, batch_size=8, max_concurrency=12
        ) as client:
            async with anyio.create_task_group() as group:
                for i in range(60):
                    group.start_soon(client.score, QUERY, corpus(40, seed=i))
        stats = slow.stats()
    assert stats["max_in_flight"] == 12
    assert stats["status_counts"] == {"200": stats["requests"]}


@ENGINES
async def test_twenty_percent_faults_lose_nothing(engine: str) -> None:
    config = ServerConfig(
        error_503_rate=0.07, error_429_rate=0.07, retry_after_s=0, drop_rate=0.06, seed=11
    )
    documents = corpus(3000, seed=9)
    with running_server(config) as faulty:
        async with RerankClient(
            http_client=engine,
            base_url=faulty.base_url,
            batch_size=16,
            max_concurrency=16,
            max_retries=8,
            retry=RetryPolicy(initial_delay=0.0),
        ) as client:
            result = await client.rerank(QUERY, documents)
            if engine == "httpx":
                pool = client._fleet.transport.engine.http_client._transport._pool  # type: ignore[attr-defined]
                assert len(pool.connections) <= 16  # retries closed their failed responses
        stats = faulty.stats()
    assert result.scores == truth(documents)
    assert result.usage.retries > 0
    failures = sum(n for code, n in stats["status_counts"].items() if code != "200")
    assert failures + stats["dropped"] == result.usage.retries
    assert stats["in_flight"] == 0


@ENGINES
async def test_malformed_bodies_are_retried(engine: str) -> None:
    documents = corpus(400, seed=4)
    with running_server(ServerConfig(malformed_rate=0.2, seed=5)) as broken:
        async with RerankClient(
            http_client=engine,
            base_url=broken.base_url,
            batch_size=10,
            max_retries=10,
            retry=RetryPolicy(initial_delay=0.0),
        ) as client:
            result = await client.rerank(QUERY, documents)
    assert result.scores == truth(documents)
    assert result.usage.retries > 0


@ENGINES
async def test_413_split_finds_the_server_maximum(engine: str) -> None:
    documents = corpus(1000, seed=8)
    with running_server(ServerConfig(max_batch_size=48)) as limited:
        async with RerankClient(
            http_client=engine,
            base_url=limited.base_url,
            batch_size=500,
            limits=Limits(min_batch_size=500),
        ) as client:
            result = await client.rerank(QUERY, documents)
            assert client.batch_limit == 48
            limited.reset_stats()
            again = await client.rerank(QUERY, documents)
        stats = limited.stats()
    assert result.scores == truth(documents)
    assert again.scores == result.scores
    assert stats["status_counts"] == {"200": stats["requests"]}  # learned: no more 413s


@ENGINES
async def test_wrong_api_key_fails_fast(engine: str) -> None:
    with running_server(ServerConfig(api_key="right-key")) as guarded:
        async with RerankClient(
            http_client=engine, base_url=guarded.base_url, api_key="wrong-key"
        ) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.rerank(QUERY, corpus(200))
        async with RerankClient(
            http_client=engine, base_url=guarded.base_url, api_key="right-key"
        ) as client:
            assert len(await client.score(QUERY, ["solar"])) == 1
    assert caught.value.status_code == 401
    assert "wrong-key" not in str(caught.value)


async def test_unknown_model_is_not_found() -> None:
    with running_server(ServerConfig(known_models=frozenset({"known/model"}))) as strict:
        async with RerankClient(base_url=strict.base_url, model="other/model") as client:
            with pytest.raises(NotFoundError, match="other/model"):
                await client.score(QUERY, ["a"])


@ENGINES
async def test_refused_connection_is_reported(engine: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    async with RerankClient(
        http_client=engine,
        base_url=f"http://127.0.0.1:{port}/v1/inference",
        max_retries=1,
        retry=RetryPolicy(initial_delay=0),
    ) as client:
        with pytest.raises(
            APIConnectionError, match=r"connection failed: (ConnectError|ClientConnectorError)"
        ):
            await client.score(QUERY, ["a"])


@ENGINES
async def test_cancellation_leaves_nothing_running(engine: str) -> None:
    with running_server(ServerConfig(latency_ms=2000)) as slow:
        async with RerankClient(
            http_client=engine, base_url=slow.base_url, batch_size=10
        ) as client:
            with anyio.move_on_after(0.3):
                await client.score(QUERY, corpus(100))
            assert client.statistics().in_flight == 0
            for _ in range(200):  # the server notices the closed connections
                if slow.stats()["in_flight"] == 0:
                    break
                await anyio.sleep(0.01)
            assert slow.stats()["in_flight"] == 0
            assert client.statistics().outstanding_batches == 0
            assert not client.is_closed


@ENGINES
async def test_request_timeout_is_typed_on_the_wire(engine: str) -> None:
    with running_server(ServerConfig(latency_ms=3000)) as slow:
        async with RerankClient(
            http_client=engine, base_url=slow.base_url, timeout=0.2, max_retries=0
        ) as client:
            with anyio.fail_after(5), pytest.raises(APITimeoutError, match="timed out"):
                await client.score(QUERY, ["a"])


@ENGINES
async def test_hedging_over_the_wire(engine: str) -> None:
    documents = corpus(200, seed=12)
    config = ServerConfig(latency_ms=10, tail_probability=0.3, tail_multiplier=30, seed=3)
    with running_server(config) as tailed:
        # A fixed bound of 40 for 20 batches: every copy finds a free slot. (A fresh adaptive
        # client starts at 16 and on a loaded machine may still have batches queued when the
        # first copies are due; a copy is never sent while anyone waits for a slot.)
        async with RerankClient(
            http_client=engine, base_url=tailed.base_url, batch_size=10, max_concurrency=40,
            hedge_after=0.05, limits=Limits(adaptive_concurrency=False)
        ) as client:  # fmt: skip
            result = await client.rerank(QUERY, documents)
            assert client.statistics().in_flight == 0
        stats = tailed.stats()
    assert result.scores == truth(documents)
    assert result.usage.hedges > 0
    assert result.usage.requests == result.usage.batches + result.usage.hedges
    assert stats["max_in_flight"] <= 40
