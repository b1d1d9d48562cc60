"""RerankClient.rerank against mocked HTTP: batching, merge, dedupe, results, usage."""

from __future__ import annotations

import json

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rerank_async import BadRequestError, DeepInfraProvider, Limits, RerankClient
from tests.conftest import (
    MODEL,
    URL,
    CompletionGate,
    FakeReranker,
    make_client,
    pointwise_score,
    scored_response,
)

QUERY = "What is the capital of France?"


def expected_scores(documents: list[str], query: str = QUERY) -> list[float]:
    return [pointwise_score(query, d) for d in documents]


async def test_scores_come_back_in_input_order(fake: FakeReranker, client: RerankClient) -> None:
    documents = [f"document {i}" for i in range(10)]
    result = await client.rerank(QUERY, documents)
    assert result.scores == expected_scores(documents)
    assert result.model == MODEL
    assert fake.batch_sizes == [4, 3, 3]  # 10 at batch_size 4: balanced
    assert fake.bodies[0] == {"query": QUERY, "documents": documents[:4]}


async def test_merge_survives_reverse_completion_order(mock_api: respx.MockRouter) -> None:
    # The first batch answers last: a merge that trusted completion order would misplace scores.
    gate = CompletionGate(order=list(range(9, -1, -1)))
    fake = FakeReranker()

    async def handler(request: httpx.Request) -> httpx.Response:
        batch = int(json.loads(request.content)["documents"][0].split()[1]) // 10
        await gate.turn(batch)
        try:
            return await fake(request)
        finally:
            gate.finished(batch)

    mock_api.post(URL).mock(side_effect=handler)
    documents = [f"doc {i}" for i in range(100)]
    async with make_client(batch_size=10, max_concurrency=10) as client:
        with anyio.fail_after(5):
            result = await client.rerank(QUERY, documents)
    assert gate.completed == list(range(9, -1, -1))  # really answered in reverse
    assert result.scores == expected_scores(documents)


async def test_results_are_ranked_best_first_with_stable_ties(mock_api: respx.MockRouter) -> None:
    scores = [0.2, 0.9, 0.5, 0.9]
    mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": scores}))
    documents = ["a", "b", "c", "d"]
    async with make_client(batch_size=4) as client:
        result = await client.rerank(QUERY, documents)
        top = await client.rerank(QUERY, documents, top_k=2)
    assert [(r.index, r.score, r.document) for r in result.results] == [
        (1, 0.9, "b"), (3, 0.9, "d"), (2, 0.5, "c"), (0, 0.2, "a"),
    ]  # fmt: skip
    assert [r.index for r in top.results] == [1, 3]
    assert top.scores == scores  # top_k cuts the ranking, never the scores


async def test_score_shortcut(fake: FakeReranker, client: RerankClient) -> None:
    documents = ["x", "y"]
    assert await client.score(QUERY, documents) == expected_scores(documents)


async def test_usage_counts_requests_batches_and_tokens(
    fake: FakeReranker, client: RerankClient
) -> None:
    result = await client.rerank(QUERY, [f"d{i}" for i in range(9)])
    assert result.usage.documents == 9
    assert result.usage.unique_documents == 9
    assert result.usage.batches == 3
    assert result.usage.requests == 3
    assert result.usage.retries == 0
    assert result.usage.input_tokens == 27


async def test_usage_input_tokens_none_when_not_reported(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.1]}))
    async with make_client() as client:
        result = await client.rerank(QUERY, ["a"])
    assert result.usage.input_tokens is None


async def test_identical_documents_are_sent_once(fake: FakeReranker, client: RerankClient) -> None:
    documents = ["a", "b", "a", "c", "b", "a"]
    result = await client.rerank(QUERY, documents)
    sent = [d for body in fake.bodies for d in body["documents"]]
    assert sorted(sent) == ["a", "b", "c"]
    assert result.scores == expected_scores(documents)
    assert result.usage.unique_documents == 3
    assert [r.index for r in result.results] == sorted(
        range(6), key=lambda i: (-result.scores[i], i)
    )


async def test_dedupe_can_be_disabled(fake: FakeReranker) -> None:
    async with make_client(batch_size=10, limits=Limits(dedupe=False)) as client:
        await client.rerank(QUERY, ["a", "a", "a"])
    assert fake.bodies[0]["documents"] == ["a", "a", "a"]


async def test_empty_documents_send_nothing(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL)
    async with make_client() as client:
        result = await client.rerank(QUERY, [])
    assert result.scores == []
    assert result.results == []
    assert not route.called


async def test_small_call_spreads_over_idle_slots(fake: FakeReranker) -> None:
    # 100 documents fit in 2 batches of 64, but 8 idle slots finish it in one round trip.
    async with make_client(
        batch_size=64, max_concurrency=8, limits=Limits(min_batch_size=8)
    ) as client:
        await client.rerank(QUERY, [f"d{i}" for i in range(100)])
    assert fake.batch_sizes == [13, 13, 13, 13, 12, 12, 12, 12]


