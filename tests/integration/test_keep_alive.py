"""A request on a stale keep-alive connection is resent inside the engine, and only then.

The server here answers as if it kept the connection alive (no ``Connection: close``)
and then closes it: a client that reuses the connection races the close. Before the
engines resent such requests, 3.7% (httpx) and 50% (aiohttp) of back-to-back calls
failed with ``max_retries=0`` against it (docs/lifecycle.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rerank_async import APIConnectionError, RerankClient

from .loopback import read_request, scores_for, serving

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
CALLS = 300


class Counting:
    def __init__(self) -> None:
        self.requests = 0

    async def close_after_each(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        _method, _target, _headers, body = await read_request(reader)
        self.requests += 1
        payload = scores_for(body)
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}"
        )
        writer.write(head.encode() + b"\r\n\r\n" + payload)  # then the connection is closed

    async def never_answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        self.requests += 1  # processed, then the connection drops without an answer


@pytest.fixture(scope="module")
def closing_server() -> Iterator[tuple[str, Counting]]:
    counting = Counting()
    with serving(counting.close_after_each) as port:
        yield f"http://127.0.0.1:{port}/v1", counting


@ENGINES
async def test_back_to_back_calls_never_fail_on_a_server_that_closes_after_each(
    engine: str, closing_server: tuple[str, Counting]
) -> None:
    base_url, counting = closing_server
    before = counting.requests
    async with RerankClient(
        base_url=base_url,
        http_client=engine,  # type: ignore[arg-type]
        max_retries=0,
    ) as client:
        budget = client.statistics().retry_budget_left
        for _ in range(CALLS):
            result = await client.rerank("q", ["a", "b"])
            assert result.usage.retries == 0
            assert result.usage.requests == 1
        # Resent in the engine: no retry of the runner's, nothing drawn from the budget.
        assert client.statistics().retry_budget_left >= budget
    assert counting.requests - before == CALLS  # every request was processed exactly once


@ENGINES
async def test_a_new_connection_that_drops_is_not_resent(engine: str) -> None:
    counting = Counting()
    with serving(counting.never_answer) as port:
        async with RerankClient(
            base_url=f"http://127.0.0.1:{port}/v1",
            http_client=engine,  # type: ignore[arg-type]
            max_retries=0,
        ) as client:
            with pytest.raises(APIConnectionError):
                await client.score("q", ["a", "b"])
    assert counting.requests == 1  # it may have been processed: never sent twice
