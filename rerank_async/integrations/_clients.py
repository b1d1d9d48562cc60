"""The clients behind a framework adapter: the caller's, or ones it makes from options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anyio.lowlevel import RunVar

from .._client import RerankClient
from .._sync import SyncRerankClient

__all__ = ["AdapterClients", "client_options"]

# One marker object per running event loop: an httpx pool must stay on the loop that
# opened its connections, so an adapter's own client is remade when the loop changes
# (a script calling asyncio.run twice).
_LOOP_MARK: RunVar[object] = RunVar("rerank_async_integrations_loop")


def _current_loop_mark() -> object:
    try:
        return _LOOP_MARK.get()
    except LookupError:
        mark = object()
        _LOOP_MARK.set(mark)
        return mark


def client_options(**options: Any) -> dict[str, Any]:
    """The ``RerankClient`` options an adapter was given, without the ones left unset."""
    return {name: value for name, value in options.items() if value is not None}


class AdapterClients:
    """Hands an adapter the client for its async or sync path.

    With ``client=`` that client serves the async path, and the sync path raises (an
    async client belongs to its event loop). With options, the adapter owns its clients:
    a ``RerankClient`` per event loop (built at once, so bad options fail at
    construction) and, on first sync use, a ``SyncRerankClient``.

    Raises:
        TypeError: ``client`` is not a ``RerankClient``.
        ValueError: Both ``client`` and options were given, or an option is bad.
    """

    def __init__(
        self, *, owner: str, client: RerankClient | None, options: Mapping[str, Any]
    ) -> None:
        self._owner = owner
        self._options = dict(options)
        if client is not None:
            if not isinstance(client, RerankClient):
                raise TypeError(
                    f"{owner}: client must be a rerank_async.RerankClient, "
                    f"not {type(client).__name__}"
                )
            if self._options:
                raise ValueError(
                    f"{owner}: pass either client= or client options "
                    f"({', '.join(sorted(self._options))}), not both"
                )
        self._shared = client
        self._own: RerankClient | None = None if client is not None else RerankClient(**options)
        self._model = (client or self._own).model  # type: ignore[union-attr]  # one is set
        self._own_loop: object | None = None
        self._sync: SyncRerankClient | None = None

    @property
    def shared(self) -> RerankClient | None:
        """The caller's client, when one was given."""
        return self._shared

    @property
    def model(self) -> str:
        """The model the clients score with."""
        return self._model

    def async_client(self) -> RerankClient:
        """The client for the async path, on the running event loop."""
        if self._shared is not None:
            return self._shared
        mark = _current_loop_mark()
        if (
            self._own is None
            or self._own.is_closed
            or (self._own_loop is not None and self._own_loop is not mark)
        ):
            self._own = RerankClient(**self._options)
        self._own_loop = mark
        return self._own

    def sync_client(self) -> SyncRerankClient:
        """The client for the sync path (its own thread and loop).

        Raises:
            RuntimeError: The adapter was given an async ``client=``.
        """
        if self._shared is not None:
            raise RuntimeError(
                f"{self._owner} was given client=, an async RerankClient, which serves only "
                "the async path (its connections belong to its event loop); call the async "
                "method, or build the reranker from client options for sync use"
            )
        if self._sync is None or self._sync.is_closed:
            self._sync = SyncRerankClient(**self._options)
        return self._sync

    async def aclose(self) -> None:
        """Close the async client this adapter made (never a caller's)."""
        own, self._own, self._own_loop = self._own, None, None
        if own is not None:
            await own.aclose()

    def close(self) -> None:
        """Close the sync client this adapter made, stopping its thread."""
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()
