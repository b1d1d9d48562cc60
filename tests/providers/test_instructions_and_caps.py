"""Instructions in each provider's own field, the cap tables, and rate-limit headers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import respx

from rerank_async import RateLimitError, RerankClient, RerankRequest
from rerank_async.providers import ProviderCaps, VLLMProvider
from tests.conftest import make_client, pointwise_score
from tests.providers.specs import BY_NAME, QUERY, FakeService, Spec

INSTRUCTION = "Prefer official government sources over blogs."


def client_for(spec: Spec, **options: Any) -> RerankClient:
    options.setdefault("provider", spec.make())
    options.setdefault("model", spec.model)
    return make_client(base_url=spec.base_url, **options)


# -- instructions ----------------------------------------------------------------------------

FIELDS = {
    "contextual": "instruction",
    "siliconflow": "instruction",
    "sglang": "instruct",
    "dashscope": "instruct",
    "fireworks": "task",
}


@pytest.mark.parametrize(("name", "field"), FIELDS.items())
async def test_instruction_lands_in_the_providers_own_field(
    mock_api: respx.MockRouter, name: str, field: str
) -> None:
    spec = BY_NAME[name]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    documents = ["Paris is the capital.", "A blog about Paris.", "Lyon."]
    async with client_for(spec, api_key="sk-test-123") as client:
        scores = await client.score(QUERY, documents, instruction=INSTRUCTION)
        plain = await client.score(QUERY, documents)
    assert scores == plain == [pointwise_score(QUERY, d) for d in documents]
    assert fake.bodies[0][field] == INSTRUCTION
    assert fake.bodies[0] == {**fake.bodies[1], field: INSTRUCTION}
    assert field not in fake.bodies[1]


async def test_client_default_instruction_and_per_call_override(
    mock_api: respx.MockRouter,
) -> None:
    spec = BY_NAME["contextual"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    async with client_for(spec, instruction="default one") as client:
        assert client.options.instruction == "default one"
        await client.rerank(QUERY, ["a"])
        await client.rerank(QUERY, ["a"], instruction="this call")
        await client.rerank(QUERY, ["a"], instruction=None)
    assert [body.get("instruction") for body in fake.bodies] == ["default one", "this call", None]


async def test_rerank_many_sends_each_requests_instruction(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["dashscope"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    requests = [
        RerankRequest(query=QUERY, documents=["a", "b"], id="plain"),
        RerankRequest(query=QUERY, documents=["c"], id="told", instruction="be strict"),
    ]
    async with client_for(spec, instruction="client default") as client:
        async with client.rerank_many(requests) as outcomes:
            results = {outcome.id: outcome async for outcome in outcomes}
    assert all(outcome.ok for outcome in results.values())
    sent = {tuple(body["documents"]): body.get("instruct") for body in fake.bodies}
    assert sent == {("a", "b"): "client default", ("c",): "be strict"}


async def test_voyage_rerank_2_5_puts_the_instruction_in_the_query(
    mock_api: respx.MockRouter,
) -> None:
    spec = BY_NAME["voyage"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    async with client_for(spec) as client:
        await client.score(QUERY, ["a"], instruction=INSTRUCTION)
    assert fake.bodies[0]["query"] == f"{INSTRUCTION}\n{QUERY}"
    assert "instruction" not in fake.bodies[0]
    with pytest.raises(ValueError, match="no instruction field for model 'rerank-2'"):
        client_for(spec, model="rerank-2", instruction=INSTRUCTION)


@pytest.mark.parametrize(
    "name",
    ["cohere", "azure", "jina", "tei", "openrouter", "llamacpp", "xinference", "zeroentropy",
     "mixedbread", "pinecone", "nvidia", "together", "infinity", "vllm"],
)  # fmt: skip
async def test_no_instruction_field_raises_before_any_request(
    mock_api: respx.MockRouter, name: str
) -> None:
    spec = BY_NAME[name]
    route = mock_api.post(spec.url).mock(side_effect=FakeService(spec))
    with pytest.raises(ValueError, match=f"provider {spec.make().name!r} has no instruction"):
        client_for(spec, instruction=INSTRUCTION)
    async with client_for(spec) as client:
        with pytest.raises(ValueError, match="has no instruction field"):
            await client.rerank(QUERY, ["a"], instruction=INSTRUCTION)
        with pytest.raises(ValueError, match="has no instruction field"):
            await client.score(QUERY, ["a"], instruction=INSTRUCTION)
    assert not route.called


@pytest.mark.parametrize("bad", ["", "   "])
def test_a_blank_instruction_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="instruction must not be empty"):
        client_for(BY_NAME["contextual"], instruction=bad)


class InstructedScore(VLLMProvider):
    """/score with pairs packed across calls, and one instruction field per request."""

    instruction_field = "instruction"

    def __init__(self) -> None:
        super().__init__(endpoint="score")

    def encode_instructed(
        self, model: str, query: str, documents: Sequence[str], instruction: str
    ) -> bytes:
        body = json.loads(self.encode_request(model, query, documents))
        return json.dumps({**body, "instruction": instruction}).encode()


async def test_instructions_never_share_a_packed_request(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["vllm-score"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    requests = [
        RerankRequest(query=f"q{i}", documents=[f"d{i}-{j}" for j in range(3)], instruction=text)
        for i, text in enumerate(["first", "second", None, None])
    ]
    async with client_for(spec, provider=InstructedScore(), batch_size=64) as client:
        async with client.rerank_many(requests) as outcomes:
            done = [outcome async for outcome in outcomes]
    assert all(outcome.ok for outcome in done)
    for body in fake.bodies:
        queries = body["text_1"] if isinstance(body["text_1"], list) else [body["text_1"]]
        if "instruction" in body:
            # An instructed request carries its own call's pairs only.
            assert set(queries) == {"q0" if body["instruction"] == "first" else "q1"}
    instructed = sorted(body["instruction"] for body in fake.bodies if "instruction" in body)
    assert instructed == ["first", "second"]
    # The two calls without one still share a packed request.
    packed = [body for body in fake.bodies if "instruction" not in body]
    assert len(packed) == 1
    assert set(packed[0]["text_1"]) == {"q2", "q3"}


# -- caps -----------------------------------------------------------------------------------


async def test_a_1200_document_dashscope_call_never_sends_over_500(
    mock_api: respx.MockRouter,
) -> None:
    spec = BY_NAME["dashscope"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    documents = [f"passage {i} about Paris" for i in range(1200)]
    async with client_for(spec, batch_size=1200) as client:
        assert client.options.batch_size == 500
        result = await client.rerank(QUERY, documents)
        assert client.batch_limit <= 500
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert max(fake.batch_sizes) <= 500
    assert sum(fake.batch_sizes) == 1200
    assert len(fake.bodies) >= 3


async def test_dashscope_token_budget_cuts_batches_of_long_documents(
    mock_api: respx.MockRouter,
) -> None:
    spec = BY_NAME["dashscope"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    # About 3,000 estimated tokens each: 40 per request would pass 120,000 tokens.
    documents = [f"{i} " + "word " * 2400 for i in range(60)]
    provider = spec.make()
    async with client_for(spec, batch_size=500) as client:
        await client.score(QUERY, documents)
    for body in fake.bodies:
        tokens = sum(
            provider.estimate_tokens(QUERY) + provider.estimate_tokens(d) for d in body["documents"]
        )
        assert tokens <= 120_000
    assert len(fake.bodies) >= 2


CAPS = {
    "dashscope": ProviderCaps(documents=500, tokens_per_request=120_000, tokens_per_document=4000),
    "contextual": ProviderCaps(tokens_per_request=400_000, tokens_per_document=8000),
    "zeroentropy": ProviderCaps(tokens_per_request=1_250_000),
    "bedrock": ProviderCaps(documents=1000),
    "vertex": ProviderCaps(documents=200),
    "sglang": ProviderCaps(),
    "llamacpp": ProviderCaps(),
}


@pytest.mark.parametrize(("name", "caps"), CAPS.items())
def test_cap_tables(name: str, caps: ProviderCaps) -> None:
    spec = BY_NAME[name]
    provider = spec.make()
    assert provider.caps(spec.model) == caps
    assert provider.max_tokens_per_request(spec.model) == caps.tokens_per_request
    if caps.documents is not None:
        assert provider.default_batch_size <= caps.documents
    assert provider.caps("semantic-ranker-512@latest").tokens_per_document == (
        512 if name == "vertex" else caps.tokens_per_document
    )


# -- rate-limit headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["openrouter", "fireworks", "dashscope", "siliconflow", "zeroentropy", "contextual"]
)
async def test_a_429_with_retry_after_or_spent_limit_headers(
    mock_api: respx.MockRouter, name: str
) -> None:
    spec = BY_NAME[name]
    headers = {
        "Retry-After": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "20s",
    }
    mock_api.post(spec.url).mock(
        return_value=httpx.Response(429, json={"error": {"message": "slow down"}}, headers=headers)
    )
    async with client_for(spec, max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.score(QUERY, ["a"])
    assert caught.value.retry_after == 3.0
    assert caught.value.limit_reset_s == pytest.approx(20.0)
    assert caught.value.server_message == "slow down"


@pytest.mark.parametrize(("name", "tokens"), [("siliconflow", 50), ("zeroentropy", 150)])
async def test_reported_tokens_reach_usage(
    mock_api: respx.MockRouter, name: str, tokens: int
) -> None:
    spec = BY_NAME[name]
    mock_api.post(spec.url).mock(side_effect=FakeService(spec))
    async with client_for(spec) as client:
        result = await client.rerank(QUERY, ["a", "b"])
    assert result.usage.input_tokens == tokens
