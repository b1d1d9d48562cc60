"""What sets each provider apart: options, URLs, split signals, sigmoid, token budgets, helpers."""

from __future__ import annotations

import json
import math
from types import ModuleType

import httpx
import pytest
import respx

import rerank_async.providers as providers
from rerank_async import BadRequestError, Limits, RerankClient
from rerank_async.providers import (
    CohereProvider,
    DeepInfraProvider,
    InfinityProvider,
    JinaProvider,
    MixedbreadProvider,
    NvidiaProvider,
    PineconeProvider,
    Provider,
    TEIProvider,
    TogetherProvider,
    VLLMProvider,
    VoyageProvider,
    resolve_provider,
)
from rerank_async.providers._indexed import document_limit_in, scores_in_input_order
from rerank_async.providers._wire import join_url
from rerank_async.providers._wire import logistic as sigmoid
from tests.conftest import make_client, pointwise_score
from tests.providers.specs import BY_NAME, QUERY, FakeService, Spec, json_response

NEW_NAMES = (
    *("azure", "bedrock", "contextual", "dashscope", "fireworks", "llamacpp"),
    *("openrouter", "sglang", "siliconflow", "vertex", "xinference", "zeroentropy"),
)

# -- registry and public names ---------------------------------------------------------------

NAMES = {
    **{name: type(BY_NAME[name].make()) for name in NEW_NAMES},
    "cohere": CohereProvider,
    "deepinfra": DeepInfraProvider,
    "infinity": InfinityProvider,
    "jina": JinaProvider,
    "mixedbread": MixedbreadProvider,
    "nvidia": NvidiaProvider,
    "pinecone": PineconeProvider,
    "tei": TEIProvider,
    "together": TogetherProvider,
    "vllm": VLLMProvider,
    "voyage": VoyageProvider,
}


@pytest.mark.parametrize(("name", "provider_class"), NAMES.items())
def test_resolve_provider_by_name(name: str, provider_class: type[Provider]) -> None:
    resolved = resolve_provider(name)
    assert type(resolved) is provider_class
    assert resolved.name == name
    assert type(resolve_provider(name.upper())) is provider_class
    # A base URL: Azure has no shared one, Bedrock and Vertex need a region or a project.
    client = RerankClient(provider=name, model="some-model", base_url="https://reranker.test")
    assert client.provider.name == name


def test_unknown_provider_lists_every_known_one() -> None:
    with pytest.raises(ValueError, match="unknown provider 'nosuch'; known providers: ") as caught:
        resolve_provider("nosuch")
    assert str(caught.value).endswith(", ".join(sorted(NAMES)))


def test_providers_all_is_sorted_and_complete() -> None:
    exported = providers.__all__

    def isort_style(name: str) -> tuple[int, str]:  # ruff's RUF022 order
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert exported == sorted(exported, key=isort_style)
    public = {
        name
        for name, value in vars(providers).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    } - {"annotations"}
    assert public == set(exported)
    assert set(NAMES) == set(providers._BY_NAME)


def test_every_provider_has_a_wire_spec() -> None:
    assert set(NAMES) - {"deepinfra"} == {name.split("-")[0] for name in BY_NAME}


# -- URLs and bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "base_url", "model", "url"),
    [
        (CohereProvider(), "https://api.cohere.com/", "m", "https://api.cohere.com/v2/rerank"),
        (CohereProvider(api_version="v1"), "https://proxy.test/cohere", "m",
         "https://proxy.test/cohere/v1/rerank"),
        (VLLMProvider(endpoint="score"), "http://gpu:8000", "m", "http://gpu:8000/score"),
        (NvidiaProvider(), "http://nim:8000", "nvidia/llama-3.2-nv-rerankqa-1b-v2",
         "http://nim:8000/v1/ranking"),
        (NvidiaProvider(), "https://ai.api.nvidia.com", "nvidia/llama-3.2-nv-rerankqa-1b-v2",
         "https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2/reranking"),
        (NvidiaProvider(endpoint="ranking"), "https://ai.api.nvidia.com", "nvidia/x",
         "https://ai.api.nvidia.com/v1/ranking"),
        (NvidiaProvider(endpoint="hosted"), "https://gateway.test", "nvidia/x-1.5",
         "https://gateway.test/v1/retrieval/nvidia/x-1_5/reranking"),
        (MixedbreadProvider(), "https://api.mixedbread.com", "m",
         "https://api.mixedbread.com/v1/reranking"),
        (TEIProvider(), "http://tei:80/", "ignored", "http://tei:80/rerank"),
    ],
)  # fmt: skip
def test_urls(provider: Provider, base_url: str, model: str, url: str) -> None:
    assert provider.url(base_url, model) == url


