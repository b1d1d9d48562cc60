"""A failed call keeps its scores; a retry of the failed ranges completes it (over loopback)."""

from __future__ import annotations

import itertools

import anyio
import pytest

from rerank_async import (
    AuthenticationError,
    Limits,
    PartialScores,
    RerankClient,
    RerankRequest,
    RetryPolicy,
    ServerError,
    SyncRerankClient,
)

from .hostile import HostileServer, crc_score

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
_tags = itertools.count()


def poison_route(server: HostileServer, failures: int) -> tuple[str, str]:
    """A fresh ``poison`` behaviour (its own failure counter) and its base_url."""
    behaviour = f"poison-{failures}-{next(_tags)}"
    return behaviour, server.base_url(behaviour)


def documents_with_poison(n: int, poisoned: int) -> list[str]:
    documents = [f"document number {index}" for index in range(n)]
    documents[poisoned] = f"POISON {poisoned}"
    return documents


@ENGINES
async def test_a_call_whose_one_batch_fails_keeps_every_other_score(
    server: HostileServer, engine: str
) -> None:
    # max_retries=2: three attempts fail for good; the fourth request would succeed.
    behaviour, base_url = poison_route(server, failures=3)
    documents = documents_with_poison(2000, poisoned=1234)
    expected = [crc_score(document) for document in documents]
    async with RerankClient(
        base_url=base_url, model="m", http_client=engine, batch_size=64, max_concurrency=8,
        max_retries=2, retry=RetryPolicy(initial_delay=0.0)
    ) as client:  # fmt: skip
        with anyio.fail_after(30), pytest.raises(ServerError) as caught:
            await client.rerank("q", documents)
        partial = caught.value.partial
        assert isinstance(partial, PartialScores)
        (failed,) = partial.failed_ranges
        start, stop = failed
        assert start <= 1234 < stop
        assert stop - start <= 64
        assert partial.documents_scored == 2000 - (stop - start)
        for index, score in enumerate(partial.scores):
            assert score == (None if start <= index < stop else expected[index])

        sent_before = len(server.documents[behaviour])
        result = await client.rerank("q", documents, resume=partial)
    assert result.scores == expected
    resent = [d for batch in server.documents[behaviour][sent_before:] for d in batch]
    assert sorted(resent) == sorted(documents[start:stop])  # only the failed range went again


