"""ReplicaSet alone: the least busy choice, ejection, probing, panic mode (no sockets)."""

from __future__ import annotations

import contextlib

import anyio
import pytest

from rerank_async import APIConnectionError, BadRequestError, ServerError
from rerank_async._fleet import EjectionPolicy, ReplicaSet
from rerank_async._transports import BatchRequest
from rerank_async.providers import BatchScores

BATCH = BatchRequest(body=b"{}", n_documents=1, document_range=(0, 1))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeReplica:
    """Answers, fails with ``error``, or waits on ``gate`` before answering."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.gate: anyio.Event | None = None
        self.sent = 0

    async def send(self, batch: BatchRequest) -> BatchScores:
        self.sent += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return BatchScores(scores=[0.5])

    async def aclose(self) -> None:
        return None


def replica_set(count: int, clock: Clock, **kwargs: object) -> tuple[ReplicaSet, list[FakeReplica]]:
    fakes = [FakeReplica() for _ in range(count)]
    replicas = ReplicaSet(
        [(f"http://r{i}", fake) for i, fake in enumerate(fakes)],
        max_concurrency=8,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )
    return replicas, fakes


def refused() -> APIConnectionError:
    return APIConnectionError("refused", url="http://r", model="m")


async def test_sequential_requests_take_turns() -> None:
    replicas, fakes = replica_set(3, Clock())
    for _ in range(30):
        await replicas.send(BATCH)
    assert [fake.sent for fake in fakes] == [10, 10, 10]


async def test_concurrent_requests_go_to_the_least_busy() -> None:
    replicas, fakes = replica_set(2, Clock())
    fakes[0].gate = anyio.Event()
    async with anyio.create_task_group() as group:
        group.start_soon(replicas.send, BATCH)  # r0 busy
        await anyio.wait_all_tasks_blocked()
        for _ in range(3):
            await replicas.send(BATCH)  # r1 idle each time
        assert [fake.sent for fake in fakes] == [1, 3]
        fakes[0].gate.set()


async def test_a_failing_replica_is_ejected_then_probed_back_in() -> None:
    clock = Clock()
    policy = EjectionPolicy(base_ejection_s=100.0, max_ejection_s=100.0)
    replicas, fakes = replica_set(2, clock, policy=policy)
    fakes[0].error = refused()
    for _ in range(20):
        try:
            await replicas.send(BATCH)
        except APIConnectionError:
            clock.now += policy.recent_failure_s  # each failure "long ago" by the next
    assert fakes[0].sent == policy.consecutive_failures
    states = [replica.state for replica in replicas.statistics()]
    assert states == ["ejected", "healthy"]
    clock.now += policy.base_ejection_s
    assert replicas.statistics()[0].state == "probing"
    fakes[0].error = None
    for _ in range(4):
        await replicas.send(BATCH)
    assert replicas.statistics()[0].state == "healthy"
    assert fakes[0].sent >= policy.consecutive_failures + 2


async def test_a_failed_probe_doubles_the_cool_down_up_to_the_cap() -> None:
    clock = Clock()
    policy = EjectionPolicy(consecutive_failures=1, base_ejection_s=1.0, max_ejection_s=3.0)
    replicas, fakes = replica_set(1, clock, policy=policy)
    fakes[0].error = ServerError("boom", status_code=503, url="http://r", model="m")
    cool_downs = []
    for _ in range(4):
        with pytest.raises(ServerError):
            await replicas.send(BATCH)
        started = clock.now
        while replicas.statistics()[0].state == "ejected":
            clock.now += 0.5
        cool_downs.append(clock.now - started)
    assert cool_downs == [1.0, 2.0, 3.0, 3.0]


async def test_a_4xx_is_an_answer_not_a_failure() -> None:
    clock = Clock()
    replicas, fakes = replica_set(1, clock)
    fakes[0].error = BadRequestError("bad", status_code=400, url="http://r", model="m")
    for _ in range(10):
        with pytest.raises(BadRequestError):
            await replicas.send(BATCH)
    assert replicas.statistics()[0].state == "healthy"
    assert replicas.statistics()[0].failures == 0


async def test_all_ejected_is_down_and_still_sends_in_panic() -> None:
    clock = Clock()
    replicas, fakes = replica_set(2, clock, policy=EjectionPolicy(consecutive_failures=1))
    for fake in fakes:
        fake.error = refused()
    for _ in range(2):
        with pytest.raises(APIConnectionError):
            await replicas.send(BATCH)
    assert replicas.all_ejected
    with pytest.raises(APIConnectionError):
        await replicas.send(BATCH)  # sent anyway: panic mode
    assert sum(fake.sent for fake in fakes) == 3


async def test_a_full_replica_set_waits_for_a_free_slot() -> None:
    replicas, fakes = replica_set(1, Clock(), adaptive=False)
    fakes[0].gate = anyio.Event()
    async with anyio.create_task_group() as group:
        for _ in range(9):  # one more than max_concurrency
            group.start_soon(replicas.send, BATCH)
        await anyio.wait_all_tasks_blocked()
        assert fakes[0].sent == 8
        assert replicas.statistics()[0].in_flight == 8
        fakes[0].gate.set()
    assert fakes[0].sent == 9


async def test_failures_sent_before_an_ejection_do_not_extend_it() -> None:
    clock = Clock()
    replicas, fakes = replica_set(1, clock, policy=EjectionPolicy(consecutive_failures=2))
    fakes[0].error = refused()
    gate = fakes[0].gate = anyio.Event()
    async with anyio.create_task_group() as group:
        for _ in range(6):  # all sent before any fails
            group.start_soon(_send_ignoring_failure, replicas)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    statistics = replicas.statistics()[0]
    assert (statistics.failures, statistics.ejections) == (6, 1)
    clock.now += EjectionPolicy().base_ejection_s
    assert replicas.statistics()[0].state == "probing"


async def test_waiting_for_down_returns_when_the_last_replica_is_ejected() -> None:
    clock = Clock()
    replicas, fakes = replica_set(2, clock, policy=EjectionPolicy(consecutive_failures=1))
    for fake in fakes:
        fake.error = refused()
    down = False

    async def wait() -> None:
        nonlocal down
        await replicas.wait_until_down()
        down = True

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await _send_ignoring_failure(replicas)
        await anyio.wait_all_tasks_blocked()
        assert not down
        await _send_ignoring_failure(replicas)
    assert down


async def _send_ignoring_failure(replicas: ReplicaSet) -> None:
    with contextlib.suppress(APIConnectionError):
        await replicas.send(BATCH)


def test_requests_about_to_end_do_not_count_as_busy() -> None:
    from rerank_async._fleet.replicas import _Replica
    from rerank_async._flow.adaptive import AdaptiveLimit

    replica = _Replica("http://r", FakeReplica(), AdaptiveLimit(8))
    replica.in_flight = 4
    replica.sent_at = [0.0, 0.0, 0.9, 1.0]
    assert replica.busy(1.0, None) == 4  # no latency known yet: every request counts
    # Before its own first answer, the other replicas' latency stands in for its own.
    assert replica.busy(1.0, 1.0) == 2
    replica.latency = 1.0
    # Ages 1.0, 1.0 (ending), 0.1, 0.0 (young): two busy.
    assert replica.busy(1.0, None) == 2
    assert replica.busy(1.0, 5.0) == 2  # its own latency, once known, comes first
    # Past twice the usual latency a request counts again: a replica that hangs must
    # not look idle.
    assert replica.busy(3.5, None) == 4
