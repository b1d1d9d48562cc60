"""Choosing and building the HTTP engine (the choice "auto" makes is tested over loopback)."""

from __future__ import annotations

import httpx
import pytest

from rerank_async._aiohttp_transport import AiohttpTransport
from rerank_async._engine import AutoTransport, build_transport, check_engine
from rerank_async._transport import Endpoint, HttpxTransport
from rerank_async.providers import resolve_provider

ENDPOINT = Endpoint(
    provider=resolve_provider("deepinfra"),
    url="http://reranker.test/v1/inference/m",
    model="m",
    headers={},
    api_key=None,
)


@pytest.mark.parametrize("engine", ["auto", "httpx", "aiohttp"])
def test_known_engines_pass(engine: str) -> None:
    assert check_engine(engine, has_http_client=False) == engine


@pytest.mark.parametrize("engine", ["requests", "", None, "AIOHTTP"])
def test_unknown_engine_is_named(engine: object) -> None:
    with pytest.raises(ValueError, match="http_engine must be 'auto', 'httpx' or 'aiohttp'"):
        check_engine(engine, has_http_client=False)


def test_aiohttp_refuses_an_httpx_client() -> None:
    with pytest.raises(ValueError, match="cannot be used with http_engine='aiohttp'"):
        check_engine("aiohttp", has_http_client=True)


def build(engine: str, http_client: httpx.AsyncClient | None = None) -> object:
    return build_transport(
        check_engine(engine, has_http_client=http_client is not None),
        ENDPOINT,
        http_client=http_client,
        timeout=5.0,
        caller_timeout=httpx.USE_CLIENT_DEFAULT,
        max_connections=4,
    )


async def test_each_engine_builds_its_transport() -> None:
    auto, plain, fast = build("auto"), build("httpx"), build("aiohttp")
    assert isinstance(auto, AutoTransport)
    assert auto.engine is None  # chosen at the first request, when the loop is known
    assert isinstance(plain, HttpxTransport)
    assert isinstance(fast, AiohttpTransport)
    for transport in (auto, plain, fast):
        await transport.aclose()  # type: ignore[attr-defined]


async def test_a_callers_http_client_means_httpx_even_on_auto() -> None:
    async with httpx.AsyncClient() as own:
        transport = build("auto", own)
        assert isinstance(transport, HttpxTransport)
        assert transport.http_client is own
        await transport.aclose()
        assert not own.is_closed  # the caller's client stays open
