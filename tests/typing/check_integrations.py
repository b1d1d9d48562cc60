"""Type-checked, never run: the sync client and the adapters as users write them."""

from __future__ import annotations

from haystack import Document as HaystackDocument
from haystack.utils import Secret
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle

from rerank_async import RerankClient, RerankOutcome, RerankResult, SyncRerankClient
from rerank_async.integrations.haystack import RerankAsyncRanker
from rerank_async.integrations.langchain import RerankAsyncCompressor
from rerank_async.integrations.llama_index import RerankAsyncPostprocessor


def sync_use(documents: list[str]) -> list[float]:
    with SyncRerankClient(base_url="http://127.0.0.1:8080/v1/inference", batch_size=32) as client:
        result: RerankResult = client.rerank("query", documents, top_k=3)
        with client.rerank_many([("query", documents)]) as outcomes:
            done: list[RerankOutcome] = list(outcomes)
        assert done
        return result.scores + client.score("query", documents)


async def adapters(
    client: RerankClient, docs: list[Document], nodes: list[NodeWithScore]
) -> list[HaystackDocument]:
    compressor = RerankAsyncCompressor(client=client, top_n=5)
    ranked_docs = await compressor.acompress_documents(docs, "query")
    assert ranked_docs
    postprocessor = RerankAsyncPostprocessor(client=client, top_n=2)
    ranked_nodes: list[NodeWithScore] = await postprocessor.apostprocess_nodes(
        nodes, QueryBundle("query")
    )
    assert ranked_nodes
    ranker = RerankAsyncRanker(model="m", api_key=Secret.from_env_var("KEY"), top_k=3)
    await ranker.warm_up_async()
    output = await ranker.run_async("query", [HaystackDocument(content="x")], top_k=1)
    await ranker.close_async()
    return output["documents"]
