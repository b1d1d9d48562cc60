"""The LangChain compressor against real langchain-core, langchain-classic and server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from pydantic import SecretStr

from rerank_async import Limits, RerankClient, SyncRerankClient
from rerank_async.integrations.langchain import RerankAsyncCompressor
from rerank_async.server import RunningServer

from .conftest import QUERY, ForbiddenExecutor, corpus

pytestmark = pytest.mark.integration


class ListRetriever(BaseRetriever):
    """Returns the same documents for every query (a vector store stand-in)."""

    documents: list[Document]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.documents)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.documents)


def documents(n: int) -> list[Document]:
    return [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(corpus(n))]


async def test_async_retriever_path_matches_a_direct_call_without_the_thread_pool(
    local_server: RunningServer, no_thread_pool: ForbiddenExecutor
) -> None:
    docs = documents(300)
    texts = [d.page_content for d in docs]
    async with RerankClient(
        base_url=local_server.base_url, batch_size=16, max_concurrency=8
    ) as client:
        direct = await client.rerank(QUERY, texts, top_k=5)
        local_server.reset_stats()
        compressor = RerankAsyncCompressor(client=client, top_n=5)
        retriever = ContextualCompressionRetriever(
            base_compressor=compressor, base_retriever=ListRetriever(documents=docs)
        )
        ranked = await retriever.ainvoke(QUERY)

    assert local_server.stats()["requests"] == direct.usage.requests
    assert [d.metadata["n"] for d in ranked] == [r.index for r in direct.results]
    assert [d.metadata["relevance_score"] for d in ranked] == [r.score for r in direct.results]
    assert all(d.page_content == texts[d.metadata["n"]] for d in ranked)
    # Copies: the retriever's documents are left as they were.
    assert all("relevance_score" not in d.metadata for d in docs)


async def test_the_tripwire_catches_langchains_default_executor_path(
    local_server: RunningServer,
) -> None:
    # The default acompress_documents runs the sync one in the loop's executor: the
    # ForbiddenExecutor must see that (else the test above would prove nothing).
    class SyncOnly(BaseDocumentCompressor):
        def compress_documents(
            self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
        ) -> Sequence[Document]:
            return documents

    executor = ForbiddenExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    with pytest.raises(AssertionError, match="thread pool was used"):
        await SyncOnly().acompress_documents(documents(2), QUERY)
    assert executor.submitted


async def test_top_n_defaults_to_three_and_none_keeps_all(local_server: RunningServer) -> None:
    docs = documents(10)
    async with RerankClient(base_url=local_server.base_url) as client:
        three = await RerankAsyncCompressor(client=client).acompress_documents(docs, QUERY)
        every = await RerankAsyncCompressor(client=client, top_n=None).acompress_documents(
            docs, QUERY
        )
        direct = await client.rerank(QUERY, [d.page_content for d in docs])
    assert len(three) == 3
    assert sorted(d.metadata["n"] for d in every) == list(range(10))
    scores = [d.metadata["relevance_score"] for d in every]
    assert scores == sorted(scores, reverse=True)
    assert {d.metadata["n"]: d.metadata["relevance_score"] for d in every} == dict(
        enumerate(direct.scores)
    )
    assert await RerankAsyncCompressor(client=client).acompress_documents([], QUERY) == []


async def test_it_runs_in_a_runnable_chain(
    local_server: RunningServer, no_thread_pool: ForbiddenExecutor
) -> None:
    docs = documents(40)
    async with RerankClient(base_url=local_server.base_url, batch_size=8) as client:
        compressor = RerankAsyncCompressor(client=client, top_n=2)

        async def rerank(query: str) -> Sequence[Document]:
            return await compressor.acompress_documents(docs, query)

        async def positions(ranked: Sequence[Document]) -> list[int]:
            return [d.metadata["n"] for d in ranked]

        # Every step async: a sync RunnableLambda would itself run in the executor.
        chain = RunnableLambda(rerank) | RunnableLambda(positions)
        best = await chain.ainvoke(QUERY)
        direct = await client.rerank(QUERY, [d.page_content for d in docs], top_k=2)
    assert best == [r.index for r in direct.results]


async def test_adapters_and_direct_calls_share_one_bound(local_server: RunningServer) -> None:
    docs = documents(64)
    async with RerankClient(
        base_url=local_server.base_url,
        batch_size=4,
        max_concurrency=3,
        limits=Limits(min_batch_size=4),
    ) as client:
        compressor = RerankAsyncCompressor(client=client)
        local_server.reset_stats()
        async with anyio.create_task_group() as group:
            for _ in range(3):
                group.start_soon(compressor.acompress_documents, docs, QUERY)
                group.start_soon(client.rerank, QUERY, [d.page_content for d in docs])
    stats = local_server.stats()
    assert stats["requests"] == 6 * 16
    assert stats["max_in_flight"] <= 3


def test_sync_path_from_options_in_a_retriever(local_server: RunningServer) -> None:
    docs = documents(20)
    compressor = RerankAsyncCompressor(
        base_url=local_server.base_url, api_key=SecretStr("unused"), batch_size=4, top_n=4
    )
    try:
        retriever = ContextualCompressionRetriever(
            base_compressor=compressor, base_retriever=ListRetriever(documents=docs)
        )
        ranked = retriever.invoke(QUERY)
    finally:
        compressor.close()
    with SyncRerankClient(base_url=local_server.base_url) as direct:
        expected = direct.rerank(QUERY, [d.page_content for d in docs], top_k=4)
    assert [d.metadata["n"] for d in ranked] == [r.index for r in expected.results]


def test_own_client_is_remade_for_a_new_event_loop(local_server: RunningServer) -> None:
    # A script that calls asyncio.run twice: each run gets a client on its own loop
    # (connections never cross loops), closed by aclose() at the end of the run.
    docs = documents(12)
    compressor = RerankAsyncCompressor(base_url=local_server.base_url, batch_size=4)

    async def once() -> list[int]:
        try:
            ranked = await compressor.acompress_documents(docs, QUERY)
            return [d.metadata["n"] for d in ranked]
        finally:
            await compressor.aclose()

    first = asyncio.run(once())
    local_server.reset_stats()
    second = asyncio.run(once())
    assert first == second
    assert local_server.stats()["requests"] == 3


async def test_sync_path_with_an_async_client_says_what_to_do(
    local_server: RunningServer,
) -> None:
    async with RerankClient(base_url=local_server.base_url) as client:
        compressor = RerankAsyncCompressor(client=client)
        with pytest.raises(RuntimeError, match="call the async method"):
            compressor.compress_documents(documents(2), QUERY)


def test_bad_construction_fails_before_any_request() -> None:
    client = RerankClient(base_url="http://127.0.0.1:9/v1/inference")
    with pytest.raises(ValueError, match="either client= or client options"):
        RerankAsyncCompressor(client=client, batch_size=4)
    with pytest.raises(ValueError, match="top_n"):
        RerankAsyncCompressor(client=client, top_n=0)
    with pytest.raises(ValueError, match="batch_size"):
        RerankAsyncCompressor(base_url="http://127.0.0.1:9/v1/inference", batch_size=0)
    with pytest.raises(ValueError, match="client"):
        RerankAsyncCompressor(client="not a client")  # type: ignore[arg-type]
