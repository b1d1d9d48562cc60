"""rerank_many: every request answered once, lazily read, fair, failures contained."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager

import anyio
import httpx
import pytest
import respx

from rerank_async import AuthenticationError, RerankOutcome, RerankRequest
from tests.conftest import URL, FakeReranker, make_client, pointwise_score


def requests(n: int) -> list[RerankRequest]:
    return [
        RerankRequest(query=f"q{i}", documents=[f"d{i}-{j}" for j in range(1 + i % 7)], id=f"r{i}")
        for i in range(n)
    ]


async def collect(client_kwargs: dict[str, object], items: object) -> list[RerankOutcome]:
    async with make_client(**client_kwargs) as client:  # type: ignore[arg-type]
        async with client.rerank_many(items) as outcomes:  # type: ignore[arg-type]
            return [outcome async for outcome in outcomes]


async def drain(run: AbstractAsyncContextManager[AsyncIterator[RerankOutcome]]) -> None:
    async with run as outcomes:
        async for outcome in outcomes:
            pytest.fail(f"no outcome is handed out once the run fails: {outcome}")


async def test_every_request_is_answered_exactly_once(fake: FakeReranker) -> None:
    batch = requests(100)
    outcomes = await collect({"batch_size": 3, "max_concurrency": 4}, batch)
    assert sorted(o.position for o in outcomes) == list(range(100))
    for outcome in outcomes:
        assert outcome.ok
        assert outcome.result is not None
        assert outcome.request is not None
        request = batch[outcome.position]
        assert outcome.id == request.id
        assert outcome.result.scores == [
            pointwise_score(request.query, d) for d in request.documents
        ]
    assert fake.max_in_flight <= 4


async def test_tuples_async_iterables_and_positional_ids(fake: FakeReranker) -> None:
    async def generate() -> AsyncIterator[tuple[str, list[str]]]:
        for i in range(5):
            yield (f"q{i}", [f"doc {i}"])

    outcomes = await collect({}, generate())
    assert sorted(o.id for o in outcomes) == [0, 1, 2, 3, 4]  # position stands in for an id
    assert all(o.ok for o in outcomes)


async def test_top_k_per_request(fake: FakeReranker) -> None:
    items = [RerankRequest(query="q", documents=["a", "b", "c"], top_k=1)]
    [outcome] = await collect({}, items)
    assert outcome.result is not None
    assert len(outcome.result.results) == 1


async def test_input_is_read_lazily() -> None:
    read = 0

    def generate() -> Iterator[RerankRequest]:
        nonlocal read
        for i in range(10_000):
            read += 1
            yield RerankRequest(query="q", documents=[f"d{i}"])

    fake = FakeReranker()
    with respx.mock(assert_all_called=False) as router:
        router.post(URL).mock(side_effect=fake)
        async with make_client(max_concurrency=2) as client:
            async with client.rerank_many(generate(), max_pending=5) as outcomes:
                taken = 0
                async for _ in outcomes:
                    taken += 1
                    assert read <= taken + 5 + 1  # never more than max_pending ahead
                    if taken == 50:
                        break
    assert read < 100


async def test_small_request_does_not_wait_behind_a_big_one(mock_api: respx.MockRouter) -> None:
    fake = FakeReranker()
    big = RerankRequest(query="q", documents=[f"big {i}" for i in range(60)], id="big")
    small = RerankRequest(query="q", documents=["small"], id="small")
    big_batches = 20  # 60 documents at batch_size 3
    planned = anyio.Event()  # big's batches and small's one are all planned
    async with make_client(batch_size=3, max_concurrency=2) as client:

        async def handler(request: httpx.Request) -> httpx.Response:
            # Big's first requests hold both slots until small is planned too, so small
            # queues for a slot behind all 18 of big's other batches.
            while not planned.is_set():
                if client.statistics().outstanding_batches == big_batches + 1:
                    planned.set()
                await anyio.lowlevel.checkpoint()
            return await fake(request)

        mock_api.post(URL).mock(side_effect=handler)
        with anyio.fail_after(5):
            async with client.rerank_many([big, small]) as outcomes:
                order = [outcome.id async for outcome in outcomes]
    assert fake.batch_sizes.count(3) == big_batches
    assert order == ["small", "big"]
    # The small request got the second slot freed, not a place behind every batch of big.
    first_small = next(i for i, b in enumerate(fake.bodies) if b["documents"] == ["small"])
    assert first_small <= 3


async def test_a_failed_request_yields_an_error_outcome(mock_api: respx.MockRouter) -> None:
    fake = FakeReranker()

    async def handler(request: httpx.Request) -> httpx.Response:
        if b'"bad"' in request.content:
            return httpx.Response(401, json={"error": "denied"})
        return await fake(request)

    mock_api.post(URL).mock(side_effect=handler)
    items = [
        RerankRequest(query="q", documents=["ok"], id="a"),
        RerankRequest(query="q", documents=["bad"], id="b"),
        RerankRequest(query="", documents=["x"], id="c"),  # invalid: blank query
        ("q", ["fine"]),
        "not a request",
    ]
    outcomes = {o.id: o for o in await collect({}, items)}
    assert outcomes["a"].ok
    assert outcomes[3].ok
    assert isinstance(outcomes["b"].error, AuthenticationError)
    assert isinstance(outcomes["c"].error, ValueError)
    assert isinstance(outcomes[4].error, TypeError)
    assert outcomes[4].request is None
    assert "must be a RerankRequest" in str(outcomes[4].error)


async def test_fail_fast_raises_the_first_failure(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(403, json={"error": "forbidden"}))
    async with make_client() as client:
        with pytest.raises(AuthenticationError, match="forbidden"):
            await drain(client.rerank_many(requests(20), fail_fast=True))


async def test_a_broken_input_stops_the_run(fake: FakeReranker) -> None:
    def generate() -> Iterator[RerankRequest]:
        yield RerankRequest(query="q", documents=["a"])
        raise OSError("input file vanished")

    async with make_client() as client:
        with pytest.raises(OSError, match="input file vanished"):
            await drain(client.rerank_many(generate()))


async def test_leaving_early_cancels_the_rest(mock_api: respx.MockRouter) -> None:
    fake = FakeReranker()

    async def handler(request: httpx.Request) -> httpx.Response:
        if fake.calls:  # the first request answers; the rest wait until cancelled
            fake.in_flight += 1
            try:
                await anyio.sleep_forever()
            finally:
                fake.in_flight -= 1
        return await fake(request)

    mock_api.post(URL).mock(side_effect=handler)
    tasks_before = len(asyncio.all_tasks())
    async with make_client(max_concurrency=4) as client:
        async with client.rerank_many(requests(200)) as outcomes:
            async for _ in outcomes:
                break
        assert fake.in_flight == 0
        assert client.statistics().in_flight == 0
        assert len(asyncio.all_tasks()) == tasks_before
    assert fake.calls < 200


async def test_max_pending_is_checked() -> None:
    async with make_client() as client:
        with pytest.raises(ValueError, match="max_pending must be >= 1"):
            client.rerank_many([], max_pending=0)


async def test_empty_input(fake: FakeReranker) -> None:
    assert await collect({}, []) == []