@pytest.mark.parametrize(
    ("provider", "extra"),
    [
        (CohereProvider(api_version="v1"), {"return_documents": False}),
        (CohereProvider(max_tokens_per_doc=512), {"max_tokens_per_doc": 512}),
        (InfinityProvider(raw_scores=True), {"return_documents": False, "raw_scores": True}),
    ],
)
def test_optional_body_fields(provider: Provider, extra: dict[str, object]) -> None:
    body = json.loads(provider.encode_request("m", "q", ["a"]))
    assert body == {"model": "m", "query": "q", "documents": ["a"], "top_n": 1, **extra}


@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        (TEIProvider(truncate=False, raw_scores=True),
         {"truncate": False, "raw_scores": True, "return_text": False}),
        (VoyageProvider(truncation=False), {"truncation": False, "return_documents": False}),
        (NvidiaProvider(truncate="NONE"), {"truncate": "NONE"}),
        (PineconeProvider(truncate="END"), {"parameters": {"truncate": "END"}}),
    ],
)  # fmt: skip
def test_option_fields_in_the_body(provider: Provider, fields: dict[str, object]) -> None:
    body = json.loads(provider.encode_request("m", "q", ["a", "b"]))
    assert fields.items() <= body.items()


def test_body_is_compact_utf8() -> None:
    body = CohereProvider().encode_request("m", "café?", ["naïve"])
    assert body == '{"model":"m","query":"café?","documents":["naïve"],"top_n":1}'.encode()


def test_pinecone_headers() -> None:
    assert PineconeProvider().auth_headers("pc-key") == {
        "X-Pinecone-API-Version": "2025-04",
        "Api-Key": "pc-key",
    }
    assert PineconeProvider(api_version="2025-10").auth_headers(None) == {
        "X-Pinecone-API-Version": "2025-10"
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CohereProvider(api_version="v3"), "api_version must be 'v1' or 'v2'"),  # type: ignore[arg-type]
        (lambda: CohereProvider(api_version="v1", max_tokens_per_doc=100), "max_tokens_per_doc"),
        (lambda: CohereProvider(max_tokens_per_doc=0), "max_tokens_per_doc must be >= 1"),
        (lambda: VLLMProvider(endpoint="embed"), "endpoint must be 'rerank' or 'score'"),  # type: ignore[arg-type]
        (lambda: NvidiaProvider(endpoint="x"), "endpoint must be"),  # type: ignore[arg-type]
        (lambda: NvidiaProvider(truncate="START"), "truncate must be"),  # type: ignore[arg-type]
        (lambda: PineconeProvider(api_version=" "), "api_version must be a non-empty string"),
        (lambda: PineconeProvider(truncate="START"), "truncate must be"),  # type: ignore[arg-type]
        (lambda: TEIProvider(sigmoid=True), "sigmoid=True needs raw_scores=True"),
        (lambda: InfinityProvider(sigmoid=True), "sigmoid=True needs raw_scores=True"),
    ],
)  # fmt: skip
def test_bad_options_name_the_argument(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=message):
        make()


def test_repr_shows_options() -> None:
    assert repr(TEIProvider(raw_scores=True, sigmoid=True)) == (
        "TEIProvider(truncate=True, raw_scores=True, sigmoid=True)"
    )
    assert repr(CohereProvider()) == "CohereProvider(api_version='v2', max_tokens_per_doc=None)"


