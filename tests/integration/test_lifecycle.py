"""Closing under load, on both engines, over loopback (docs/lifecycle.md).

``aclose()`` fails every call running or waiting with ``ClientClosedError`` within 2 s,
nothing succeeds or reopens afterwards, the client's sockets go back to baseline, and no
"Unclosed client session" warning appears (``filterwarnings = error``).
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator

import anyio
import pytest

from rerank_async import ClientClosedError, Limits, RerankClient, RerankError, SyncRerankClient
from rerank_async.server import RunningServer, ServerConfig, running_server

from ..conftest import ENGINES

pytestmark = pytest.mark.integration

QUERY = "solar battery storage"
DOCUMENTS = [f"solar panel {i}" for i in range(8)]
CALLERS = 100
CLOSE_BOUND_S = 2.0


def sockets_to(port: int) -> int:
    """This process's TCP sockets whose remote end is ``port`` (the client's side only)."""
    inodes = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += 1
    return count


@pytest.fixture(scope="module")
def slow_server() -> Iterator[RunningServer]:
    """Answers after 3 s: every call is in flight, or waiting for a slot, when close comes."""
    with running_server(ServerConfig(latency_ms=3000, seed=1)) as running:
        yield running


async def wait_for_requests(server: RunningServer, count: int) -> None:
    """Poll the server (another thread: no event of ours to wait on) until ``count`` arrived."""
    with anyio.fail_after(5):
        while server.stats()["requests"] < count:  # noqa: ASYNC110
            await anyio.sleep(0.01)


@ENGINES
async def test_aclose_fails_every_in_flight_and_waiting_call_within_2_s(
    engine: str, slow_server: RunningServer
) -> None:
    slow_server.reset_stats()
    baseline = sockets_to(slow_server.port)
    outcomes: list[BaseException | list[float]] = []
    finished_at: list[float] = []
    client = RerankClient(
        http_client=engine,
        base_url=slow_server.base_url,
        max_concurrency=32,
        max_retries=5,
        limits=Limits(adaptive_concurrency=False),
    )

    async def caller() -> None:
        try:
            outcomes.append(await client.score(QUERY, DOCUMENTS))
        except Exception as error:
            outcomes.append(error)
        finished_at.append(time.perf_counter())

    async with anyio.create_task_group() as task_group:
        for _ in range(CALLERS):
            task_group.start_soon(caller)
        await wait_for_requests(slow_server, 32)  # 32 in flight, 68 waiting for a slot
        assert sockets_to(slow_server.port) >= 32
        closing = time.perf_counter()
        await client.aclose()
        closed_in = time.perf_counter() - closing
    assert len(outcomes) == CALLERS
    assert all(isinstance(outcome, ClientClosedError) for outcome in outcomes), outcomes[:3]
    assert all(isinstance(outcome, RerankError | RuntimeError) for outcome in outcomes)
    assert max(finished_at) - closing < CLOSE_BOUND_S
    assert closed_in < CLOSE_BOUND_S
    assert sockets_to(slow_server.port) <= baseline + 2
    requests_at_close = slow_server.stats()["requests"]
    # Nothing reopens: past the server's 3 s, no retry or new session has reached it.
    await anyio.sleep(0.5)
    assert slow_server.stats()["requests"] == requests_at_close == 32
    gc.collect()  # an unclosed aiohttp session would warn here, and warnings are errors


@ENGINES
async def test_a_call_on_a_closed_client_raises_client_closed_error(
    engine: str, server: RunningServer
) -> None:
    async with RerankClient(http_client=engine, base_url=server.base_url) as client:
        assert await client.score(QUERY, DOCUMENTS)
    with pytest.raises(ClientClosedError, match="closed"):
        await client.score(QUERY, DOCUMENTS)
    with pytest.raises(ClientClosedError):
        client.rerank_many([(QUERY, DOCUMENTS)])
    with pytest.raises(RuntimeError, match="cannot reopen"):  # also a RuntimeError
        await client.__aenter__()
    await client.aclose()  # idempotent


@ENGINES
async def test_closing_ends_a_rerank_many_block_with_client_closed_error(
    engine: str, slow_server: RunningServer
) -> None:
    slow_server.reset_stats()
    client = RerankClient(
        http_client=engine,
        base_url=slow_server.base_url,
        max_concurrency=8,
        limits=Limits(adaptive_concurrency=False),
    )
    requests = ((QUERY, DOCUMENTS) for _ in range(10_000))  # far more than ever run
    seen = []

    async def read_all() -> None:
        async with client.rerank_many(requests) as outcomes:
            async for outcome in outcomes:
                seen.append(outcome)

    async def consume() -> None:
        with pytest.raises(ClientClosedError):
            await read_all()

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(consume)
        await wait_for_requests(slow_server, 8)
        closing = time.perf_counter()
        await client.aclose()
    assert time.perf_counter() - closing < CLOSE_BOUND_S
    assert all(not outcome.ok for outcome in seen)
    assert sockets_to(slow_server.port) <= 2


@ENGINES
def test_sync_close_while_busy_fails_every_thread_within_2_s(
    engine: str, slow_server: RunningServer
) -> None:
    slow_server.reset_stats()
    client = SyncRerankClient(
        http_client=engine,  # type: ignore[arg-type]
        base_url=slow_server.base_url,
        max_concurrency=4,
        limits=Limits(adaptive_concurrency=False),
    )
    errors: list[BaseException] = []
    done_at: list[float] = []

    def caller() -> None:
        try:
            client.score(QUERY, DOCUMENTS)
        except BaseException as error:  # collected for the assertions below
            errors.append(error)
        done_at.append(time.perf_counter())

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while slow_server.stats()["requests"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    closing = time.perf_counter()
    client.close()
    closed_in = time.perf_counter() - closing
    for thread in threads:
        thread.join(5)
    assert closed_in < CLOSE_BOUND_S
    assert len(errors) == 8
    assert all(isinstance(error, ClientClosedError) for error in errors), errors
    assert max(done_at) - closing < CLOSE_BOUND_S
    with pytest.raises(ClientClosedError):
        client.score(QUERY, DOCUMENTS)


# Closing cancels httpx mid-request; trio then finalises httpx's own request-body
# generator (ByteStream.__aiter__) by garbage collection and warns about that generator,
# which belongs to httpx, not to the client (it holds no socket or file).
@pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx._content.ByteStream.__aiter__' was garbage collected"
    ":ResourceWarning"
)
def test_aclose_under_trio_fails_the_calls_the_same_way(slow_server: RunningServer) -> None:
    pytest.importorskip("trio")

    async def main() -> list[BaseException]:
        slow_server.reset_stats()
        errors: list[BaseException] = []
        client = RerankClient(base_url=slow_server.base_url, max_concurrency=4)

        async def caller() -> None:
            try:
                await client.score(QUERY, DOCUMENTS)
            except Exception as error:
                errors.append(error)

        async with anyio.create_task_group() as task_group:
            for _ in range(10):
                task_group.start_soon(caller)
            await wait_for_requests(slow_server, 4)
            with anyio.fail_after(CLOSE_BOUND_S):
                await client.aclose()
        return errors

    errors = anyio.run(main, backend="trio")
    assert len(errors) == 10
    assert all(isinstance(error, ClientClosedError) for error in errors)


@ENGINES
def test_sync_close_ends_a_rerank_many_block_in_another_thread(
    engine: str, slow_server: RunningServer
) -> None:
    slow_server.reset_stats()
    client = SyncRerankClient(
        http_client=engine,  # type: ignore[arg-type]
        base_url=slow_server.base_url,
        max_concurrency=4,
        limits=Limits(adaptive_concurrency=False),
    )
    ended: dict[str, object] = {}

    def consume() -> None:
        try:
            with client.rerank_many((QUERY, DOCUMENTS) for _ in range(1000)) as outcomes:
                for _ in outcomes:
                    pass
        except BaseException as error:  # collected for the assertions below
            ended["error"] = error
        ended["at"] = time.perf_counter()

    thread = threading.Thread(target=consume)
    thread.start()
    deadline = time.monotonic() + 5
    while slow_server.stats()["requests"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    closing = time.perf_counter()
    client.close()
    thread.join(5)
    assert isinstance(ended.get("error"), ClientClosedError)
    at = ended["at"]
    assert isinstance(at, float)
    assert at - closing < CLOSE_BOUND_S
