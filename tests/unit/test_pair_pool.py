"""The pair pool: packed requests, scores back in place, failures and splits (no HTTP)."""

from __future__ import annotations

import random

import anyio
import pytest

from rerank_async._packed.pool import PackedRequest, PairPool, PooledCall, PoolScores
from tests.conftest import pointwise_score


class TooLargeError(Exception):
    pass


class FakeScorer:
    """Scores pairs pointwise after a random number of loop turns (completion scrambled)."""

    def __init__(
        self, *, seed: int = 0, fail_on: str | None = None, max_size: int | None = None
    ) -> None:
        self.rng = random.Random(seed)
        self.fail_on = fail_on
        self.max_size = max_size
        self.sizes: list[int] = []
        self.started: list[int] = []
        self.finished: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: PackedRequest) -> PoolScores:
        number = len(self.started)
        self.started.append(number)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            queries, documents = request.pairs()
            for _ in range(self.rng.randrange(0, 30)):
                await anyio.lowlevel.checkpoint()
            if self.max_size is not None and len(documents) > self.max_size:
                raise TooLargeError(len(documents))
            if self.fail_on is not None and self.fail_on in documents:
                raise RuntimeError(f"server failed on {self.fail_on}")
            self.sizes.append(len(documents))
            self.finished.append(number)
            scores = [pointwise_score(q, d) for q, d in zip(queries, documents, strict=True)]
            return PoolScores(scores, input_tokens=10 * len(documents))
        finally:
            self.in_flight -= 1


def split_at(max_size: int | None):  # type: ignore[no-untyped-def]
    def split_size(error: Exception, size: int) -> int | None:
        return max_size if isinstance(error, TooLargeError) else None

    return split_size


def never(error: Exception) -> bool:
    """No failure is split by query: each request's failure fails every call it carried."""
    return False


def corpus(n_calls: int, per_call: int) -> list[tuple[str, list[str]]]:
    return [(f"query {q}", [f"q{q} doc {i}" for i in range(per_call)]) for q in range(n_calls)]


async def run_calls(
    pool: PairPool, calls: list[tuple[str, list[str]]], *, admitted: int = 1000
) -> list[PooledCall | Exception]:
    """Every call in its own task, at most ``admitted`` at once, like rerank_many."""
    out: list[PooledCall | Exception] = [Exception("not run")] * len(calls)
    gate = anyio.Semaphore(admitted)

    async def one(index: int, query: str, documents: list[str]) -> None:
        async with gate:
            call = PooledCall(query, documents)
            try:
                await pool.score(call)
                out[index] = call
            except Exception as error:
                out[index] = error

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pool.run)
            async with anyio.create_task_group() as callers:
                for index, (query, documents) in enumerate(calls):
                    callers.start_soon(one, index, query, documents)
                    await anyio.lowlevel.checkpoint()
            task_group.cancel_scope.cancel()
    return out


def assert_scored(outcome: PooledCall | Exception, query: str, documents: list[str]) -> None:
    assert isinstance(outcome, PooledCall), outcome
    assert outcome.slots.complete() == [pointwise_score(query, d) for d in documents]


@pytest.mark.parametrize("seed", range(5))
async def test_every_score_lands_in_its_place_with_scrambled_completion(seed: int) -> None:
    scorer = FakeScorer(seed=seed)
    pool = PairPool(
        batch_size=32, max_in_flight=8, send=scorer, split_size=split_at(None), query_specific=never
    )
    calls = corpus(60, 100)
    outcomes = await run_calls(pool, calls, admitted=32)
    for outcome, (query, documents) in zip(outcomes, calls, strict=True):
        assert_scored(outcome, query, documents)
    assert scorer.finished != sorted(scorer.finished)  # completion really was out of order
    assert scorer.max_in_flight <= 8
    # Packed: 6,000 pairs need 188 requests of 32; per-query batching would send 240.
    assert len(scorer.sizes) < 200
    assert pool.requests_sent == len(scorer.sizes)


async def test_requests_are_full_while_work_is_queued() -> None:
    scorer = FakeScorer(seed=1)
    pool = PairPool(
        batch_size=32, max_in_flight=4, send=scorer, split_size=split_at(None), query_specific=never
    )
    await run_calls(pool, corpus(200, 100), admitted=32)
    assert len(scorer.sizes) <= 640  # 625 full requests, and a few short ones at the edges
    assert sum(scorer.sizes) == 20_000


async def test_a_failed_request_fails_only_the_calls_it_carried() -> None:
    scorer = FakeScorer(seed=2, fail_on="q7 doc 5")
    pool = PairPool(
        batch_size=16, max_in_flight=4, send=scorer, split_size=split_at(None), query_specific=never
    )
    calls = corpus(20, 10)
    outcomes = await run_calls(pool, calls)
    failed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Exception)]
    assert 7 in failed
    assert len(failed) <= 3  # a request of 16 spans at most three calls of 10
    assert all(str(outcomes[i]) == "server failed on q7 doc 5" for i in failed)
    for index, (query, documents) in enumerate(calls):
        if index not in failed:
            assert_scored(outcomes[index], query, documents)


async def test_too_large_requests_are_split_and_later_ones_packed_smaller() -> None:
    scorer = FakeScorer(seed=3, max_size=10)
    pool = PairPool(
        batch_size=32, max_in_flight=4, send=scorer, split_size=split_at(10), query_specific=never
    )
    calls = corpus(12, 25)
    outcomes = await run_calls(pool, calls)
    for outcome, (query, documents) in zip(outcomes, calls, strict=True):
        assert_scored(outcome, query, documents)
    assert max(scorer.sizes) <= 10
    assert sum(scorer.sizes) == 300


async def test_usage_counts_every_request_that_carried_a_call() -> None:
    scorer = FakeScorer(seed=4)
    pool = PairPool(
        batch_size=8, max_in_flight=1, send=scorer, split_size=split_at(None), query_specific=never
    )
    outcomes = await run_calls(pool, [("a", ["x"] * 6), ("b", ["y"] * 6)])
    first, second = outcomes
    assert isinstance(first, PooledCall)
    assert isinstance(second, PooledCall)
    assert (first.requests, second.requests) == (1, 2)  # [a*6 + b*2], [b*4]
    assert (first.batches, second.batches) == (1, 2)
    assert first.input_tokens == 60
    assert second.input_tokens == 20 + 40


async def test_a_call_without_documents_returns_at_once() -> None:
    scorer = FakeScorer()
    pool = PairPool(
        batch_size=8, max_in_flight=1, send=scorer, split_size=split_at(None), query_specific=never
    )
    call = PooledCall("q", [])
    await pool.score(call)
    assert scorer.sizes == []


async def test_a_cancelled_call_leaves_the_others_scored() -> None:
    scorer = FakeScorer(seed=5)
    pool = PairPool(
        batch_size=8, max_in_flight=2, send=scorer, split_size=split_at(None), query_specific=never
    )
    keep = PooledCall("keep", [f"k{i}" for i in range(20)])
    drop = PooledCall("drop", [f"d{i}" for i in range(20)])
    scopes: list[anyio.CancelScope] = []

    async def dropped_call() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await pool.score(drop)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(pool.run)
            async with anyio.create_task_group() as callers:
                callers.start_soon(dropped_call)
                callers.start_soon(pool.score, keep)
                await anyio.lowlevel.checkpoint()
                scopes[0].cancel()
            task_group.cancel_scope.cancel()
    assert keep.slots.complete() == [pointwise_score("keep", f"k{i}") for i in range(20)]
    assert not drop.finished
