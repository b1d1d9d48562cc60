"""Shared test helpers: a pointwise fake reranker for respx and client factories."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
import respx

from rerank_async import Limits, RerankClient, RetryPolicy

BASE_URL = "http://reranker.test/v1/inference"
MODEL = "acme/test-reranker"
URL = f"{BASE_URL}/{MODEL}"

Responder = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def pointwise_score(query: str, document: str) -> float:
    """A deterministic score that depends on (query, document) alone."""
    digest = hashlib.sha256(f"{query}\x00{document}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / float(1 << 48)


def requires(module: str) -> pytest.MarkDecorator:
    """Skip where an optional extra's ``module`` is not installed (``.[dev]`` has them all)."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"needs {module}: pip install -e '.[dev]'")


# Both HTTP engines; the aiohttp one only where its extra is installed.
ENGINES = pytest.mark.parametrize(
    "engine", ["httpx", pytest.param("aiohttp", marks=requires("aiohttp"))]
)


class FakeReranker:
    """A respx side effect that speaks DeepInfra's API with pointwise scores.

    ``script`` holds responses (or callables) served to the first requests in
    arrival order; later requests are scored normally. ``delay`` may be a
    number of seconds or a function of the request body; ``math.inf`` waits
    until the request is cancelled.
    """

    def __init__(
        self,
        *,
        delay: float | Callable[[dict[str, Any]], float] = 0.0,
        script: list[httpx.Response | Responder] | None = None,
    ) -> None:
        self.delay = delay
        self.script = list(script or [])
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.in_flight = 0
        self.max_in_flight = 0

    @property
    def calls(self) -> int:
        return len(self.bodies)

    def bodies_of(self, document: str) -> list[dict[str, Any]]:
        """The bodies received so far that carry ``document``."""
        return [body for body in self.bodies if document in body["documents"]]

    @property
    def batch_sizes(self) -> list[int]:
        return [len(body["documents"]) for body in self.bodies]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delay(body) if callable(self.delay) else self.delay
            if delay == math.inf:
                await anyio.sleep_forever()  # until the client cancels it
            elif delay:
                await anyio.sleep(delay)
            else:
                await anyio.lowlevel.checkpoint()
            if self.script:
                scripted = self.script.pop(0)
                if isinstance(scripted, httpx.Response):
                    return scripted
                answer = scripted(request)
                return await answer if not isinstance(answer, httpx.Response) else answer
            return scored_response(body)
        finally:
            self.in_flight -= 1


def scored_response(body: dict[str, Any]) -> httpx.Response:
    documents = body["documents"]
    if "query" in body:
        queries = [body["query"]] * len(documents)
    else:  # the queries form: one query for all, or one per document (packed requests)
        queries = (
            body["queries"]
            if len(body["queries"]) == len(documents)
            else body["queries"][:1] * len(documents)
        )
    scores = [pointwise_score(q, document) for q, document in zip(queries, documents, strict=True)]
    return httpx.Response(
        200,
        json={
            "scores": scores,
            "input_tokens": 3 * len(scores),
            "request_id": "req-1",
            "inference_status": {"status": "succeeded", "runtime_ms": 5, "cost": 0.0},
        },
    )


@pytest.fixture
def mock_api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


@pytest.fixture
def fake(mock_api: respx.MockRouter) -> FakeReranker:
    fake = FakeReranker()
    mock_api.post(URL).mock(side_effect=fake)
    return fake


class CompletionGate:
    """Makes requests finish in a chosen order, on events rather than timers.

    Each request calls ``turn(key)``: it waits until every key of ``order`` has
    arrived, then the requests are let through one at a time in ``order``, each
    only after the one before has finished (``finished(key)``). ``completed``
    records the order they really finished in, for the test to assert on.
    """

    def __init__(self, order: list[int]) -> None:
        self.order = list(order)
        self.completed: list[int] = []
        self._released: dict[int, anyio.Event] = {key: anyio.Event() for key in order}
        self._arrived = 0

    async def turn(self, key: int) -> None:
        self._arrived += 1
        if self._arrived == len(self.order):
            self._released[self.order[0]].set()
        await self._released[key].wait()

    def finished(self, key: int) -> None:
        self.completed.append(key)
        if len(self.completed) < len(self.order):
            self._released[self.order[len(self.completed)]].set()


class SleepRecorder:
    """Stands in for anyio.sleep: records each backoff wait and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.lowlevel.checkpoint()


def make_client(*, sleep: SleepRecorder | None = None, **options: Any) -> RerankClient:
    """A client for the mocked endpoint with zero backoff unless told otherwise."""
    options.setdefault("base_url", BASE_URL)
    options.setdefault("model", MODEL)
    options.setdefault("retry", RetryPolicy(initial_delay=0.0))
    # respx mocks httpx: unit tests send through the httpx engine, which "auto" would
    # replace with aiohttp on asyncio. Both engines meet the real server in tests/integration.
    if options.get("http_client") is None:
        options["http_client"] = "httpx"
    on_request = options.pop("on_request", None)
    client = RerankClient(**options)
    client.on_request = on_request
    if sleep is not None:
        client.set_retry_policy(replace(client.options.retry, sleep=sleep))
    return client


@pytest.fixture
async def client() -> AsyncIterator[RerankClient]:
    async with make_client(
        batch_size=4, max_concurrency=4, limits=Limits(min_batch_size=4)
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's real keys and settings out of every test.

    Proxy and certificate variables too: both engines honour them (trust_env), and a
    machine's proxy must not carry the tests' loopback requests.
    """
    for name in (
        "DEEPINFRA_TOKEN",
        "DEEPINFRA_API_KEY",
        "RERANK_ASYNC_BASE_URL",
        "RERANK_ASYNC_MODEL",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
