"""Constructor options, precedence, input checks and lifecycle."""

from __future__ import annotations

import httpx
import pytest
import respx

from rerank_async import Limits, RerankClient, RetryPolicy
from rerank_async._constants import DEFAULT_MIN_BATCH_SIZE
from rerank_async.providers.deepinfra import (
    DEEPINFRA_BASE_URL,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MODEL,
)
from tests.conftest import URL, make_client


def test_defaults() -> None:
    client = RerankClient()
    options = client.options
    assert options.model == DEFAULT_MODEL
    assert options.base_url == DEEPINFRA_BASE_URL
    assert options.url == f"{DEEPINFRA_BASE_URL}/{DEFAULT_MODEL}"
    assert options.batch_size == DEFAULT_BATCH_SIZE
    assert options.min_batch_size == DEFAULT_MIN_BATCH_SIZE
    assert options.max_concurrency == DEFAULT_MAX_CONCURRENCY
    assert options.total_timeout is None
    assert options.max_retries == 4


def test_environment_fills_unset_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_ASYNC_MODEL", "env/model")
    monkeypatch.setenv("RERANK_ASYNC_BASE_URL", "http://env.test/v1/inference/")
    client = RerankClient()
    assert client.model == "env/model"
    assert client.options.url == "http://env.test/v1/inference/env/model"
    explicit = RerankClient(model="arg/model", base_url="http://arg.test")
    assert explicit.options.url == "http://arg.test/arg/model"  # argument beats environment


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEEPINFRA_TOKEN": "tok", "DEEPINFRA_API_KEY": "key"}, "Bearer tok"),
        ({"DEEPINFRA_API_KEY": "key"}, "Bearer key"),
        ({"DEEPINFRA_TOKEN": "  ", "DEEPINFRA_API_KEY": "key"}, "Bearer key"),
    ],
)
async def test_api_key_from_environment(
    monkeypatch: pytest.MonkeyPatch, mock_api: respx.MockRouter, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    route = mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.1]}))
    async with make_client() as client:
        await client.score("q", ["a"])
    assert route.calls[0].request.headers["authorization"] == expected


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ({"batch_size": True}, TypeError, "batch_size must be an int"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency must be >= 1"),
        (
            {"batch_size": 4, "limits": Limits(min_batch_size=5)},
            ValueError,
            r"limits\.min_batch_size \(5\) must not exceed",
        ),
        ({"limits": {"split": False}}, TypeError, "limits must be a rerank_async.Limits"),
        ({"retry": 0.5}, TypeError, "retry must be a rerank_async.RetryPolicy"),
        ({"max_retries": -1}, ValueError, "max_retries must be >= 0"),
        ({"timeout": 0}, ValueError, "timeout must be a finite number > 0"),
        ({"timeout": "10"}, TypeError, "timeout must be a number of seconds"),
        ({"total_timeout": -1.0}, ValueError, "total_timeout must be"),
        ({"total_timeout": float("inf")}, ValueError, "total_timeout must be"),
        ({"base_url": "api.deepinfra.com"}, ValueError, "base_url must start with http"),
        ({"model": "  "}, ValueError, "model must not be empty"),
        ({"api_key": ""}, ValueError, "api_key must not be empty"),
        ({"api_key": 123}, TypeError, "api_key must be a str"),
        (
            {"provider": "nosuch"},
            ValueError,
            "unknown provider 'nosuch'; known providers: .*deepinfra",
        ),
        ({"http_client": object()}, TypeError, "http_client must be an httpx.AsyncClient"),
    ],
)
def test_bad_options_name_the_argument(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RerankClient(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "fields", "error", "match"),
    [
        (Limits, {"min_batch_size": 0}, ValueError, r"limits\.min_batch_size must be >= 1"),
        (Limits, {"split": "no"}, TypeError, r"limits\.split must be a bool"),
        (Limits, {"max_requests_per_minute": 0}, ValueError, "max_requests_per_minute"),
        (RetryPolicy, {"initial_delay": -1}, ValueError, r"retry\.initial_delay"),
        (RetryPolicy, {"max_retry_after": float("nan")}, ValueError, r"retry\.max_retry_after"),
        (RetryPolicy, {"budget_ratio": -0.1}, ValueError, r"retry\.budget_ratio"),
    ],
)
def test_bad_option_objects_name_the_field(
    kind: type, fields: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        kind(**fields)


def test_zero_retries_and_zero_backoff_are_valid() -> None:
    client = RerankClient(max_retries=0, retry=RetryPolicy(initial_delay=0, max_delay=0))
    assert client.options.max_retries == 0
    assert client.options.retry.initial_delay == 0


def test_min_batch_size_follows_a_small_batch_size() -> None:
    assert RerankClient(batch_size=4).options.min_batch_size == 4


@pytest.mark.parametrize(
    ("query", "documents", "kwargs", "error", "match"),
    [
        ("q", "one document", {}, TypeError, "not a single str; wrap one document in a list"),
        ("q", b"bytes", {}, TypeError, "not a single bytes"),
        ("q", {"a", "b"}, {}, TypeError, "documents must be a sequence of str, not set"),
        ("q", ["ok", 3, "ok"], {}, TypeError, r"documents\[1\] must be a str, not int"),
        ("q", ["ok", None], {}, TypeError, r"documents\[1\] must be a str, not NoneType"),
        ("", ["a"], {}, ValueError, "query must not be empty"),
        ("   ", ["a"], {}, ValueError, "query must not be empty"),
        (None, ["a"], {}, TypeError, "query must be a str"),
        ("q", ["a"], {"top_k": 0}, ValueError, "top_k must be >= 1"),
        ("q", ["a"], {"total_timeout": 0}, ValueError, "total_timeout"),
    ],
)
async def test_bad_input_fails_before_any_request(
    mock_api: respx.MockRouter,
    query: object,
    documents: object,
    kwargs: dict[str, object],
    error: type[Exception],
    match: str,
) -> None:
    route = mock_api.post(URL)
    async with make_client() as client:
        with pytest.raises(error, match=match):
            await client.rerank(query, documents, **kwargs)  # type: ignore[arg-type]
    assert not route.called


async def test_tuple_documents_are_fine(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.1, 0.2]}))
    async with make_client() as client:
        assert await client.score("q", ("a", "b")) == [0.1, 0.2]