# -- decoding details -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "content", "scores", "tokens", "request_id"),
    [
        (JinaProvider(), b'{"results":[{"index":1,"relevance_score":1},{"index":0,'
         b'"relevance_score":0}],"usage":{"total_tokens":9}}', [0.0, 1.0], 9, None),
        (TogetherProvider(), b'{"id":"t-1","results":[{"index":0,"relevance_score":0.5,'
         b'"document":null},{"index":1,"relevance_score":0.25}],"usage":{"prompt_tokens":7,'
         b'"total_tokens":8}}', [0.5, 0.25], 7, "t-1"),
        (VoyageProvider(), b'{"data":[{"index":1,"relevance_score":0.9},{"index":0,'
         b'"relevance_score":0.1}],"usage":{"total_tokens":12}}', [0.1, 0.9], 12, None),
        (VLLMProvider(), b'{"id":"rerank-7","results":[{"index":1,"document":{"text":"b"},'
         b'"relevance_score":0.75},{"index":0,"document":{"text":"a"},"relevance_score":0.5}],'
         b'"usage":{"total_tokens":5}}', [0.5, 0.75], 5, "rerank-7"),
        (CohereProvider(), b'{"id":"c-1","results":[{"index":1,"relevance_score":0.5},'
         b'{"index":0,"relevance_score":0.25}],"meta":{"billed_units":{"search_units":1}}}',
         [0.25, 0.5], None, "c-1"),
        (NvidiaProvider(), b'{"rankings":[{"index":1,"logit":3.5},{"index":0,"logit":-2}]}',
         [-2.0, 3.5], None, None),
    ],
)  # fmt: skip
def test_decoded_metadata(
    provider: Provider,
    content: bytes,
    scores: list[float],
    tokens: int | None,
    request_id: str | None,
) -> None:
    decoded = provider.decode_response(content, 2)
    assert decoded.scores == scores
    assert decoded.input_tokens == tokens
    assert decoded.request_id == request_id


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b'{"results":[]}', "body: Input should be a valid array"),
        (b'{"scores":[0.1]}', "body: Input should be a valid array"),
    ],
)
def test_tei_rejects_other_shapes(content: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        TEIProvider().decode_response(content, 1)


def test_missing_envelope_field_is_named() -> None:
    with pytest.raises(ValueError, match=r"^results: Field required"):
        JinaProvider().decode_response(b'{"data":[]}', 1)
    with pytest.raises(ValueError, match=r"^rankings: Field required"):
        NvidiaProvider().decode_response(b'{"results":[]}', 1)


# -- index mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "n", "expected"),
    [
        ([], 0, []),
        ([(0, 0.5)], 1, [0.5]),
        ([(2, 0.9), (0, 0.1), (1, 0.5)], 3, [0.1, 0.5, 0.9]),
        ([(1, -3.0), (0, 7.0)], 2, [7.0, -3.0]),
    ],
)
def test_scores_in_input_order(
    pairs: list[tuple[int, float]], n: int, expected: list[float]
) -> None:
    assert scores_in_input_order(pairs, n) == expected


@pytest.mark.parametrize(
    ("pairs", "n", "message"),
    [
        ([(0, 0.1)], 2, r"^results has 1 entries for a batch of 2 documents; missing indices 1$"),
        ([(0, 0.1), (0, 0.2)], 2,
         r"^results\[1\]\.index: 0 appears twice \(also at results\[0\]\)$"),
        ([(0, 0.1), (2, 0.2)], 2, r"^results\[1\]\.index: 2 is out of range for a batch of 2"),
        ([(-1, 0.1)], 1, r"^results\[0\]\.index: -1 is out of range"),
        ([(0, 0.1), (1, 0.1), (2, 0.1)], 2, r"out of range"),
        ([], 13, r"missing indices 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 3 more$"),
        ([(5, 0.1)], 0, r"out of range for a batch of 0"),
    ],
)  # fmt: skip
def test_scores_in_input_order_rejects(
    pairs: list[tuple[int, float]], n: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        scores_in_input_order(pairs, n)


def test_join_url() -> None:
    assert join_url("http://h/", "/rerank") == "http://h/rerank"
    assert join_url("http://h/api", "v1/rerank") == "http://h/api/v1/rerank"


# -- "batch too large" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        ("body.documents: List should have at most 2048 items after validation, not 2049", 2048),
        ("Request contains 101 documents; the model supports at most 100 documents", 100),
        ("invalid request: documents must not exceed 1000 items", 1000),
        ("the number of documents exceeds the maximum of 512", 512),
        ("You cannot rerank more than 1000 documents", 1000),
        ("Too many passages: limit is 512", 512),
        ("documents exceed maximum length of 512 tokens", None),
        ("query must be at most 2048 characters", None),
        ("model not found", None),
    ],
)
def test_document_limit_in(message: str, limit: int | None) -> None:
    assert document_limit_in(message) == limit


