"""Closing ends every kind of wait with ClientClosedError, and nothing is sent after it.

Mocked HTTP (respx) and events: a call in flight, one waiting for a slot, one sleeping
before a retry (the retry policy's sleep never returns by itself), one whose batch waits
to be hedged. Each ends when the client closes, and the server sees no request after.
"""

from __future__ import annotations

import dataclasses
import math

import anyio
import httpx
import pytest

from rerank_async import ClientClosedError, Limits, RerankClient

from ..conftest import FakeReranker, make_client

QUERY = "q"


async def close_and_collect(client: RerankClient, calls: int) -> list[BaseException]:
    """Start ``calls`` calls, close the client once they are stuck, return their errors."""
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await client.score(QUERY, ["a", "b"])
        except Exception as error:
            errors.append(error)

    async with anyio.create_task_group() as task_group:
        for _ in range(calls):
            task_group.start_soon(one)
        for _ in range(20):  # let them reach their waits
            await anyio.lowlevel.checkpoint()
        with anyio.fail_after(2):
            await client.aclose()
    return errors


async def test_calls_in_flight_and_waiting_for_a_slot_end_with_client_closed_error(
    fake: FakeReranker,
) -> None:
    fake.delay = math.inf
    client = make_client(max_concurrency=1, limits=Limits(adaptive_concurrency=False))
    errors = await close_and_collect(client, 3)  # one in flight, two waiting for the slot
    assert len(errors) == 3
    assert all(isinstance(error, ClientClosedError) for error in errors)
    assert fake.calls == 1
    assert fake.in_flight == 0


async def test_a_call_sleeping_before_a_retry_ends_and_is_not_retried(
    fake: FakeReranker,
) -> None:
    fake.script = [httpx.Response(503)]
    sleeping = anyio.Event()

    async def sleep_until_cancelled(seconds: float) -> None:
        del seconds
        sleeping.set()
        await anyio.sleep_forever()

    client = make_client()
    client.set_retry_policy(dataclasses.replace(client.options.retry, sleep=sleep_until_cancelled))
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await client.score(QUERY, ["a", "b"])
        except Exception as error:
            errors.append(error)

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(one)
        with anyio.fail_after(5):
            await sleeping.wait()
        await client.aclose()
    assert [type(error) for error in errors] == [ClientClosedError]
    assert fake.calls == 1  # the 503; no retry after close


async def test_no_hedge_after_close(fake: FakeReranker) -> None:
    fake.delay = math.inf
    client = make_client(hedge_after=0.05, max_concurrency=4)
    errors = await close_and_collect(client, 1)
    await anyio.sleep(0.1)  # past hedge_after: a hedge would have been sent by now
    assert [type(error) for error in errors] == [ClientClosedError]
    assert fake.calls == 1


async def test_the_callers_own_cancellation_is_not_turned_into_client_closed_error(
    fake: FakeReranker,
) -> None:
    fake.delay = math.inf
    async with make_client() as client:
        with anyio.move_on_after(0.05) as scope:
            await client.score(QUERY, ["a"])
        assert scope.cancelled_caught
        assert not client.is_closed


async def test_a_closed_client_sends_nothing(fake: FakeReranker) -> None:
    client = make_client()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.score(QUERY, ["a"])
    with pytest.raises(ClientClosedError):
        async with client:
            pass
    assert fake.calls == 0