async def test_a_call_that_fits_one_request_is_not_spread(fake: FakeReranker) -> None:
    # One request is already one round; spreading it would only multiply the requests.
    async with make_client(
        batch_size=64, max_concurrency=8, limits=Limits(min_batch_size=8)
    ) as client:
        await client.rerank(QUERY, [f"d{i}" for i in range(40)])
    assert fake.batch_sizes == [40]


async def test_rerank_many_plans_for_throughput_not_spreading(fake: FakeReranker) -> None:
    async with make_client(
        batch_size=64, max_concurrency=8, limits=Limits(min_batch_size=8)
    ) as client:
        async with client.rerank_many([(QUERY, [f"d{i}" for i in range(100)])]) as outcomes:
            async for outcome in outcomes:
                assert outcome.ok
    assert fake.batch_sizes == [50, 50]


async def test_concurrent_calls_do_not_over_split(mock_api: respx.MockRouter) -> None:
    # While one call occupies every slot, the next one is planned in full batches.
    release = anyio.Event()
    fake = FakeReranker()

    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()  # the first call's batches hold their slots until b is planned
        return await fake(request)

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(
        batch_size=50, max_concurrency=4, limits=Limits(min_batch_size=5)
    ) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.rerank, QUERY, [f"a{i}" for i in range(200)])
            await anyio.lowlevel.checkpoint()
            tg.start_soon(client.rerank, QUERY, [f"b{i}" for i in range(40)])
            with anyio.fail_after(5):
                while client.statistics().outstanding_batches < 5:  # 4 of a, 1 of b
                    await anyio.lowlevel.checkpoint()
            release.set()
    sizes_b = [len(b["documents"]) for b in fake.bodies if b["documents"][0].startswith("b")]
    assert sizes_b == [40]


async def test_queries_form_for_qwen3_rerankers(mock_api: respx.MockRouter) -> None:
    model = "Qwen/Qwen3-Reranker-4B"
    fake = FakeReranker()
    mock_api.post(f"http://reranker.test/v1/inference/{model}").mock(side_effect=fake)
    async with make_client(model=model) as client:
        scores = await client.score(QUERY, ["a", "b"])
    assert fake.bodies[0] == {"queries": [QUERY, QUERY], "documents": ["a", "b"]}
    assert scores == expected_scores(["a", "b"])


@pytest.mark.parametrize(
    ("provider", "model", "body"),
    [
        (DeepInfraProvider(body_form="queries", queries_layout="single"), MODEL,
         {"queries": [QUERY], "documents": ["a", "b"]}),
        (DeepInfraProvider(body_form="query"), "nvidia/llama-nemotron-rerank-1b",
         {"query": QUERY, "documents": ["a", "b"]}),
        (DeepInfraProvider(), "nvidia/llama-nemotron-rerank-1b",
         {"queries": [QUERY, QUERY], "documents": ["a", "b"]}),
    ],
)  # fmt: skip
async def test_body_form_override(
    mock_api: respx.MockRouter, provider: DeepInfraProvider, model: str, body: dict[str, object]
) -> None:
    fake = FakeReranker()
    mock_api.post(f"http://reranker.test/v1/inference/{model}").mock(side_effect=fake)
    async with make_client(model=model, provider=provider) as client:
        await client.score(QUERY, ["a", "b"])
    assert fake.bodies == [body]


async def test_request_headers(fake: FakeReranker) -> None:
    async with make_client(api_key="sk-secret-123") as client:
        await client.score(QUERY, ["a"])
    headers = fake.headers[0]
    assert headers["authorization"] == "Bearer sk-secret-123"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("rerank-async/")


async def test_no_authorization_header_without_a_key(fake: FakeReranker) -> None:
    async with make_client() as client:
        await client.score(QUERY, ["a"])
    assert "authorization" not in fake.headers[0]


async def test_body_is_compact_utf8(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.5]}))
    async with make_client() as client:
        await client.score("café?", ["naïve"])
    assert route.calls[0].request.content == '{"query":"café?","documents":["naïve"]}'.encode()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    documents=st.lists(st.sampled_from(["a", "b", "c", ""]) | st.text(max_size=8), max_size=80),
    batch_size=st.integers(1, 20),
    max_concurrency=st.integers(1, 8),
    min_batch_size=st.integers(1, 20),
)
async def test_any_batching_gives_pointwise_scores(
    documents: list[str], batch_size: int, max_concurrency: int, min_batch_size: int
) -> None:
    fake = FakeReranker()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(URL).mock(side_effect=fake)
        async with make_client(
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            limits=Limits(min_batch_size=min(min_batch_size, batch_size)),
        ) as client:
            result = await client.rerank(QUERY, documents)
    assert result.scores == expected_scores(documents)
    assert all(size <= batch_size for size in fake.batch_sizes)
    assert sum(fake.batch_sizes) == len(set(documents))
    assert fake.max_in_flight <= max_concurrency


