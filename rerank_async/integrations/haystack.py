"""A Haystack 3 ranker component that reranks with ``rerank_async`` (extra ``haystack``).

``RerankAsyncRanker`` is a ``@component`` whose ``run_async`` awaits
``RerankClient.rerank`` on the pipeline's loop, so ``Pipeline.run_async`` never sends it to
a worker thread (it does that for components without ``run_async``) and its batches go
out concurrently, with no cap on the number of documents. ``run`` serves
``Pipeline.run`` through a ``SyncRerankClient``.

Like Haystack's rankers it takes ``query``, ``documents`` and ``top_k`` (default 10),
embeds ``meta_fields_to_embed`` into the scored text, and returns
``{"documents": [...]}``, best first, each a ``dataclasses.replace`` copy with ``score``
set. ``warm_up_async`` / ``close_async`` (and ``warm_up`` / ``close`` for the sync path)
create and close the clients it owns; a ``client=`` is the caller's and never closed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

try:
    from haystack import Document, component, default_from_dict, default_to_dict
    from haystack.utils import Secret
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "rerank_async.integrations.haystack needs haystack-ai: "
        "pip install 'rerank-async[haystack]'",
        name=_err.name,
    ) from _err

from .._checks import is_int
from .._client import RerankClient
from .._models import RerankResult
from ._clients import AdapterClients, adapter_options

__all__ = ["RerankAsyncRanker"]


@component
class RerankAsyncRanker:
    """Ranks Haystack documents by relevance to a query with a ``RerankClient``.

    Args:
        model, base_url, provider, batch_size, max_concurrency, max_retries,
            total_timeout: ``RerankClient`` options (``None``: its defaults).
        api_key: The key as a ``Secret`` (``Secret.from_env_var(...)`` to keep it out
            of serialized pipelines); ``None`` lets the client read the provider's
            environment variable.
        top_k: Documents to return by default, best first.
        meta_fields_to_embed: Metadata fields put before the content in the scored text.
        meta_data_separator: What joins those fields and the content.
        client_options: Any other ``RerankClient`` options, by name.
        client: A shared ``RerankClient`` (instead of options), so that every ranker
            and direct call in the process share one concurrency bound; async path
            only, and a ranker holding one cannot be serialized.

    Raises:
        ValueError, TypeError: A bad option, or both ``client`` and options.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        api_key: Secret | None = None,
        base_url: str | None = None,
        provider: str | None = None,
        top_k: int = 10,
        meta_fields_to_embed: list[str] | None = None,
        meta_data_separator: str = "\n",
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        max_retries: int | None = None,
        total_timeout: float | None = None,
        client_options: dict[str, Any] | None = None,
        client: RerankClient | None = None,
    ) -> None:
        _check_top_k(top_k)
        self.model = model
        self.api_key = api_key
        self.base_url = base_url
        self.provider = provider
        self.top_k = top_k
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.meta_data_separator = meta_data_separator
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.total_timeout = total_timeout
        self.client_options = dict(client_options or {})
        options = client_options_of(self)
        self._clients = AdapterClients(owner=type(self).__name__, client=client, options=options)

    # -- lifecycle ----------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Create the sync client (its own thread); a ``client=`` needs none."""
        if self._clients.shared is None:
            self._clients.sync_client()

    async def warm_up_async(self) -> None:
        """Bind the async client to the running loop, the one ``run_async`` will use."""
        self._clients.async_client()

    def close(self) -> None:
        """Close the sync client, stopping its thread."""
        self._clients.close()

    async def close_async(self) -> None:
        """Close the async client this ranker made (never a ``client=``)."""
        await self._clients.aclose()

    # -- serialization ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Serialize the ranker; the key stays a ``Secret`` (an env-var reference).

        Raises:
            ValueError: The ranker holds a ``client=``, which cannot be serialized.
        """
        if self._clients.shared is not None:
            raise ValueError(
                "RerankAsyncRanker built with client= cannot be serialized; "
                "build it from client options instead"
            )
        return default_to_dict(
            self,
            model=self.model,
            api_key=self.api_key,
            base_url=self.base_url,
            provider=self.provider,
            top_k=self.top_k,
            meta_fields_to_embed=self.meta_fields_to_embed,
            meta_data_separator=self.meta_data_separator,
            batch_size=self.batch_size,
            max_concurrency=self.max_concurrency,
            max_retries=self.max_retries,
            total_timeout=self.total_timeout,
            client_options=self.client_options,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankAsyncRanker:
        """Rebuild a ranker from ``to_dict``'s output."""
        return default_from_dict(cls, data)

    # -- running ------------------------------------------------------------------------------

    @component.output_types(documents=list[Document])
    def run(
        self, query: str, documents: list[Document], top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Rank ``documents`` by relevance to ``query``, blocking.

        Args:
            query: The query.
            documents: The documents to rank.
            top_k: Documents to return; the ranker's ``top_k`` when ``None``.

        Returns:
            ``{"documents": [...]}``: the best ``top_k``, best first, with ``score`` set.

        Raises:
            ValueError: ``top_k`` < 1.
            RuntimeError: The ranker holds an async ``client=``; use ``run_async``.
            RerankError: The reranking call failed (after its retries).
        """
        cut = self._cut(top_k)
        if not documents:
            return {"documents": []}
        result = self._clients.sync_client().rerank(query, self._texts(documents), top_k=cut)
        return {"documents": _ranked(documents, result)}

    @component.output_types(documents=list[Document])
    async def run_async(
        self, query: str, documents: list[Document], top_k: int | None = None
    ) -> dict[str, list[Document]]:
        """Rank ``documents`` by relevance to ``query`` on the running loop; see ``run``."""
        cut = self._cut(top_k)
        if not documents:
            return {"documents": []}
        client = self._clients.async_client()
        result = await client.rerank(query, self._texts(documents), top_k=cut)
        return {"documents": _ranked(documents, result)}

    def _cut(self, top_k: int | None) -> int:
        cut = self.top_k if top_k is None else top_k
        _check_top_k(cut)
        return cut

    def _texts(self, documents: list[Document]) -> list[str]:
        texts = []
        for index, document in enumerate(documents):
            if not isinstance(document, Document):
                raise TypeError(
                    f"documents[{index}] must be a haystack Document, not {type(document).__name__}"
                )
            fields = [
                str(document.meta[key])
                for key in self.meta_fields_to_embed
                if document.meta.get(key) is not None
            ]
            texts.append(self.meta_data_separator.join([*fields, document.content or ""]))
        return texts


def client_options_of(ranker: RerankAsyncRanker) -> dict[str, Any]:
    """The ``RerankClient`` options a ranker's settings stand for."""
    return adapter_options(
        ranker, api_key=None if ranker.api_key is None else ranker.api_key.resolve_value()
    )


def _check_top_k(top_k: object) -> None:
    if not is_int(top_k):
        raise TypeError(f"top_k must be an int, not {type(top_k).__name__}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")


def _ranked(documents: list[Document], result: RerankResult) -> list[Document]:
    return [
        dataclasses.replace(documents[ranked.index], score=ranked.score)
        for ranked in result.results
    ]
