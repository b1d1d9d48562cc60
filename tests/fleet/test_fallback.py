"""Fallbacks: a call that fails for good on the primary is scored whole by the fallback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import anyio
import pytest

from rerank_async import (
    ClientClosedError,
    RerankClient,
    RerankError,
    RerankRequest,
    RetryPolicy,
)
from rerank_async.server import RunningServer, ServerConfig, running_server

pytestmark = pytest.mark.integration

QUERY = "fallback scoring"
NO_WAIT = RetryPolicy(initial_delay=0.0, max_delay=0.0)


def documents(n: int, tag: str = "") -> list[str]:
    return [f"passage {tag}{i} about fallback scoring" for i in range(n)]


def dead_url() -> str:
    """A loopback URL nothing listens on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/inference"


@pytest.fixture(scope="module")
def backup() -> Iterator[RunningServer]:
    with running_server(ServerConfig()) as running:
        yield running


async def test_a_batch_that_fails_for_good_sends_the_whole_call_to_the_fallback(
    backup: RunningServer,
) -> None:
    texts = documents(256)
    texts[200] = "poisoned " + texts[200]
    with running_server(ServerConfig(poison="poisoned")) as primary_server:
        async with (
            RerankClient(base_url=backup.base_url, model="acme/backup") as fallback,
            RerankClient(
                base_url=primary_server.base_url,
                model="acme/primary",
                batch_size=64,
                max_retries=1,
                retry=NO_WAIT,
                fallback=fallback,
            ) as client,
        ):
            expected = (await fallback.rerank(QUERY, texts)).scores
            backup.reset_stats()
            result = await client.rerank(QUERY, texts, top_k=5)
            assert primary_server.stats()["documents"] > 0  # the primary was tried
            assert client.statistics().fallbacks == 1
    assert result.model == "acme/backup"
    assert result.provider == "deepinfra"
    assert result.scores == expected  # every score the fallback's, none the primary's
    assert backup.stats()["documents"] == 256  # the whole call, not only the gap
    assert len(result.results) == 5


async def test_a_primary_known_to_be_down_is_skipped_at_once(backup: RunningServer) -> None:
    async with (
        RerankClient(base_url=backup.base_url, model="acme/backup") as fallback,
        RerankClient(
            base_url=dead_url(), model="acme/primary", retry=NO_WAIT, fallback=[fallback]
        ) as client,
    ):
        first = await client.rerank(QUERY, documents(10))
        assert first.model == "acme/backup"
        (replica,) = client.statistics().replicas
        assert replica.state == "ejected"
        sent_before = replica.requests
        again = await client.rerank(QUERY, documents(10))
        assert again.model == "acme/backup"
        assert client.statistics().replicas[0].requests == sent_before


@pytest.mark.slow
async def test_rerank_many_with_the_primary_down_fails_nothing(backup: RunningServer) -> None:
    requests = [RerankRequest(QUERY, documents(20, tag=f"{i}-")) for i in range(200)]
    async with (
        RerankClient(base_url=backup.base_url, model="acme/backup") as fallback,
        RerankClient(
            base_url=[dead_url(), dead_url()],
            model="acme/primary",
            retry=NO_WAIT,
            fallback=fallback,
        ) as client,
    ):
        failed = 0
        models = set()
        async with client.rerank_many(requests) as outcomes:
            async for outcome in outcomes:
                if outcome.error is not None:
                    failed += 1
                else:
                    assert outcome.result is not None
                    models.add(outcome.result.model)
    assert failed == 0
    assert models == {"acme/backup"}


async def test_when_every_client_fails_the_primary_error_is_raised(backup: RunningServer) -> None:
    async with (
        RerankClient(base_url=dead_url(), model="acme/other", retry=NO_WAIT) as fallback,
        RerankClient(
            base_url=dead_url(), model="acme/primary", retry=NO_WAIT, fallback=fallback
        ) as client,
    ):
        with pytest.raises(RerankError) as caught:
            await client.rerank(QUERY, documents(3))
    assert caught.value.model == "acme/primary"
    assert any("acme/other" in note for note in caught.value.__notes__)


def test_fallback_must_be_clients() -> None:
    with pytest.raises(TypeError, match=r"fallback\[0\]"):
        RerankClient(base_url="http://127.0.0.1:9", fallback=["x"])  # type: ignore[list-item]


@pytest.mark.slow
async def test_an_outage_hands_calls_under_way_to_the_fallback_at_once(
    backup: RunningServer,
) -> None:
    requests = [RerankRequest(QUERY, documents(20, tag=f"{i}-")) for i in range(200)]
    outage = ServerConfig(outage_start_s=0, outage_duration_s=1000)
    with running_server(outage) as primary_server:
        async with (
            RerankClient(base_url=backup.base_url, model="acme/backup") as fallback,
            RerankClient(
                base_url=primary_server.base_url, model="acme/primary", fallback=fallback
            ) as client,
        ):
            started = time.monotonic()
            async with client.rerank_many(requests) as outcomes:
                results = [outcome async for outcome in outcomes]
            elapsed = time.monotonic() - started
            (replica,) = client.statistics().replicas
    assert all(outcome.error is None for outcome in results)
    # Calls under way when it went down were stopped, not left to their backoff.
    assert elapsed < 5.0
    assert replica.ejections == 1


async def test_closing_the_client_during_a_call_never_falls_back(backup: RunningServer) -> None:
    with running_server(ServerConfig(latency_ms=2000)) as slow:
        async with RerankClient(base_url=backup.base_url, model="acme/backup") as fallback:
            client = RerankClient(base_url=slow.base_url, model="acme/primary", fallback=fallback)
            backup.reset_stats()
            caught: list[BaseException] = []

            async def call() -> None:
                try:
                    await client.rerank(QUERY, documents(5))
                except ClientClosedError as error:
                    caught.append(error)

            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await anyio.sleep(0.2)
                await client.aclose()
    assert len(caught) == 1
    assert backup.stats()["requests"] == 0