async def test_concurrency_bound_holds_across_500_concurrent_calls(
    mock_api: respx.MockRouter,
) -> None:
    # Answers that take a moment, so that requests overlap once a new client's first
    # burst (paced until the first answer) is over.
    fake = FakeReranker(delay=0.002)
    mock_api.post(URL).mock(side_effect=fake)
    results: dict[int, list[float]] = {}

    async with make_client(batch_size=8, max_concurrency=16) as client:

        async def one(i: int) -> None:
            documents = [f"call {i} doc {j}" for j in range(1 + i % 20)]
            results[i] = await client.score(QUERY, documents)

        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(one, i)
    assert fake.max_in_flight == 16  # reached, never exceeded
    for i, scores in results.items():
        assert scores == expected_scores([f"call {i} doc {j}" for j in range(1 + i % 20)])
    assert len(results) == 500


async def test_connection_pool_matches_concurrency() -> None:
    async with make_client(max_concurrency=7) as client:
        pool = client._fleet.transport.engine.http_client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 7


async def test_caller_http_client_is_used_and_left_open(fake: FakeReranker) -> None:
    async with httpx.AsyncClient() as http_client:
        async with make_client(http_client=http_client) as client:
            await client.score(QUERY, ["a"])
        assert not http_client.is_closed
    assert fake.calls == 1


async def test_big_call_body_shapes(fake: FakeReranker) -> None:
    documents = [f"passage number {i}" for i in range(1000)]
    async with make_client(batch_size=32, max_concurrency=8) as client:
        result = await client.rerank(QUERY, documents, top_k=10)
    assert result.scores == expected_scores(documents)
    assert len(result.results) == 10
    assert max(fake.batch_sizes) - min(fake.batch_sizes) <= 1
    assert len(fake.batch_sizes) == 32
    sent = [d for body in fake.bodies for d in body["documents"]]
    assert sorted(sent) == sorted(documents)
    assert (
        json.loads(json.dumps(result.model_dump()))["results"][0]["index"]
        == result.results[0].index
    )


async def test_custom_transport_with_scrambled_completion_order() -> None:
    # A caller's own httpx client and transport: the batches finish in a shuffled order.
    finish_order = [5, 2, 7, 0, 3, 6, 1, 4]
    gate = CompletionGate(order=finish_order)

    async def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        batch = int(body["documents"][0].split()[1]) // 4
        await gate.turn(batch)
        try:
            return scored_response(body)
        finally:
            gate.finished(batch)

    documents = [f"doc {i}" for i in range(32)]
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http_client:
        async with make_client(
            http_client=http_client,
            batch_size=4,
            max_concurrency=8,
            limits=Limits(min_batch_size=4),
        ) as client:
            with anyio.fail_after(5):
                result = await client.rerank(QUERY, documents)
    assert gate.completed == finish_order  # really scrambled, not in batch order
    assert result.scores == expected_scores(documents)


async def test_split_false_sends_one_request(fake: FakeReranker) -> None:
    documents = [f"d{i}" for i in range(50)]
    async with make_client(batch_size=64, max_concurrency=8, limits=Limits(split=False)) as client:
        result = await client.rerank(QUERY, documents)
        with pytest.raises(ValueError, match="65 documents exceed batch_size=64"):
            await client.rerank(QUERY, [f"x{i}" for i in range(65)])
    assert fake.batch_sizes == [50]
    assert result.scores == expected_scores(documents)


async def test_split_false_never_splits_on_413(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(413, json={"error": "too big"}))
    async with make_client(limits=Limits(split=False)) as client:
        with pytest.raises(BadRequestError):
            await client.rerank(QUERY, ["a", "b", "c"])
    assert route.call_count == 1


class BudgetedProvider(DeepInfraProvider):
    default_batch_size = 10
    default_max_concurrency = 3

    def max_tokens_per_request(self, model: str) -> int | None:
        return 12

    def estimate_tokens(self, text: str) -> int:
        return len(text.split())


async def test_provider_defaults_and_token_budget(fake: FakeReranker) -> None:
    documents = ["one", "two words", "three more words", "x", "y", "z"]
    async with make_client(provider=BudgetedProvider()) as client:
        assert client.options.batch_size == 10
        assert client.options.max_concurrency == 3
        result = await client.rerank("q q", documents)  # each document costs 2 + its words
    assert result.scores == expected_scores(documents, "q q")
    for body in fake.bodies:
        assert sum(2 + len(d.split()) for d in body["documents"]) <= 12
