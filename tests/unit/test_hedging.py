"""hedge_after: a slow batch gets a second copy when a slot is free; the first answer wins."""

from __future__ import annotations

import math

import anyio
import httpx
import pytest
import respx

from rerank_async import Limits, RequestRecord, ServerError
from rerank_async._flow.limiter import FairLimiter
from rerank_async._hedging import race_hedged
from tests.conftest import URL, FakeReranker, make_client, pointwise_score

QUERY = "q"


def slow_first_copy(seconds: float) -> FakeReranker:
    """The first request of every batch takes ``seconds``; any later copy answers at once."""
    seen: set[bytes] = set()

    def delay(body: dict[str, object]) -> float:
        key = repr(body["documents"]).encode()
        if key in seen:
            return 0.0
        seen.add(key)
        return seconds

    return FakeReranker(delay=delay)


async def test_a_slow_batch_is_hedged_and_the_fast_copy_wins(mock_api: respx.MockRouter) -> None:
    fake = slow_first_copy(math.inf)  # the first copy never answers; the hedge must
    mock_api.post(URL).mock(side_effect=fake)
    records: list[RequestRecord] = []
    documents = ["a", "b", "c"]
    async with make_client(
        hedge_after=0.02, max_concurrency=4, on_request=records.append
    ) as client:
        with anyio.fail_after(5):
            result = await client.rerank(QUERY, documents)
        assert client.statistics().in_flight == 0
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert result.usage.hedges == 1
    assert result.usage.requests == 2
    assert fake.calls == 2
    assert fake.in_flight == 0  # the slow copy was cancelled
    assert [r.ok for r in records] == [True]  # only the winner reports; the loser was cancelled


async def test_no_hedge_without_a_free_slot(mock_api: respx.MockRouter) -> None:
    fake = slow_first_copy(0.1)
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client(hedge_after=0.01, max_concurrency=1) as client:
        result = await client.rerank(QUERY, ["a"])
    assert result.usage.hedges == 0
    assert fake.calls == 1


async def test_no_hedge_for_a_fast_answer(fake: FakeReranker) -> None:
    async with make_client(
        hedge_after=1.0, batch_size=2, limits=Limits(min_batch_size=2)
    ) as client:
        result = await client.rerank(QUERY, ["a", "b", "c", "d"])
    assert result.usage.hedges == 0
    assert fake.calls == 2


async def test_a_fast_failure_is_not_hedged(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(503))
    async with make_client(hedge_after=1.0, max_retries=0) as client:
        with pytest.raises(ServerError):
            await client.rerank(QUERY, ["a"])
    assert route.call_count == 1


async def test_the_copy_rescues_a_failing_slow_request(mock_api: respx.MockRouter) -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(0.1)
            return httpx.Response(503)
        return httpx.Response(200, json={"scores": [0.25]})

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(hedge_after=0.01, max_retries=0) as client:
        result = await client.rerank(QUERY, ["a"])
    assert result.scores == [0.25]
    assert result.usage.hedges == 1


def test_hedge_after_is_checked() -> None:
    with pytest.raises(ValueError, match="hedge_after must be a finite number > 0"):
        make_client(hedge_after=0)


def slow_copies(slow: int) -> FakeReranker:
    """The first ``slow`` copies of every batch never answer; later ones answer at once."""
    seen: dict[str, int] = {}

    def delay(body: dict[str, object]) -> float:
        key = repr(body["documents"])
        seen[key] = seen.get(key, 0) + 1
        return math.inf if seen[key] <= slow else 0.0

    return FakeReranker(delay=delay)


async def test_race_sends_up_to_max_hedges_copies_one_interval_apart() -> None:
    sent: list[int] = []

    async def send() -> int:
        sent.append(len(sent))
        if len(sent) < 3:
            await anyio.sleep_forever()  # the original and the first copy are both stuck
        return len(sent)

    limiter = FairLimiter(4)
    with anyio.fail_after(5):
        winner = await race_hedged(send, hedge_after=0.01, limiter=limiter, max_hedges=2)
    assert winner == 3
    assert sent == [0, 1, 2]
    assert limiter.in_use == 0  # both extra slots were given back


async def test_one_hedge_unless_asked_for_more() -> None:
    sent = 0

    async def send() -> None:
        nonlocal sent
        sent += 1
        await anyio.sleep(0.2 if sent == 1 else 0.1)

    await race_hedged(send, hedge_after=0.01, limiter=FairLimiter(4))
    assert sent == 2