@pytest.mark.parametrize(
    ("provider", "status", "message", "too_large", "hint"),
    [
        (TEIProvider(), 422, "batch size 33 > maximum allowed batch size 32", True, 32),
        (TEIProvider(), 413, "Input validation error: `inputs` must have less than 512 tokens. "
         "Given: 600", False, None),
        (TEIProvider(), 413, "Payload Too Large", True, None),
        (InfinityProvider(), 422, "body.documents: List should have at most 2048 items after "
         "validation, not 2049", True, 2048),
        (PineconeProvider(), 400, "the model supports at most 100 documents", True, 100),
        (CohereProvider(), 400, "too many documents", True, None),
        (CohereProvider(), 400, "invalid model", False, None),
        (VoyageProvider(), 400, "The max allowed tokens per submitted batch is 600000. Your "
         "batch has 612000 tokens after truncation.", True, None),
        (VoyageProvider(), 401, "too many tokens", False, None),
        (MixedbreadProvider(), 413, "", True, None),
        (NvidiaProvider(), 401, "at most 100 documents", False, 100),
    ],
)  # fmt: skip
def test_batch_too_large_signals(
    provider: Provider, status: int, message: str, too_large: bool, hint: int | None
) -> None:
    assert provider.is_batch_too_large(status, message) is too_large
    assert provider.max_batch_size_hint(message) == hint


def _tei_422(n: int, limit: int) -> httpx.Response:
    return json_response(
        {"error": f"batch size {n} > maximum allowed batch size {limit}",
         "error_type": "Validation"},
        422,
    )  # fmt: skip


def _infinity_422(n: int, limit: int) -> httpx.Response:
    return json_response(
        {"detail": [{"type": "too_long", "loc": ["body", "documents"],
                     "msg": f"List should have at most {limit} items after validation, not {n}",
                     "input": ["..."], "ctx": {"field_type": "List", "max_length": limit,
                                               "actual_length": n}}]},
        422,
    )  # fmt: skip


def _pinecone_400(n: int, limit: int) -> httpx.Response:
    return json_response(
        {"error": {"code": "INVALID_ARGUMENT",
                   "message": f"Request contains {n} documents, but the model supports at most "
                              f"{limit} documents."},
         "status": 400},
        400,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "answer"),
    [(BY_NAME["tei"], _tei_422), (BY_NAME["infinity"], _infinity_422),
     (BY_NAME["pinecone"], _pinecone_400)],
    ids=str,
)  # fmt: skip
async def test_stated_limit_splits_to_that_size(
    mock_api: respx.MockRouter, spec: Spec, answer: object
) -> None:
    assert callable(answer)
    fake = FakeService(spec, limit=5, too_large=answer)
    mock_api.post(spec.url).mock(side_effect=fake)
    documents = [f"doc {i}" for i in range(24)]
    async with make_client(
        provider=spec.make(), base_url=spec.base_url, model=spec.model,
        batch_size=12, max_concurrency=2,limits=Limits(min_batch_size=12)
    ) as client:  # fmt: skip
        result = await client.rerank(QUERY, documents)
        assert client.batch_limit == 5
        again = await client.rerank(QUERY, [f"more {i}" for i in range(10)])
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert again.scores == [pointwise_score(QUERY, f"more {i}") for i in range(10)]
    assert fake.batch_sizes[:2] == [12, 12]
    # Each rejected 12 became pieces of at most 5; the next call planned with 5 at once.
    assert sorted(fake.batch_sizes[2:8]) == [4, 4, 4, 4, 4, 4]
    assert fake.batch_sizes[8:] == [5, 5]


