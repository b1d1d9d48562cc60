"""Type-checked, never run: the public API as users write it must pass ``mypy --strict``."""

from __future__ import annotations

import dataclasses

import httpx

from rerank_async import (
    APIStatusError,
    ClientClosedError,
    ClientStatistics,
    DeepInfraProvider,
    Limits,
    LongDocuments,
    PartialScores,
    RankedDocument,
    ReplicaStatistics,
    RerankClient,
    RerankError,
    RerankRequest,
    RerankResult,
    ResponseTimeoutError,
    ResponseTooLargeError,
    RetryBudgetExhaustedError,
    RetryPolicy,
    ScoreCache,
    Usage,
)


async def typical_use(documents: list[str]) -> list[str]:
    async with RerankClient(
        model="cross-encoder/ms-marco-MiniLM-L-12-v2",
        api_key=None,
        base_url="http://127.0.0.1:8080/v1/inference",
        provider=DeepInfraProvider(body_form="query"),
        batch_size=32,
        max_concurrency=8,
        max_retries=0,
        timeout=httpx.Timeout(10.0, connect=2.0),
        total_timeout=30.0,
    ) as client:
        result: RerankResult = await client.rerank("query", documents, top_k=3)
        scores: list[float] = await client.score("query", tuple(documents))
        best: RankedDocument = result.results[0]
        usage: Usage = result.usage
        retries: int = usage.retries
        tokens: int | None = usage.input_tokens
        assert len(scores) == len(documents)
        assert retries >= 0
        assert tokens != -1
        return [best.document]


async def error_handling(client: RerankClient) -> int | None:
    try:
        await client.rerank("q", ["a"])
    except APIStatusError as error:
        code: int = error.status_code
        request_id: str | None = error.request_id
        return code if request_id else None
    except RerankError as error:
        span: tuple[int, int] | None = error.document_range
        return span[0] if span else None
    return None


async def keeping_the_work(client: RerankClient, documents: list[str]) -> list[float]:
    try:
        return (await client.rerank("q", documents)).scores
    except ResponseTooLargeError as error:
        limit: int = error.limit
        raise RuntimeError(limit) from error
    except ResponseTimeoutError as error:
        allowed: float = error.timeout
        raise RuntimeError(allowed) from error
    except RerankError as error:
        partial: PartialScores | None = error.partial
        if partial is None:
            raise
        kept: tuple[float | None, ...] = partial.scores
        gaps: tuple[tuple[int, int], ...] = partial.failed_ranges
        assert len(kept) >= len(gaps)
        result = await client.rerank("q", documents, resume=partial)
        return result.scores


async def public_test_seams(client: RerankClient) -> int:
    async def no_wait(seconds: float) -> None:
        del seconds

    client.set_retry_policy(dataclasses.replace(client.options.retry, sleep=no_wait))
    client.set_retry_policy(RetryPolicy(initial_delay=0.5))
    stats: ClientStatistics = client.statistics()
    in_flight: int = stats.in_flight
    return in_flight + stats.waiting + stats.outstanding_batches + stats.batch_limit


async def living_within_limits() -> float | None:
    async with RerankClient(
        hedge_after="auto",
        limits=Limits(
            adaptive_concurrency=False, max_requests_per_minute=600, max_tokens_per_minute=100_000.0
        ),
        retry=RetryPolicy(budget_ratio=None, budget_per_second=1.0),
    ) as client:
        stats = client.statistics()
        limit: int = stats.concurrency_limit
        used: int | None = stats.requests_this_minute
        del limit, used
        try:
            await client.score("q", ["a"])
        except RetryBudgetExhaustedError as error:
            last: RerankError = error.last_error
            del last
        return stats.retry_budget_left


async def instructions_and_long_documents(documents: list[str]) -> list[float]:
    async with RerankClient(
        provider="dashscope",
        instruction="Given a web search query, retrieve relevant passages.",
        long_documents=LongDocuments(max_tokens=512, mode="chunk", overlap_tokens=64),
    ) as client:
        await client.rerank("q", documents, instruction="Prefer recent documents.")
        await client.rerank("q", documents, instruction=None)
        request = RerankRequest(query="q", documents=documents, instruction="Be strict.")
        async with client.rerank_many([request]) as outcomes:
            async for outcome in outcomes:
                del outcome
        return await client.score("q", documents, instruction="x")


async def a_fleet(documents: list[str]) -> tuple[str, str | None, int]:
    backup = RerankClient(provider="tei", base_url="http://127.0.0.1:8080")
    async with (
        backup,
        RerankClient(
            base_url=["http://10.0.0.1:8080", "http://10.0.0.2:8080"],
            fallback=[backup],
            cache=ScoreCache(path="scores.sqlite", max_entries=10_000),
        ) as client,
    ):
        result = await client.rerank("q", documents)
        replicas: tuple[ReplicaStatistics, ...] = client.statistics().replicas
        states = [replica.state for replica in replicas]
        del states
        return result.model, result.provider, result.usage.cache_hits


async def closing_and_the_environment() -> list[float] | None:
    client = RerankClient(trust_env=False)
    trusted: bool = client.options.trust_env
    del trusted
    try:
        return await client.score("q", ["a"])
    except ClientClosedError as error:
        closed: RerankError = error
        also: RuntimeError = error
        del closed, also
        return None
    finally:
        await client.aclose()
