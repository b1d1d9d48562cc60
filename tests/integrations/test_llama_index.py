"""The LlamaIndex postprocessor against the real llama-index-core and a real server."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers.no_text import NoText
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from rerank_async import RerankClient
from rerank_async.integrations.llama_index import RerankAsyncPostprocessor
from rerank_async.server import RunningServer

from .conftest import QUERY, ForbiddenExecutor, corpus

pytestmark = pytest.mark.integration


class ListRetriever(BaseRetriever):
    """Returns the same nodes for every query, on both paths."""

    def __init__(self, nodes: list[NodeWithScore]) -> None:
        super().__init__()
        self._nodes = nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self._nodes)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return list(self._nodes)


class Recorder(BaseEventHandler):
    events: list[BaseEvent]

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.events.append(event)


def nodes(n: int) -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(text=text, id_=f"node-{i}"), score=1.0 - i / n)
        for i, text in enumerate(corpus(n))
    ]


def engine(postprocessor: RerankAsyncPostprocessor, found: list[NodeWithScore]) -> Any:
    # NoText: the engine retrieves and postprocesses, and no LLM is ever called. (Built
    # directly: get_response_synthesizer drops llm= for NO_TEXT and resolves OpenAI.)
    synthesizer = NoText(llm=MockLLM())
    return RetrieverQueryEngine(
        retriever=ListRetriever(found),
        response_synthesizer=synthesizer,
        node_postprocessors=[postprocessor],
    )


async def test_query_engine_async_path_matches_a_direct_call_without_the_thread_pool(
    local_server: RunningServer, no_thread_pool: ForbiddenExecutor
) -> None:
    found = nodes(300)
    recorder = Recorder(events=[])
    get_dispatcher().add_event_handler(recorder)
    try:
        async with RerankClient(
            base_url=local_server.base_url, batch_size=16, max_concurrency=8
        ) as client:
            direct = await client.rerank(QUERY, [n.node.get_content() for n in found], top_k=4)
            local_server.reset_stats()
            postprocessor = RerankAsyncPostprocessor(client=client, top_n=4)
            response = await engine(postprocessor, found).aquery(QUERY)
    finally:
        get_dispatcher().event_handlers.remove(recorder)

    assert local_server.stats()["requests"] == direct.usage.requests
    ranked = response.source_nodes
    assert [n.node.node_id for n in ranked] == [f"node-{r.index}" for r in direct.results]
    assert [n.score for n in ranked] == [r.score for r in direct.results]
    starts = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    ends = [e for e in recorder.events if isinstance(e, ReRankEndEvent)]
    assert len(starts) == len(ends) == 1
    assert starts[0].top_n == 4
    assert starts[0].model_name == client.model
    assert len(starts[0].nodes) == 300
    assert [n.node.node_id for n in ends[0].nodes] == [n.node.node_id for n in ranked]


async def test_the_tripwire_catches_llama_index_default_to_thread(
    local_server: RunningServer,
) -> None:
    import asyncio

    from llama_index.core.postprocessor.types import BaseNodePostprocessor

    class SyncOnly(BaseNodePostprocessor):
        def _postprocess_nodes(
            self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
        ) -> list[NodeWithScore]:
            return nodes

    executor = ForbiddenExecutor()
    asyncio.get_running_loop().set_default_executor(executor)
    with pytest.raises(AssertionError, match="thread pool was used"):
        await SyncOnly().apostprocess_nodes(nodes(2), query_str=QUERY)


async def test_defaults_scores_and_retrieval_score(local_server: RunningServer) -> None:
    found = nodes(10)
    async with RerankClient(base_url=local_server.base_url) as client:
        default = await RerankAsyncPostprocessor(client=client).apostprocess_nodes(
            found, query_str=QUERY
        )
        kept = await RerankAsyncPostprocessor(
            client=client, top_n=10, keep_retrieval_score=True
        ).apostprocess_nodes(found, query_str=QUERY)
        direct = await client.rerank(QUERY, [n.node.get_content() for n in found])
    assert len(default) == 2  # LlamaIndex's rerankers default to top_n=2
    by_id = {n.node.node_id: n for n in kept}
    for i, original in enumerate(found):
        assert by_id[f"node-{i}"].score == direct.scores[i]
        assert by_id[f"node-{i}"].node.metadata["retrieval_score"] == original.score
        assert "retrieval_score" not in original.node.metadata  # the input is left alone
    assert (
        await RerankAsyncPostprocessor(client=client).apostprocess_nodes([], query_str=QUERY) == []
    )


def test_sync_query_engine_from_options(local_server: RunningServer) -> None:
    found = nodes(20)
    postprocessor = RerankAsyncPostprocessor(base_url=local_server.base_url, batch_size=4)
    try:
        response = engine(postprocessor, found).query(QUERY)
        direct = postprocessor.postprocess_nodes(found, query_str=QUERY)
    finally:
        postprocessor.close()
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in direct]
    assert len(direct) == 2


async def test_missing_query_and_bad_options_fail_clearly(local_server: RunningServer) -> None:
    async with RerankClient(base_url=local_server.base_url) as client:
        postprocessor = RerankAsyncPostprocessor(client=client)
        with pytest.raises(ValueError, match="needs a query"):
            await postprocessor.apostprocess_nodes(nodes(2))
        with pytest.raises(RuntimeError, match="async"):
            postprocessor.postprocess_nodes(nodes(2), query_str=QUERY)
        with pytest.raises(ValueError, match="top_n"):
            RerankAsyncPostprocessor(client=client, top_n=0)
        with pytest.raises(ValueError, match="either client= or client options"):
            RerankAsyncPostprocessor(client=client, model="m")