async def test_tei_token_error_is_not_split(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["tei"]
    route = mock_api.post(spec.url).mock(
        return_value=json_response(
            {"error": "Input validation error: `inputs` must have less than 512 tokens. "
             "Given: 600", "error_type": "Validation"},
            413,
        )
    )  # fmt: skip
    async with make_client(provider=TEIProvider(truncate=False), base_url=spec.base_url) as client:
        with pytest.raises(BadRequestError, match="must have less than 512 tokens"):
            await client.rerank(QUERY, ["a", "b", "c", "d"])
        assert client.batch_limit == 32
    assert route.call_count == 1


async def test_voyage_too_many_tokens_halves(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["voyage"]
    fake = FakeService(
        spec,
        limit=4,
        too_large=lambda n, limit: json_response(
            {"detail": "Request to model 'rerank-2.5' failed. The max allowed tokens per "
             "submitted batch is 600000. Your batch has 700000 tokens after truncation."},
            400,
        ),
    )  # fmt: skip
    mock_api.post(spec.url).mock(side_effect=fake)
    documents = [f"doc {i}" for i in range(8)]
    async with make_client(
        provider=VoyageProvider(), base_url=spec.base_url, model=spec.model, batch_size=8,
        max_concurrency=1,
    ) as client:  # fmt: skip
        result = await client.rerank(QUERY, documents)
    assert fake.batch_sizes == [8, 4, 4]
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]


# -- sigmoid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "expected"),
    [(0.0, 0.5), (2.0, 1 / (1 + math.exp(-2.0))), (-2.0, 1 / (1 + math.exp(2.0))),
     (1000.0, 1.0), (-1000.0, 0.0), (1e308, 1.0), (-1e308, 0.0), (-745.0, math.exp(-745.0))],
)  # fmt: skip
def test_sigmoid_is_numerically_safe(x: float, expected: float) -> None:
    assert sigmoid(x) == pytest.approx(expected, rel=1e-12, abs=0)


def test_sigmoid_is_monotonic_and_symmetric() -> None:
    xs = [-50.0, -5.0, -0.5, 0.0, 0.5, 5.0, 50.0]
    values = [sigmoid(x) for x in xs]
    assert values == sorted(values)
    for x in xs:
        assert sigmoid(x) + sigmoid(-x) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("provider", "answer"),
    [
        (NvidiaProvider(sigmoid=True),
         {"rankings": [{"index": 2, "logit": 1000.0}, {"index": 0, "logit": 0},
                       {"index": 1, "logit": -3.25}]}),
        (TEIProvider(raw_scores=True, sigmoid=True),
         [{"index": 2, "score": 1000.0}, {"index": 0, "score": 0.0},
          {"index": 1, "score": -3.25}]),
        (InfinityProvider(raw_scores=True, sigmoid=True),
         {"results": [{"index": 2, "relevance_score": 1000.0},
                      {"index": 0, "relevance_score": 0.0},
                      {"index": 1, "relevance_score": -3.25}]}),
    ],
    ids=["nvidia", "tei", "infinity"],
)  # fmt: skip
async def test_sigmoid_option_maps_logits(
    mock_api: respx.MockRouter, provider: Provider, answer: object
) -> None:
    base_url = "http://reranker.test"
    mock_api.post(provider.url(base_url, "m")).mock(return_value=json_response(answer))
    async with make_client(provider=provider, base_url=base_url, model="m") as client:
        result = await client.rerank(QUERY, ["a", "b", "c"])
    assert result.scores == [0.5, pytest.approx(1 / (1 + math.exp(3.25))), 1.0]
    assert [ranked.index for ranked in result.results] == [2, 0, 1]


