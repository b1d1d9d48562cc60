"""Every provider's wire format through a full RerankClient call, against respx fakes."""

from __future__ import annotations

import math
from typing import Any

import pytest
import respx

import rerank_async
from rerank_async import Limits, RerankClient, ResponseValidationError
from rerank_async.providers import Provider
from tests.conftest import make_client, pointwise_score
from tests.providers.specs import (
    DOCUMENTS,
    QUERY,
    SPECS,
    FakeService,
    Spec,
    json_response,
)

each_spec = pytest.mark.parametrize("spec", SPECS, ids=str)


def client_for(spec: Spec, **options: Any) -> RerankClient:
    options.setdefault("provider", spec.make())
    return make_client(base_url=spec.base_url, model=spec.model, **options)


def route(mock_api: respx.MockRouter, spec: Spec, fake: FakeService) -> respx.Route:
    return mock_api.post(spec.url).mock(side_effect=fake)


@each_spec
async def test_request_path_body_and_auth_headers(mock_api: respx.MockRouter, spec: Spec) -> None:
    fake = FakeService(spec)
    route(mock_api, spec, fake)
    async with client_for(spec, api_key="sk-test-123") as client:
        await client.score(QUERY, DOCUMENTS)
    assert fake.bodies == [spec.body]
    headers = fake.headers[0]
    for name, value in {**spec.auth("sk-test-123"), **spec.extra_headers}.items():
        assert headers[name] == value
    if "authorization" not in spec.auth("k"):
        assert "authorization" not in headers
    assert headers["content-type"] == "application/json"


@each_spec
async def test_no_key_sends_no_credentials(mock_api: respx.MockRouter, spec: Spec) -> None:
    fake = FakeService(spec)
    route(mock_api, spec, fake)
    async with client_for(spec) as client:
        await client.score(QUERY, DOCUMENTS)
    for name in (*spec.auth("k"), "authorization"):
        assert name not in fake.headers[0]
    for name, value in spec.extra_headers.items():
        assert fake.headers[0][name] == value


@each_spec
async def test_reverse_relevance_answers_map_back_to_input_order(
    mock_api: respx.MockRouter, spec: Spec
) -> None:
    fake = FakeService(spec)
    route(mock_api, spec, fake)
    documents = [f"passage {i} about {'France' if i % 3 else 'Germany'}" for i in range(22)]
    async with client_for(
        spec, batch_size=8, max_concurrency=4, limits=Limits(min_batch_size=8)
    ) as client:
        result = await client.rerank(QUERY, documents, top_k=5)
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert fake.batch_sizes == [8, 7, 7]
    # The fake really scrambled the indices; a positional reading would be wrong.
    assert all(answer != sorted(answer) for answer in fake.answered)
    best = sorted(range(22), key=lambda i: -result.scores[i])[:5]
    assert [ranked.index for ranked in result.results] == best


@pytest.mark.parametrize("spec", [spec for spec in SPECS if spec.env_vars], ids=str)
async def test_api_key_from_environment(
    mock_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, spec: Spec
) -> None:
    for position, name in enumerate(spec.env_vars):
        monkeypatch.setenv(name, f"env-key-{position}")
    fake = FakeService(spec)
    route(mock_api, spec, fake)
    async with client_for(spec) as client:
        await client.score(QUERY, ["a"])
    # The first variable wins when several are set.
    for name, value in spec.auth("env-key-0").items():
        assert fake.headers[0][name] == value


@each_spec
async def test_service_error_body_becomes_typed_error(
    mock_api: respx.MockRouter, spec: Spec
) -> None:
    status, body, error_name, message = spec.error
    mock_api.post(spec.url).mock(return_value=json_response(body, status))
    async with client_for(spec, max_retries=0) as client:
        with pytest.raises(getattr(rerank_async, error_name)) as caught:
            await client.rerank(QUERY, DOCUMENTS)
    assert caught.value.server_message == message
    assert message in str(caught.value)
    assert caught.value.status_code == status


BAD_ANSWERS = {
    "omitted index": (lambda pairs: [p for p in pairs if p[0] != 2], "missing indices 2"),
    "repeated index": (lambda pairs: [*pairs[:-1], (pairs[0][0], 0.5)], "appears twice"),
    "index out of range": (lambda pairs: [*pairs[:-1], (3, 0.5)], "3 is out of range"),
    "negative index": (lambda pairs: [*pairs[:-1], (-1, 0.5)], "-1 is out of range"),
    "NaN score": (lambda pairs: [*pairs[:-1], (pairs[-1][0], math.nan)], "finite number"),
    "infinite score": (lambda pairs: [*pairs[:-1], (pairs[-1][0], math.inf)], "finite number"),
    "string score": (lambda pairs: [*pairs[:-1], (pairs[-1][0], "0.5")], "valid number"),
    "bool score": (lambda pairs: [*pairs[:-1], (pairs[-1][0], True)], "valid number"),
    "float index": (lambda pairs: [*pairs[:-1], (float(str(pairs[-1][0])), 0.5)], "integer"),
    "extra result": (lambda pairs: [*pairs, (0, 0.5)], "appears twice"),
}


@each_spec
@pytest.mark.parametrize("defect", BAD_ANSWERS, ids=str)
async def test_bad_answers_are_response_validation_errors(
    mock_api: respx.MockRouter, spec: Spec, defect: str
) -> None:
    mangle, reason = BAD_ANSWERS[defect]
    fake = FakeService(spec, mangle=mangle)
    route(mock_api, spec, fake)
    async with client_for(spec, max_retries=0) as client:
        with pytest.raises(ResponseValidationError, match="invalid response body") as caught:
            await client.rerank(QUERY, DOCUMENTS)
    assert reason in str(caught.value)
    assert caught.value.document_range == (0, 3)


@each_spec
async def test_a_413_splits_the_batch(mock_api: respx.MockRouter, spec: Spec) -> None:
    fake = FakeService(
        spec,
        limit=6,
        too_large=lambda n, limit: json_response({"message": "Request Entity Too Large"}, 413),
    )
    route(mock_api, spec, fake)
    documents = [f"doc {i}" for i in range(20)]
    async with client_for(spec, batch_size=20, max_concurrency=1) as client:
        result = await client.rerank(QUERY, documents)
        assert client.batch_limit == 5  # halved twice: 20 -> 10 -> 5
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert fake.batch_sizes[0] == 20
    assert sum(size for size in fake.batch_sizes if size <= 6) == 20


@each_spec
def test_client_defaults_come_from_the_provider(spec: Spec) -> None:
    provider: Provider = spec.make()
    if not provider.default_base_url:  # one endpoint per deployment (Azure): base_url is required
        with pytest.raises(ValueError, match="needs base_url="):
            RerankClient(provider=provider, model=spec.model)
        return
    client = RerankClient(provider=provider, model=spec.model)
    assert client.options.batch_size == provider.default_batch_size
    assert client.options.max_concurrency == provider.default_max_concurrency
    assert client.options.base_url == provider.default_base_url
    assert client.options.url == spec.url