async def test_retrying_a_failed_range_by_hand_completes_the_call(server: HostileServer) -> None:
    _, base_url = poison_route(server, failures=1)
    documents = documents_with_poison(300, poisoned=7)
    async with RerankClient(base_url=base_url, model="m", batch_size=50, max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            await client.rerank("q", documents)
        partial = caught.value.partial
        assert partial is not None
        for start, stop in partial.failed_ranges:
            scores = await client.score("q", documents[start:stop])
            partial = partial.filled(range(start, stop), scores)
    assert partial.complete() == [crc_score(document) for document in documents]


async def test_duplicates_get_their_score_or_none_together(server: HostileServer) -> None:
    _, base_url = poison_route(server, failures=10)
    documents = ["POISON x", "a", "POISON x", "b"] * 30
    async with RerankClient(
        base_url=base_url, model="m", batch_size=2, max_retries=0, limits=Limits(min_batch_size=1)
    ) as client:
        with pytest.raises(ServerError) as caught:
            await client.rerank("q", documents)
    partial = caught.value.partial
    assert partial is not None
    for document, score in zip(documents, partial.scores, strict=True):
        if score is not None:
            assert score == crc_score(document)
    scores_of_poison = {partial.scores[i] for i, d in enumerate(documents) if d == "POISON x"}
    assert len(scores_of_poison) == 1  # one unique document: every copy agrees


async def test_a_resume_must_match_the_documents(server: HostileServer) -> None:
    _, base_url = poison_route(server, failures=0)
    async with RerankClient(base_url=base_url, model="m") as client:
        with pytest.raises(ValueError, match="resume has 3 scores for 2 documents"):
            await client.rerank("q", ["a", "b"], resume=PartialScores.from_scores([None] * 3))
        with pytest.raises(TypeError, match="resume must be a PartialScores, not list"):
            await client.rerank("q", ["a", "b"], resume=[0.1, 0.2])  # type: ignore[arg-type]
        done = PartialScores.from_scores([0.25, 0.5])
        result = await client.rerank("q", ["a", "b"], resume=done)  # nothing left to send
    assert result.scores == [0.25, 0.5]
    assert result.usage.requests == 0


async def test_an_endpoint_wide_failure_stops_the_call_at_once(server: HostileServer) -> None:
    async with RerankClient(
        base_url=server.base_url("echo-401"), model="m", batch_size=10, max_concurrency=2,
        api_key="sk-test",
    ) as client:  # fmt: skip
        before = sum(1 for r in server.requests if r.path.startswith("/echo-401/"))
        with pytest.raises(AuthenticationError) as caught:
            await client.rerank("q", [f"d{i}" for i in range(200)])
    sent = sum(1 for r in server.requests if r.path.startswith("/echo-401/")) - before
    assert sent <= 2  # the others were cancelled, not sent to be refused 20 times
    assert caught.value.partial is not None
    assert caught.value.partial.documents_scored == 0


@ENGINES
async def test_rerank_many_retries_the_failed_range_before_giving_up(
    server: HostileServer, engine: str
) -> None:
    # Two failures with max_retries=1: the first pass fails for good, the resume succeeds.
    _, base_url = poison_route(server, failures=2)
    requests = [
        RerankRequest(query="q", documents=documents_with_poison(145, poisoned=100), id="lone")
    ]
    async with RerankClient(
        base_url=base_url,
        model="m",
        http_client=engine,
        max_retries=1,
        retry=RetryPolicy(initial_delay=0.0),
    ) as client:
        async with client.rerank_many(requests) as outcomes:
            results = [outcome async for outcome in outcomes]
    (outcome,) = results
    assert outcome.ok, outcome.error
    assert outcome.result is not None
    assert outcome.result.scores == [crc_score(d) for d in requests[0].documents]


async def test_rerank_many_reports_what_it_kept_when_the_resume_fails_too(
    server: HostileServer,
) -> None:
    _, base_url = poison_route(server, failures=100)
    documents = documents_with_poison(145, poisoned=3)
    async with RerankClient(base_url=base_url, model="m", max_retries=0) as client:
        async with client.rerank_many([("q", documents)]) as outcomes:
            (outcome,) = [outcome async for outcome in outcomes]
    assert isinstance(outcome.error, ServerError)
    partial = outcome.error.partial
    assert partial is not None
    assert 0 < partial.documents_scored < 145
    assert all(start <= 3 < stop for start, stop in partial.failed_ranges)


@ENGINES
async def test_a_lone_surrogate_is_named_by_index_before_any_request(
    server: HostileServer, engine: str
) -> None:
    before = len(server.requests)
    async with RerankClient(base_url=server.base_url("ok"), model="m", http_client=engine) as c:
        with pytest.raises(ValueError, match=r"documents\[2\] has a lone surrogate"):
            await c.rerank("q", ["fine", "naïve", "broken \ud800 text", "ok"])
        with pytest.raises(ValueError, match="query has a lone surrogate"):
            await c.rerank("q \udc80", ["fine"])
    assert len(server.requests) == before


def test_the_sync_client_keeps_and_resumes_the_work(server: HostileServer) -> None:
    _, base_url = poison_route(server, failures=1)
    documents = documents_with_poison(300, poisoned=7)
    with SyncRerankClient(base_url=base_url, model="m", batch_size=50, max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            client.rerank("q", documents)
        assert caught.value.partial is not None
        result = client.rerank("q", documents, resume=caught.value.partial)
    assert result.scores == [crc_score(document) for document in documents]