async def test_logits_pass_through_by_default(mock_api: respx.MockRouter) -> None:
    provider = NvidiaProvider()
    url = provider.url("http://nim.test", "m")
    answer = {"rankings": [{"index": 1, "logit": 4.5}, {"index": 0, "logit": -11.0}]}
    mock_api.post(url).mock(return_value=json_response(answer))
    async with make_client(provider=provider, base_url="http://nim.test", model="m") as client:
        assert await client.score(QUERY, ["a", "b"]) == [-11.0, 4.5]


# -- Voyage's token budget --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "budget"),
    [("rerank-2.5", 600_000), ("rerank-2.5-lite", 600_000), ("rerank-2", 600_000),
     ("rerank-1", 300_000), ("rerank-lite-1", 300_000), ("voyageai/Rerank-Lite-1", 300_000)],
)  # fmt: skip
def test_voyage_budget_per_model(model: str, budget: int) -> None:
    assert VoyageProvider().max_tokens_per_request(model) == budget


def test_other_providers_have_no_token_budget() -> None:
    budgets = {"contextual": 400_000, "dashscope": 120_000, "zeroentropy": 1_250_000}
    for name in NAMES.keys() - {"voyage"}:
        assert resolve_provider(name).max_tokens_per_request("m") == budgets.get(name)


async def test_voyage_long_query_splits_by_the_real_budget(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["voyage"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    provider = VoyageProvider()
    query = "q" * 40_000  # 10,001 estimated tokens, counted once per document
    documents = [f"document {i}" for i in range(100)]
    async with make_client(provider=provider, base_url=spec.base_url, model="rerank-2") as client:
        result = await client.rerank(query, documents)
    assert result.scores == [pointwise_score(query, d) for d in documents]
    assert len(fake.bodies) >= 2
    for body in fake.bodies:
        cost = sum(
            provider.estimate_tokens(query) + provider.estimate_tokens(d) for d in body["documents"]
        )
        assert cost <= 600_000


class _SmallBudgetVoyage(VoyageProvider):
    def max_tokens_per_request(self, model: str) -> int | None:
        return 200


async def test_voyage_splits_every_request_under_budget(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["voyage"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    provider = _SmallBudgetVoyage()
    query = "x" * 100  # 26 tokens
    documents = [f"document number {i:04d}" for i in range(40)]  # 6 tokens each: 32 per pair
    async with make_client(
        provider=provider, base_url=spec.base_url, model="rerank-2",
        # one span by count; only the budget cuts it
        batch_size=100, limits=Limits(min_batch_size=100),
    ) as client:  # fmt: skip
        result = await client.rerank(query, documents)
    assert result.scores == [pointwise_score(query, d) for d in documents]
    assert fake.batch_sizes == [6, 6, 6, 6, 6, 6, 4]  # 6 x 32 = 192 <= 200 < 7 x 32


# -- listwise models ------------------------------------------------------------------------


async def test_listwise_model_sends_one_request_per_call(mock_api: respx.MockRouter) -> None:
    spec = BY_NAME["jina"]
    fake = FakeService(spec)
    mock_api.post(spec.url).mock(side_effect=fake)
    documents = [f"doc {i}" for i in range(64)]
    async with make_client(
        provider="jina", base_url=spec.base_url, model="jina-reranker-v3",
        batch_size=64,limits=Limits(split=False)
    ) as client:  # fmt: skip
        result = await client.rerank(QUERY, documents)
        with pytest.raises(ValueError, match="split=False"):
            await client.rerank(QUERY, [*documents, "one more"])
    assert fake.batch_sizes == [64]
    assert fake.bodies[0]["top_n"] == 64
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]


def test_index_based_providers_declare_their_shape_and_share_one_decoder() -> None:
    from rerank_async.providers._indexed import IndexedProvider

    every = [resolve_provider(name) for name in providers.provider_names()]
    indexed = [p for p in every if isinstance(p, IndexedProvider)]
    assert len(indexed) >= 9
    for provider in indexed:
        assert type(provider).decode_response is IndexedProvider.decode_response, provider.name
        shape = provider.shape_of_response()
        assert shape.results in shape.model.model_fields, provider.name
    score_shape = VLLMProvider(endpoint="score").shape_of_response()
    assert (score_shape.results, score_shape.score) == ("data", "score")
