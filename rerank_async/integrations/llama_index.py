"""A LlamaIndex node postprocessor that reranks with ``rerank_async`` (extra ``llama-index``).

``RerankAsyncPostprocessor`` is a ``BaseNodePostprocessor``: pass it in a query engine's
``node_postprocessors``. Its ``_apostprocess_nodes`` is natively async: it awaits
``RerankClient.rerank`` on the caller's loop, so the batches go out concurrently and no
thread is used (the base class runs the sync path in ``asyncio.to_thread``).

Like LlamaIndex's own rerankers it returns the best ``top_n`` nodes (default 2) as
``NodeWithScore`` carrying the reranker's score, reads each node's text with
``MetadataMode.EMBED``, keeps the retriever's score in ``metadata["retrieval_score"]``
when ``keep_retrieval_score`` is set, and emits ``ReRankStartEvent`` / ``ReRankEndEvent``
through the instrumentation dispatcher and a ``RERANKING`` callback event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, SecretStr
    from llama_index.core.callbacks import CBEventType, EventPayload

    # Re-exported there without __all__; the module LlamaIndex's own rerankers import it from.
    from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "rerank_async.integrations.llama_index needs llama-index-core: "
        "pip install 'rerank-async[llama-index]'",
        name=_err.name,
    ) from _err

from .._checks import is_int
from .._client import RerankClient
from .._models import RerankResult
from ._clients import AdapterClients, adapter_options

__all__ = ["RerankAsyncPostprocessor"]

dispatcher = get_dispatcher(__name__)


class RerankAsyncPostprocessor(BaseNodePostprocessor):
    """Reranks LlamaIndex nodes with a ``RerankClient``.

    Pass ``client=`` to share one client, and so one concurrency bound, with the rest of
    the process (the async path only); or the client's options, and the postprocessor
    makes its own clients (call ``aclose()`` / ``close()`` when done with it).

    Raises:
        ValueError, TypeError: At construction, for a bad option or both ``client``
            and options.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    top_n: int = Field(default=2, description="Number of nodes to return, best first.")
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the retriever's score in metadata['retrieval_score']."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Which metadata goes into the scored text."
    )
    client: RerankClient | None = Field(default=None, exclude=True)
    model: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True)
    base_url: str | None = None
    provider: str | None = None
    batch_size: int | None = None
    max_concurrency: int | None = None
    max_retries: int | None = None
    total_timeout: float | None = None
    client_options: dict[str, Any] | None = Field(default=None, exclude=True)

    _clients: AdapterClients = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        if not is_int(self.top_n) or self.top_n < 1:
            raise ValueError(f"top_n must be >= 1, got {self.top_n}")
        options = adapter_options(
            self, api_key=None if self.api_key is None else self.api_key.get_secret_value()
        )
        self._clients = AdapterClients(
            owner=type(self).__name__, client=self.client, options=options
        )

    @classmethod
    def class_name(cls) -> str:
        return "RerankAsyncPostprocessor"

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = _query(query_bundle)
        if not nodes:
            return []
        texts = [node.node.get_content(metadata_mode=self.metadata_mode) for node in nodes]
        with _rerank_events(self, nodes, query_bundle, query) as finish:
            client = self._clients.async_client()
            result = await client.rerank(query, texts, top_k=self.top_n)
            return finish(self._ranked(nodes, result))

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query = _query(query_bundle)
        if not nodes:
            return []
        texts = [node.node.get_content(metadata_mode=self.metadata_mode) for node in nodes]
        with _rerank_events(self, nodes, query_bundle, query) as finish:
            result = self._clients.sync_client().rerank(query, texts, top_k=self.top_n)
            return finish(self._ranked(nodes, result))

    def _ranked(self, nodes: list[NodeWithScore], result: RerankResult) -> list[NodeWithScore]:
        ranked = []
        for item in result.results:
            original = nodes[item.index]
            node = original.node
            if self.keep_retrieval_score:
                node = node.model_copy(
                    update={"metadata": {**node.metadata, "retrieval_score": original.score}}
                )
            ranked.append(NodeWithScore(node=node, score=item.score))
        return ranked

    async def aclose(self) -> None:
        """Close the async client this postprocessor made (never a ``client=``)."""
        await self._clients.aclose()

    def close(self) -> None:
        """Close the sync client this postprocessor made, stopping its thread."""
        self._clients.close()


@contextmanager
def _rerank_events(
    owner: RerankAsyncPostprocessor,
    nodes: list[NodeWithScore],
    query_bundle: QueryBundle | None,
    query: str,
) -> Iterator[Callable[[list[NodeWithScore]], list[NodeWithScore]]]:
    """The framework's events around one rerank: dispatcher start/end, RERANKING callback.

    Yields the function that records the ranked nodes (end events) and returns them.
    """
    model = owner._clients.model
    dispatcher.event(
        ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=owner.top_n, model_name=model)
    )
    payload: dict[str, Any] = {
        EventPayload.NODES: nodes,
        EventPayload.MODEL_NAME: model,
        EventPayload.QUERY_STR: query,
        EventPayload.TOP_K: owner.top_n,
    }
    with owner.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:

        def finish(ranked: list[NodeWithScore]) -> list[NodeWithScore]:
            event.on_end(payload={EventPayload.NODES: ranked})
            dispatcher.event(ReRankEndEvent(nodes=ranked))
            return ranked

        yield finish


def _query(query_bundle: QueryBundle | None) -> str:
    if query_bundle is None:
        raise ValueError("RerankAsyncPostprocessor needs a query: pass query_bundle or query_str")
    return query_bundle.query_str
