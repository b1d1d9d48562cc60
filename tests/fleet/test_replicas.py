"""Replicas of one model on real local servers: shared work, a death, a return."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from rerank_async import RerankClient, RetryPolicy
from rerank_async.server import RunningServer, ServerConfig, running_server

pytestmark = pytest.mark.integration

QUERY = "which replica scored this"


def documents(n: int) -> list[str]:
    return [f"passage {i} on replicas and scores" for i in range(n)]


@contextlib.contextmanager
def servers(count: int, config: ServerConfig | None = None) -> Iterator[list[RunningServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server(config or ServerConfig())) for _ in range(count)]


def client_for(urls: list[str], **kwargs: object) -> RerankClient:
    return RerankClient(
        base_url=urls,
        model="acme/a",
        batch_size=64,
        retry=RetryPolicy(initial_delay=0.0, max_delay=0.0),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_three_replicas_share_a_call() -> None:
    with servers(3, ServerConfig(latency_ms=5)) as running:
        async with client_for([server.base_url for server in running]) as client:
            result = await client.rerank(QUERY, documents(3000))
            replicas = client.statistics().replicas
        requests = [server.stats()["requests"] for server in running]
        async with RerankClient(base_url=running[0].base_url, model="acme/a") as single:
            expected = await single.rerank(QUERY, documents(3000))
    assert result.scores == expected.scores
    assert all(count >= 0.2 * sum(requests) for count in requests), requests
    assert [replica.requests for replica in replicas] == requests
    assert all(replica.state == "healthy" for replica in replicas)
    assert all(replica.in_flight == 0 for replica in replicas)


async def test_a_new_client_spreads_its_first_call_evenly() -> None:
    # 47 requests over three servers of 8 slots: two rounds each when they share
    # 16/16/15. The first replica to answer must not take the second round alone
    # while the others' answers are a moment behind (it then needs a third round).
    with servers(3, ServerConfig(capacity=8, latency_ms=100)) as running:
        urls = [server.base_url for server in running]
        async with client_for(urls) as warming:  # a new server's first answers come late
            await warming.rerank(QUERY, documents(3000))
        async with client_for(urls) as client:
            await client.rerank(QUERY, documents(3000))
            requests = [replica.requests for replica in client.statistics().replicas]
    assert sum(requests) == 47
    assert max(requests) <= 16, requests


@pytest.mark.slow
async def test_a_dead_replica_is_left_out_and_back_when_it_returns() -> None:
    config = ServerConfig(latency_ms=5)
    with contextlib.ExitStack() as stack:
        running = [stack.enter_context(running_server(config)) for _ in range(2)]
        dying = contextlib.ExitStack()
        doomed = dying.enter_context(running_server(config))
        urls = [running[0].base_url, running[1].base_url, doomed.base_url]
        texts = documents(3000)
        async with RerankClient(base_url=running[0].base_url, model="acme/a") as single:
            expected = (await single.rerank(QUERY, texts)).scores
        async with client_for(urls) as client:
            await client.rerank(QUERY, texts)
            await anyio.to_thread.run_sync(dying.close)  # the replica dies
            first = await client.rerank(QUERY, texts)  # mid-run: retried elsewhere
            assert first.scores == expected
            before = client.statistics().replicas
            result = await client.rerank(QUERY, texts)
            after = client.statistics().replicas
            assert result.scores == expected
            sent = [b.requests - a.requests for a, b in zip(before, after, strict=True)]
            assert sent[2] <= 0.1 * sum(sent)
            assert after[2].state in ("ejected", "probing")
            # It comes back on the same port: work again within 10 s.
            with running_server(config, port=doomed.port) as revived:
                started = time.monotonic()
                while time.monotonic() - started < 10:
                    assert (await client.rerank(QUERY, texts[:640])).scores == expected[:640]
                    if revived.stats()["requests"] > 0:
                        break
                    await anyio.sleep(0.1)
                assert revived.stats()["requests"] > 0
                assert time.monotonic() - started < 10


def test_bulk_takes_base_url_repeated_for_replicas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerank_async.cli import main

    lines = [{"id": i, "query": QUERY, "documents": documents(64)} for i in range(40)]
    requests = tmp_path / "in.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with servers(2, ServerConfig(latency_ms=5)) as running:
        argv = ["bulk", str(requests), "-o", str(tmp_path / "out.jsonl"), "-q"]
        for server in running:
            argv += ["--base-url", server.base_url]
        assert main(argv) == 0
        assert all(server.stats()["requests"] > 0 for server in running)
    capsys.readouterr()


async def test_each_replica_learns_its_own_limit() -> None:
    with (
        running_server(ServerConfig(max_in_flight=4, latency_ms=20)) as small,
        running_server(ServerConfig(latency_ms=20)) as large,
    ):
        async with client_for([small.base_url, large.base_url], max_concurrency=32) as client:
            for _ in range(3):
                result = await client.rerank(QUERY, documents(64 * 24))
            statistics = client.statistics()
    assert len(result.scores) == 64 * 24
    small_replica, large_replica = statistics.replicas
    assert small_replica.concurrency_limit < large_replica.concurrency_limit
    assert small_replica.state == "healthy"  # a 429 is an answer, never a reason to eject
    # The client-wide bound stays max_concurrency; the replicas' limits do the learning.
    assert statistics.concurrency_limit == 32
