"""Which engine a client builds; the choice "auto" makes at the first request is in
tests/integration/test_engines.py, over loopback."""

from __future__ import annotations

import httpx
import pytest

from rerank_async import RerankClient
from rerank_async._config import resolve_config
from rerank_async._transports.aiohttp_engine import AiohttpTransport
from rerank_async._transports.engines import AutoTransport, open_transport
from rerank_async._transports.httpx_engine import HttpxTransport


def config(engine: str, http_client: httpx.AsyncClient | None = None):  # type: ignore[no-untyped-def]
    return resolve_config(
        model="m", base_url="http://reranker.test", max_concurrency=4, max_retries=0,
        timeout=5.0, http_client=http_client or engine,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("engine", "transport", "name"),
    [
        ("auto", AutoTransport, "auto"),  # chosen at the first request, when the loop is known
        ("httpx", HttpxTransport, "httpx"),
        ("aiohttp", AiohttpTransport, "aiohttp"),
    ],
)
async def test_each_engine_builds_its_transport(engine: str, transport: type, name: str) -> None:
    opened = open_transport(config(engine))
    assert isinstance(opened.engine, transport)
    assert opened.sender is opened.engine  # nothing to observe without on_request
    assert opened.engine_name == name
    await opened.sender.aclose()


async def test_a_callers_http_client_means_httpx_even_on_auto() -> None:
    async with httpx.AsyncClient() as own:
        opened = open_transport(config("auto", own))
        assert isinstance(opened.engine, HttpxTransport)
        assert opened.engine.http_client is own
        await opened.sender.aclose()
        assert not own.is_closed  # the caller's client stays open


def test_the_client_reports_its_engine() -> None:
    assert RerankClient().http_engine == "auto"  # the default, until the first request
    assert RerankClient(http_client="httpx").http_engine == "httpx"
    assert RerankClient(http_client="aiohttp").http_engine == "aiohttp"
    assert RerankClient(http_client=httpx.AsyncClient()).http_engine == "httpx"
