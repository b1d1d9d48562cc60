"""The Haystack 3 ranker against the real haystack-ai and a real server."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading

import pytest
from haystack import Document, Pipeline, component
from haystack.utils import Secret

from rerank_async import RerankClient
from rerank_async.integrations.haystack import RerankAsyncRanker
from rerank_async.server import RunningServer

from .conftest import QUERY, ForbiddenExecutor, corpus

pytestmark = pytest.mark.integration


def documents(n: int) -> list[Document]:
    return [Document(content=text, meta={"n": i}) for i, text in enumerate(corpus(n))]


def pipeline(ranker: RerankAsyncRanker) -> Pipeline:
    pipe = Pipeline()
    pipe.add_component("ranker", ranker)
    return pipe


async def test_pipeline_run_async_matches_a_direct_call_without_the_thread_pool(
    local_server: RunningServer, no_thread_pool: ForbiddenExecutor
) -> None:
    docs = documents(1000)  # CohereRanker truncates above 1,000; nothing is cut here
    async with RerankClient(
        base_url=local_server.base_url, batch_size=32, max_concurrency=8
    ) as client:
        direct = await client.rerank(QUERY, [d.content or "" for d in docs], top_k=1000)
        local_server.reset_stats()
        pipe = pipeline(RerankAsyncRanker(client=client, top_k=1000))
        output = await pipe.run_async({"ranker": {"query": QUERY, "documents": docs}})
        await pipe.close_async()
        assert not client.is_closed  # the caller's client is the caller's to close

    assert local_server.stats()["requests"] == direct.usage.requests
    ranked = output["ranker"]["documents"]
    assert [d.meta["n"] for d in ranked] == [r.index for r in direct.results]
    assert [d.score for d in ranked] == [r.score for r in direct.results]
    assert [d.id for d in ranked] == [docs[r.index].id for r in direct.results]
    assert all(d.score is None for d in docs)  # replaced copies, inputs untouched


async def test_the_tripwire_catches_haystacks_to_thread_for_sync_components() -> None:
    @component
    class SyncOnly:
        @component.output_types(documents=list[Document])
        def run(self, documents: list[Document]) -> dict[str, list[Document]]:
            return {"documents": documents}

    executor = ForbiddenExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    pipe = Pipeline()
    pipe.add_component("sync_only", SyncOnly())
    with pytest.raises(Exception, match="thread pool was used"):
        await pipe.run_async({"sync_only": {"documents": documents(1)}})
    assert executor.submitted


async def test_top_k_default_runtime_and_meta_fields(local_server: RunningServer) -> None:
    docs = documents(30)
    ranker = RerankAsyncRanker(base_url=local_server.base_url, batch_size=8)
    titled = [Document(content="unrelated words", meta={"title": "solar battery storage"})]
    embedding = RerankAsyncRanker(base_url=local_server.base_url, meta_fields_to_embed=["title"])
    try:
        await ranker.warm_up_async()
        assert len((await ranker.run_async(QUERY, docs))["documents"]) == 10
        assert len((await ranker.run_async(QUERY, docs, top_k=3))["documents"]) == 3
        assert (await ranker.run_async(QUERY, []))["documents"] == []
        with pytest.raises(ValueError, match="top_k"):
            await ranker.run_async(QUERY, docs, top_k=0)
        plain = (await ranker.run_async(QUERY, titled))["documents"][0]
        with_meta = (await embedding.run_async(QUERY, titled))["documents"][0]
        assert plain.score == 0.0
        assert with_meta.score is not None
        assert with_meta.score > 0.5
    finally:
        await ranker.close_async()
        await embedding.close_async()


def test_sync_pipeline_warm_up_and_close_own_the_thread(local_server: RunningServer) -> None:
    docs = documents(20)
    ranker = RerankAsyncRanker(base_url=local_server.base_url, batch_size=4, top_k=5)
    before = set(threading.enumerate())
    pipe = pipeline(ranker)
    output = pipe.run({"ranker": {"query": QUERY, "documents": docs}})  # warms up
    started = set(threading.enumerate()) - before
    assert started  # the sync client's loop thread
    pipe.close()
    for thread in started:
        thread.join(timeout=5)
        assert not thread.is_alive()
    ranked = output["ranker"]["documents"]
    assert len(ranked) == 5
    scores = [d.score for d in ranked]
    assert scores == sorted(scores, reverse=True)


def test_run_and_run_async_have_the_same_signature() -> None:
    assert inspect.signature(RerankAsyncRanker.run) == inspect.signature(
        RerankAsyncRanker.run_async
    )


def test_to_dict_from_dict_keeps_the_key_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_RERANK_KEY", "sk-test")
    ranker = RerankAsyncRanker(
        model="acme/reranker",
        api_key=Secret.from_env_var("MY_RERANK_KEY"),
        base_url="http://127.0.0.1:9/v1/inference",
        top_k=4,
        meta_fields_to_embed=["title"],
        batch_size=16,
        client_options={"hedge_after": 0.5},
    )
    data = ranker.to_dict()
    assert data["init_parameters"]["api_key"] == {
        "type": "env_var",
        "env_vars": ["MY_RERANK_KEY"],
        "strict": True,
    }
    assert "sk-test" not in repr(data)
    again = RerankAsyncRanker.from_dict(data)
    assert again.to_dict() == data
    assert isinstance(again.api_key, Secret)
    pipe = pipeline(ranker)
    # Haystack 3 deserializes only allow-listed modules; the user opts in.
    loaded = Pipeline.loads(pipe.dumps(), allowed_modules=["rerank_async.integrations.haystack"])
    assert loaded.get_component("ranker").to_dict() == data

    with pytest.raises(ValueError, match="Cannot serialize token-based secret"):
        RerankAsyncRanker(api_key=Secret.from_token("sk-inline")).to_dict()


def test_bad_options_and_shared_clients_fail_clearly() -> None:
    client = RerankClient(base_url="http://127.0.0.1:9/v1/inference")
    with pytest.raises(ValueError, match="cannot be serialized"):
        RerankAsyncRanker(client=client).to_dict()
    with pytest.raises(RuntimeError, match="async"):
        RerankAsyncRanker(client=client).run(QUERY, documents(1))
    with pytest.raises(ValueError, match="either client= or client options"):
        RerankAsyncRanker(client=client, batch_size=3)
    with pytest.raises(ValueError, match="top_k"):
        RerankAsyncRanker(top_k=0)
    with pytest.raises(ValueError, match="max_concurrency"):
        RerankAsyncRanker(max_concurrency=0)
    with pytest.raises(TypeError, match="documents\\[1\\]"):
        asyncio.run(RerankAsyncRanker(client=client).run_async(QUERY, [documents(1)[0], "x"]))  # type: ignore[list-item]


def test_replace_keeps_every_other_field() -> None:
    doc = Document(content="x", meta={"a": 1}, embedding=[0.1, 0.2])
    assert dataclasses.replace(doc, score=0.5).embedding == [0.1, 0.2]
