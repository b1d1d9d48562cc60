"""The engine "auto" chooses, over loopback: aiohttp on asyncio, httpx under trio."""

from __future__ import annotations

import anyio
import httpx
import pytest

from rerank_async import RerankClient, RetryPolicy
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

pytestmark = pytest.mark.integration

QUERY = "solar battery storage"
DOCUMENTS = [f"solar panel {i}" for i in range(40)]
EXPECTED = [reference_score(QUERY, d) for d in DOCUMENTS]


async def test_the_default_client_sends_through_aiohttp_on_asyncio(server: RunningServer) -> None:
    async with RerankClient(base_url=server.base_url, batch_size=16) as client:
        assert client.http_engine == "auto"
        assert await client.score(QUERY, DOCUMENTS) == EXPECTED
        assert client.http_engine == "aiohttp"


def test_the_default_client_sends_through_httpx_under_trio(server: RunningServer) -> None:
    pytest.importorskip("trio")

    async def main() -> str:
        async with RerankClient(base_url=server.base_url, batch_size=16) as client:
            assert await client.score(QUERY, DOCUMENTS) == EXPECTED
            return client.http_engine

    assert anyio.run(main, backend="trio") == "httpx"


def test_aiohttp_named_under_trio_says_why_it_cannot(server: RunningServer) -> None:
    pytest.importorskip("trio")

    async def main() -> None:
        async with RerankClient(base_url=server.base_url, http_client="aiohttp") as client:
            await client.score(QUERY, DOCUMENTS)

    with pytest.raises(RuntimeError, match="asyncio only"):
        anyio.run(main, backend="trio")


async def test_a_callers_http_client_is_used_and_left_open(server: RunningServer) -> None:
    async with httpx.AsyncClient() as own:
        async with RerankClient(base_url=server.base_url, http_client=own) as client:
            assert await client.score(QUERY, DOCUMENTS) == EXPECTED
            assert client.http_engine == "httpx"
        assert not own.is_closed


def test_a_client_made_outside_any_loop_chooses_when_it_first_sends(
    server: RunningServer,
) -> None:
    client = RerankClient(base_url=server.base_url)  # a module-level client of a web app

    async def main() -> str:
        async with client:
            assert await client.score(QUERY, DOCUMENTS) == EXPECTED
            return client.http_engine

    assert anyio.run(main) == "aiohttp"


def test_retries_and_fan_out_work_under_trio() -> None:
    pytest.importorskip("trio")
    documents = [f"battery {i}" for i in range(1000)]
    config = ServerConfig(latency_ms=1, jitter_ms=1, error_503_rate=0.2, seed=4)

    async def main(base_url: str) -> tuple[list[float], int]:
        async with RerankClient(
            base_url=base_url, batch_size=50, max_concurrency=8, max_retries=10,
            retry=RetryPolicy(initial_delay=0, max_delay=0)
        ) as client:  # fmt: skip
            result = await client.rerank(QUERY, documents)
            return result.scores, result.usage.retries

    with running_server(config) as server:
        scores, retries = anyio.run(main, server.base_url, backend="trio")
    assert scores == [reference_score(QUERY, d) for d in documents]
    assert retries > 0
