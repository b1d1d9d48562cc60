"""The web-app example under many concurrent requests, against the real local server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.server import ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_many_concurrent_requests_share_one_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    with running_server(ServerConfig(latency_ms=3, capacity=64)) as server:
        monkeypatch.setenv("RERANK_ASYNC_BASE_URL", server.base_url)
        app = load_example().app
        answers: dict[int, dict[str, object]] = {}

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:

                async def ask(i: int) -> None:
                    documents = [f"doc {i} about topic {j} and solar {j % 3}" for j in range(30)]
                    response = await http.post(
                        "/rerank",
                        json={"query": f"solar {i % 3}", "documents": documents, "top_k": 3},
                    )
                    assert response.status_code == 200, response.text
                    answers[i] = {"documents": documents, **response.json()}

                async with anyio.create_task_group() as group:
                    for i in range(200):
                        group.start_soon(ask, i)
        stats = server.stats()

    assert len(answers) == 200
    for i, answer in answers.items():
        documents = answer["documents"]
        assert isinstance(documents, list)
        scores = [reference_score(f"solar {i % 3}", d) for d in documents]
        best = sorted(range(len(documents)), key=lambda j: (-scores[j], j))[:3]
        hits = answer["hits"]
        assert isinstance(hits, list)
        assert [hit["index"] for hit in hits] == best
        assert [hit["score"] for hit in hits] == [scores[j] for j in best]
    assert stats["max_in_flight"] <= 16  # the example's max_concurrency, across all requests
    assert stats["max_in_flight"] >= 8  # and it was actually used


async def test_bad_request_is_rejected_by_the_app() -> None:
    app = load_example().app
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            response = await http.post("/rerank", json={"query": "", "documents": ["a"]})
    assert response.status_code == 422
