"""OutageGate on a fake clock: failures in a row hold everyone, one probe at a time."""

from __future__ import annotations

import anyio
import httpx
import pytest
import respx

from rerank_async import RetryPolicy
from rerank_async._flow.outage import OutageGate
from tests.conftest import URL, FakeReranker, SleepRecorder, make_client
from tests.unit.fake_clock import FakeClock


def gate(clock: FakeClock, patience: float = 60.0) -> OutageGate:
    return OutageGate(patience=patience, clock=clock, sleep=clock.sleep)


def always() -> bool:
    return True


def fail(outage: OutageGate, times: int) -> None:
    for _ in range(times):
        outage.on_failure(probe=0)


async def test_failures_with_answers_between_them_are_no_outage() -> None:
    outage = gate(FakeClock())
    for _ in range(100):
        fail(outage, 7)
        outage.on_answer()
    assert outage.since is None
    assert await outage.pass_through(always) == 0


async def test_eight_failures_in_a_row_declare_an_outage_and_probes_are_spaced() -> None:
    clock = FakeClock()
    outage = gate(clock)
    fail(outage, 8)
    assert outage.since == clock.now
    assert outage.waiting_out
    first = await outage.pass_through(always)
    assert first == 1
    assert clock.sleeps == [pytest.approx(0.05)]  # the first probe waits one interval
    outage.on_failure(probe=first)
    second = await outage.pass_through(always)
    assert second == 2
    outage.on_failure(probe=second)
    await outage.pass_through(always)
    # Each failed probe doubles the interval before the next.
    assert clock.sleeps[1:] == [pytest.approx(0.05), pytest.approx(0.1)]
    assert outage.probes == 3


async def test_one_probe_at_a_time_and_an_answer_releases_everyone() -> None:
    clock = FakeClock()
    outage = gate(clock)
    fail(outage, 8)
    probe = await outage.pass_through(always)
    released: list[int] = []

    async def held() -> None:
        released.append(await outage.pass_through(always))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(held)
        await anyio.wait_all_tasks_blocked()
        assert released == []  # the probe is out: nobody else goes
        assert outage.waiting == 5
        outage.on_answer()
    assert released == [0] * 5  # released as ordinary requests, not probes
    assert outage.since is None
    assert probe == 1


async def test_a_probe_cancelled_lets_the_next_one_go() -> None:
    clock = FakeClock()
    outage = gate(clock)
    fail(outage, 8)
    probe = await outage.pass_through(always)
    outage.probe_ended(probe)
    assert await outage.pass_through(always) == probe + 1


async def test_patience_ends_the_wait() -> None:
    clock = FakeClock()
    outage = gate(clock, patience=1.0)
    fail(outage, 8)
    assert outage.waiting_out
    clock.advance(1.0)
    assert not outage.waiting_out
    assert await outage.pass_through(always) == 0


async def test_no_patience_never_declares_an_outage() -> None:
    outage = gate(FakeClock(), patience=0.0)
    fail(outage, 100)
    assert outage.since is None


async def test_a_probe_waits_for_the_budget() -> None:
    clock = FakeClock()
    outage = gate(clock)
    fail(outage, 8)
    grants = iter([False, False, True])
    assert await outage.pass_through(lambda: next(grants)) == 1
    assert len(clock.sleeps) == 3  # the interval, then one more per refusal


async def test_a_client_waits_an_outage_out_instead_of_failing_its_calls(
    mock_api: respx.MockRouter,
) -> None:
    fake = FakeReranker()
    down = {"left": 40}

    async def handler(request: httpx.Request) -> httpx.Response:
        if down["left"] > 0:
            down["left"] -= 1
            return httpx.Response(503)
        return await fake(request)

    mock_api.post(URL).mock(side_effect=handler)
    sleep = SleepRecorder()
    docs = [f"doc {i}" for i in range(16)]
    async with make_client(batch_size=1, max_retries=2, sleep=sleep) as client:
        scores = await client.score("q", docs)
        stats = client.statistics()
    assert len(scores) == 16
    # 16 batches x 3 attempts could not outlast 40 failures without the gate.
    assert stats.outage_probes > 0
    assert stats.outage_since is None


async def test_without_patience_the_same_outage_fails_the_call(
    mock_api: respx.MockRouter,
) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(503))
    docs = [f"doc {i}" for i in range(16)]
    policy = RetryPolicy(initial_delay=0.0, outage_patience=0.0)
    async with make_client(
        batch_size=1, max_retries=2, retry=policy, sleep=SleepRecorder()
    ) as client:
        with pytest.raises(Exception, match="503"):
            await client.score("q", docs)
        assert client.statistics().outage_probes == 0