async def test_auto_hedges_a_batch_twice_when_its_first_copy_is_slow_too(
    mock_api: respx.MockRouter,
) -> None:
    fake = slow_copies(2)
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client(hedge_after="auto", max_concurrency=4) as client:
        # A new client hedges at twice the median answer once it has one: no hedge yet.
        warm = FakeReranker()
        mock_api.post(URL).mock(side_effect=warm)
        await client.rerank(QUERY, ["warm"])
        mock_api.post(URL).mock(side_effect=fake)
        with anyio.fail_after(5):
            result = await client.rerank(QUERY, ["a", "b"])
    assert result.scores == [pointwise_score(QUERY, d) for d in ["a", "b"]]
    assert result.usage.hedges == 2
    assert fake.calls == 3
    assert fake.in_flight == 0


async def test_a_hedge_is_charged_to_the_token_limit_like_any_request(
    mock_api: respx.MockRouter,
) -> None:
    fake = slow_first_copy(math.inf)  # the first copy never answers; the hedge must
    mock_api.post(URL).mock(side_effect=fake)
    documents = ["alpha beta", "gamma delta", "epsilon"]
    async with make_client(
        hedge_after=0.02, max_concurrency=4, limits=Limits(max_tokens_per_minute=1_000_000)
    ) as client:
        with anyio.fail_after(5):
            result = await client.rerank(QUERY, documents)
        used = client.statistics().tokens_this_minute
    assert result.usage.hedges == 1
    # Both copies were admitted with the batch's estimate; the winner's reported usage
    # (the fake reports 3 tokens per document) then replaced its own estimate.
    estimate = client.provider.estimate_tokens
    per_copy = sum(estimate(QUERY) + estimate(d) for d in documents)
    assert used == per_copy + 3 * len(documents)


async def test_no_hedge_when_the_token_limit_has_no_room_now(
    mock_api: respx.MockRouter,
) -> None:
    fake = slow_first_copy(0.1)
    mock_api.post(URL).mock(side_effect=fake)
    documents = ["alpha beta gamma delta"] * 4
    estimate = make_client().provider.estimate_tokens
    per_copy = sum(estimate(QUERY) + estimate(d) for d in documents)
    # A bucket that holds one copy's tokens: the hedge would have to wait for a refill,
    # so it is not sent (a hedge never waits).
    async with make_client(
        hedge_after=0.01, max_concurrency=4,
        limits=Limits(max_tokens_per_minute=per_copy * 60 / 3600, dedupe=False),
    ) as client:  # fmt: skip
        result = await client.rerank(QUERY, documents)
    assert result.usage.hedges == 0
    assert fake.calls == 1


async def test_a_threshold_unknown_at_first_is_read_again_while_waiting() -> None:
    # hedge_after="auto" before any answer: nothing is known when the race starts, and
    # the first request of a new client must still be hedged once something is.
    threshold: list[float | None] = [None]
    sent: list[str] = []

    async def send() -> str:
        sent.append("copy")
        if len(sent) == 1:
            threshold[0] = 0.01  # another request's answer arrives meanwhile
            await anyio.sleep_forever()
        return "hedge"

    limiter = FairLimiter(2)
    with anyio.fail_after(5):
        answer = await race_hedged(send, hedge_after=lambda: threshold[0], limiter=limiter)
    assert answer == "hedge"
    assert sent == ["copy", "copy"]
    assert limiter.in_use == 0


async def test_auto_hedges_a_new_clients_first_call_once_another_batch_answers(
    mock_api: respx.MockRouter,
) -> None:
    # Nothing is known when the first call's batches go out; the fast batch's answer
    # tells how long is slow, and the batch whose first copy never answers is hedged.
    def delay(body: dict[str, object]) -> float:
        return math.inf if body["documents"] == ["stuck"] else 0.005

    fake = FakeReranker(delay=delay)
    calls: list[int] = []

    async def once_stuck(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) > 2:  # the hedge: answered at once
            fake.delay = 0.0
        return await fake(request)

    mock_api.post(URL).mock(side_effect=once_stuck)
    async with make_client(hedge_after="auto", batch_size=1, max_concurrency=4) as client:
        with anyio.fail_after(5):
            result = await client.rerank(QUERY, ["fast", "stuck"])
    assert result.scores == [pointwise_score(QUERY, d) for d in ["fast", "stuck"]]
    assert result.usage.hedges == 1
