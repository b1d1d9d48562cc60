"""SGLang and llama.cpp providers against the local server's dialects, over loopback HTTP.

The server answers both with ``{index, score}`` pairs sorted by relevance (SGLang as a
bare array), under ``/sglang`` and ``/llamacpp``; every test checks the index mapping end
to end on real sockets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async import AuthenticationError, RerankClient, ResponseValidationError
from rerank_async.providers import LlamaCppProvider, SGLangProvider
from rerank_async.server import RunningServer, ServerConfig, create_app, running_server
from rerank_async.server._scoring import score as reference_score
from tests.conftest import ENGINES

pytestmark = pytest.mark.integration

QUERY = "solar battery storage for the home grid"
WORDS = ["solar", "battery", "storage", "home", "grid", "panel", "roof", "energy", "coffee",
         "marathon", "volcano", "city"]  # fmt: skip
PREFIXES = {"sglang": "/sglang", "llamacpp": "/llamacpp"}


def corpus(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=7)) + f" #{i}" for i in range(n)]


def truth(documents: list[str]) -> list[float]:
    return [reference_score(QUERY, d) for d in documents]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=2)) as running:
        yield running


@ENGINES
@pytest.mark.parametrize("name", ["sglang", "llamacpp"])
async def test_1000_documents_score_in_input_order(
    server: RunningServer, engine: str, name: str
) -> None:
    documents = corpus(1000)
    async with RerankClient(
        provider=name, base_url=server.url + PREFIXES[name], http_client=engine
    ) as client:
        result = await client.rerank(QUERY, documents, top_k=5)
    assert result.scores == truth(documents)
    assert len(set(result.scores)) > 20
    best = sorted(range(1000), key=lambda i: (-result.scores[i], i))[:5]
    assert [ranked.index for ranked in result.results] == best
    assert result.usage.batches == -(-1000 // client.options.batch_size)


async def test_sglang_instruct_is_accepted_over_http(server: RunningServer) -> None:
    async with RerankClient(
        provider=SGLangProvider(), base_url=server.url + "/sglang", instruction="Find energy docs."
    ) as client:
        assert await client.score(QUERY, corpus(9)) == truth(corpus(9))


@pytest.mark.parametrize("name", ["sglang", "llamacpp"])
async def test_too_many_documents_splits_over_http(name: str) -> None:
    documents = corpus(300)
    with running_server(ServerConfig(max_batch_size=20)) as small:
        async with RerankClient(
            provider=name, base_url=small.url + PREFIXES[name], batch_size=64, max_concurrency=4
        ) as client:
            result = await client.rerank(QUERY, documents)
            assert client.batch_limit == 20
        stats = small.stats()
    assert result.scores == truth(documents)
    assert stats["status_counts"]["400"] >= 1


@pytest.mark.parametrize(
    ("name", "no_scores"), [("sglang", "0.score: Field required"), ("llamacpp", "results")]
)
async def test_malformed_answers_are_caught_over_http(name: str, no_scores: str) -> None:
    with running_server(ServerConfig(malformed_rate=1.0, seed=3)) as broken:
        reasons = []
        async with RerankClient(
            provider=name, base_url=broken.url + PREFIXES[name], max_retries=0
        ) as client:
            for _ in range(3):
                with pytest.raises(ResponseValidationError) as caught:
                    await client.rerank(QUERY, corpus(5))
                reasons.append(str(caught.value))
    assert "Invalid JSON" in reasons[0]
    assert "has 4 entries for a batch of 5 documents; missing indices" in reasons[1]
    assert no_scores in reasons[2]


async def test_auth_over_http() -> None:
    with running_server(ServerConfig(api_key="sk-local-engine")) as locked:
        async with RerankClient(provider="llamacpp", base_url=locked.url + "/llamacpp") as client:
            with pytest.raises(AuthenticationError, match="Invalid API Key"):
                await client.rerank(QUERY, ["a"])
        async with RerankClient(
            provider=LlamaCppProvider(),
            base_url=locked.url + "/llamacpp",
            api_key="sk-local-engine",
        ) as client:
            assert await client.score(QUERY, ["solar home"]) == truth(["solar home"])


async def test_dialect_shapes_in_process() -> None:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        sglang = await http.post(
            "/sglang/v1/rerank",
            json={"query": QUERY, "documents": ["coffee city", "solar grid"], "top_n": 1},
        )
        llama = await http.post(
            "/llamacpp/v1/rerank", json={"query": QUERY, "documents": ["coffee city", "solar grid"]}
        )
        bad = await http.post("/sglang/v1/rerank", json={"query": QUERY, "documents": []})
    answer = sglang.json()
    assert isinstance(answer, list)
    assert [item["index"] for item in answer] == [1]
    assert answer[0]["document"] == "solar grid"  # SGLang echoes documents unless told not to
    body = llama.json()
    assert body["object"] == "list"
    assert [item["index"] for item in body["results"]] == [1, 0]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    assert bad.status_code == 400
    assert bad.json()["object"] == "error"
    assert bad.json()["message"] == "documents must not be empty"