async def test_lifecycle() -> None:
    client = make_client()
    assert not client.is_closed
    async with client as entered:
        assert entered is client
    assert client.is_closed
    await client.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await client.rerank("q", ["a"])
    with pytest.raises(RuntimeError, match="cannot reopen"):
        async with client:
            pass


async def test_works_without_async_with(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.3]}))
    client = make_client()
    try:
        assert await client.score("q", ["a"]) == [0.3]
    finally:
        await client.aclose()
    assert client._fleet.transport.engine.http_client.is_closed  # type: ignore[attr-defined]


def test_repr_hides_the_key() -> None:
    client = RerankClient(api_key="sk-abc-123")
    assert "sk-abc-123" not in repr(client)
    assert "api_key='***'" in repr(client)
    assert "sk-abc-123" not in repr(client.options)


async def test_explicit_timeout_reaches_httpx(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.3]}))
    async with make_client(timeout=httpx.Timeout(3.0, connect=1.0)) as client:
        await client.score("q", ["a"])
    timeouts = route.calls[0].request.extensions["timeout"]
    assert timeouts == {"connect": 1.0, "read": 3.0, "write": 3.0, "pool": 3.0}


async def test_default_timeout(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.3]}))
    async with make_client() as client:
        await client.score("q", ["a"])
    assert route.calls[0].request.extensions["timeout"]["read"] == 60.0
    assert route.calls[0].request.extensions["timeout"]["connect"] == 10.0


async def test_caller_client_timeout_is_kept_unless_overridden(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(200, json={"scores": [0.3]}))
    async with httpx.AsyncClient(timeout=7.0) as http_client:
        async with make_client(http_client=http_client) as client:
            await client.score("q", ["a"])
    assert route.calls[0].request.extensions["timeout"]["read"] == 7.0


def test_http_engine_is_checked() -> None:
    with pytest.raises(ValueError, match=r"http_client must be an httpx\.AsyncClient or one of"):
        RerankClient(http_client="curl")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"http_client must be an httpx\.AsyncClient or one of"):
        RerankClient(http_client=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (None, (None, None, None, None)),
        (5.0, (None, None, 5.0, 5.0)),
        (httpx.Timeout(30.0, connect=2.0, pool=1.0), (None, 1.0, 2.0, 30.0)),
    ],
)
def test_aiohttp_timeout_mapping(
    timeout: httpx.Timeout | float | None, expected: tuple[float | None, ...]
) -> None:
    pytest.importorskip("aiohttp", reason="the aiohttp extra")
    from rerank_async._transports.aiohttp_engine import client_timeout

    mapped = client_timeout(timeout)
    assert (mapped.total, mapped.connect, mapped.sock_connect, mapped.sock_read) == expected


def test_providers_without_a_default_model_require_one(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="model is required with provider 'cohere'"):
        RerankClient(provider="cohere")
    assert RerankClient(provider="cohere", model="rerank-v3.5").model == "rerank-v3.5"
    monkeypatch.setenv("RERANK_ASYNC_MODEL", "rerank-v3.5")
    assert RerankClient(provider="cohere").model == "rerank-v3.5"
