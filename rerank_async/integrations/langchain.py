"""A LangChain document compressor that reranks with ``rerank_async`` (extra ``langchain``).

``RerankAsyncCompressor`` is a ``BaseDocumentCompressor``: put it in a
``ContextualCompressionRetriever`` or call it in a chain. Its ``acompress_documents`` is
natively async: it awaits ``RerankClient.rerank`` on the caller's loop, so the batches go
out concurrently and LangChain's executor is never used (the base class runs
``compress_documents`` in a thread). ``compress_documents`` serves sync code through a
``SyncRerankClient``.

Like LangChain's ``CohereRerank``, it returns copies of the best ``top_n`` documents
(default 3), best first, each with ``metadata["relevance_score"]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import BaseDocumentCompressor, Document
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "rerank_async.integrations.langchain needs langchain-core: "
        "pip install 'rerank-async[langchain]'",
        name=_err.name,
    ) from _err
from pydantic import ConfigDict, PrivateAttr, SecretStr

from .._checks import is_int
from .._client import RerankClient
from .._models import RerankResult
from ._clients import AdapterClients, adapter_options

__all__ = ["RerankAsyncCompressor"]

SCORE_KEY = "relevance_score"


class RerankAsyncCompressor(BaseDocumentCompressor):
    """Reranks LangChain documents with a ``RerankClient``.

    Pass ``client=`` to share one client, and so one concurrency bound, with the rest of
    the process (the async path only); or the client's options, and the compressor
    makes its own clients (call ``aclose()`` / ``close()`` when done with it).

    Attributes:
        top_n: How many documents to return, best first; ``None`` returns all.
        client: A shared ``RerankClient``.
        model, api_key, base_url, provider, batch_size, max_concurrency,
            max_retries, total_timeout: ``RerankClient`` options (unset: its defaults).
        client_options: Any other ``RerankClient`` options, by name.

    Raises:
        ValueError, TypeError: At construction, for a bad option or both ``client``
            and options.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    top_n: int | None = 3
    client: RerankClient | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    provider: str | None = None
    batch_size: int | None = None
    max_concurrency: int | None = None
    max_retries: int | None = None
    total_timeout: float | None = None
    client_options: dict[str, Any] | None = None

    _clients: AdapterClients = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        if self.top_n is not None and (not is_int(self.top_n) or self.top_n < 1):
            raise ValueError(f"top_n must be >= 1 or None, got {self.top_n}")
        options = adapter_options(
            self, api_key=None if self.api_key is None else self.api_key.get_secret_value()
        )
        self._clients = AdapterClients(
            owner=type(self).__name__, client=self.client, options=options
        )

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query`` on the running event loop.

        Returns:
            Copies of the best ``top_n`` documents, best first, with
            ``metadata["relevance_score"]``.

        Raises:
            RerankError: The reranking call failed (after its retries).
        """
        if not documents:
            return []
        texts = _texts(documents)
        result = await self._clients.async_client().rerank(query, texts, top_k=self.top_n)
        return _ranked(documents, result)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The blocking form of ``acompress_documents``, through a ``SyncRerankClient``.

        Raises:
            RuntimeError: The compressor was given an async ``client=``.
        """
        if not documents:
            return []
        texts = _texts(documents)
        result = self._clients.sync_client().rerank(query, texts, top_k=self.top_n)
        return _ranked(documents, result)

    async def aclose(self) -> None:
        """Close the async client this compressor made (never a ``client=``)."""
        await self._clients.aclose()

    def close(self) -> None:
        """Close the sync client this compressor made, stopping its thread."""
        self._clients.close()


def _texts(documents: Sequence[Document]) -> list[str]:
    texts = []
    for index, document in enumerate(documents):
        if not isinstance(document, Document):
            raise TypeError(
                f"documents[{index}] must be a langchain_core Document, "
                f"not {type(document).__name__}"
            )
        texts.append(document.page_content)
    return texts


def _ranked(documents: Sequence[Document], result: RerankResult) -> list[Document]:
    return [
        documents[ranked.index].model_copy(
            update={"metadata": {**documents[ranked.index].metadata, SCORE_KEY: ranked.score}}
        )
        for ranked in result.results
    ]
