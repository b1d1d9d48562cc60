"""A fleet, not an endpoint: replicas of one model, fallbacks, and a score cache.

One entry point, ``Fleet.open`` (below), which the client calls once:

    replicas.py   ReplicaSet: each request to the least busy healthy replica, each
                  replica its own adaptive limit, outlier ejection and probing
    fallback.py   FallbackChain: a call that failed for good re-run whole elsewhere
    cache.py      ScoreCache (public): an in-memory LRU or a SQLite file, by content hash
    cache_keys.py CacheContext: the keys of one call's scores
    cache_file.py ScoreFile: the SQLite file, its schema, its checks
    cached.py     CachedScoring: one client's lookups, merge and stores
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import anyio

from .._config import ResolvedConfig
from .._constants import LOGGER_NAME
from .._models import ClientStatistics, RequestRecord
from .._transports import BatchSender, OpenTransport, open_transport
from .cache import ScoreCache, ScoreCacheError
from .cached import CachedScoring
from .fallback import FallbackChain, FallbackClient, is_down
from .replicas import EjectionPolicy, ReplicaSet

__all__ = [
    "CachedScoring",
    "EjectionPolicy",
    "FallbackChain",
    "FallbackClient",
    "Fleet",
    "FleetTransport",
    "ReplicaSet",
    "ScoreCache",
    "ScoreCacheError",
    "is_down",
    "open_fleet",
]

logger = logging.getLogger(LOGGER_NAME)


class FleetTransport:
    """``OpenTransport``'s shape over one engine per replica, behind one ``ReplicaSet``."""

    def __init__(self, opened: list[OpenTransport], replicas: ReplicaSet) -> None:
        self._opened = opened
        self.replicas = replicas

    @property
    def sender(self) -> BatchSender:
        """The replica set: every attempt goes through it."""
        return self.replicas

    @property
    def engine_name(self) -> str:
        """The engine of the replicas (they all choose alike)."""
        return self._opened[0].engine_name

    def observed(self, on_request: Callable[[RequestRecord], None] | None) -> BatchSender:
        """The replica set, each replica's engine observed when ``on_request`` is set."""
        opened = {id(transport.engine): transport for transport in self._opened}
        self.replicas.wrap_senders(lambda engine: opened[id(engine)].observed(on_request))
        return self.replicas


def open_fleet(config: ResolvedConfig, *, watch_health: bool) -> OpenTransport | FleetTransport:
    """The transport a client sends through: one engine, or a ``ReplicaSet`` of several.

    Args:
        config: The client's resolved options; ``options.replicas`` lists the URLs.
        watch_health: Put even a single endpoint behind a ``ReplicaSet``, so that a
            fallback knows when it is down.
    """
    options = config.options
    urls = options.replicas or ((options.base_url,) if watch_health else ())
    if not urls:
        return open_transport(config)
    opened = [
        open_transport(
            dataclasses.replace(
                config,
                options=dataclasses.replace(
                    options, base_url=url, url=config.provider.url(url, options.model)
                ),
            )
        )
        for url in urls
    ]
    replicas = ReplicaSet(
        [(url, transport.engine) for url, transport in zip(urls, opened, strict=True)],
        max_concurrency=options.max_concurrency,
        # One endpoint keeps the client-wide adaptive limit (ClientOptions.load_settings).
        adaptive=options.limits.adaptive_concurrency and bool(options.replicas),
    )
    return FleetTransport(opened, replicas)


class Fleet:
    """What a client has besides its runner: its transport (one engine or replicas),
    its cache, its fallbacks; and their part of ``statistics()``.

    Build it with ``Fleet.open``.
    """

    def __init__(
        self,
        transport: OpenTransport | FleetTransport,
        *,
        cache: CachedScoring | None,
        fallback: FallbackChain | None,
    ) -> None:
        self.transport = transport
        self.cache = cache
        self.fallback = fallback

    @classmethod
    def open(
        cls,
        config: ResolvedConfig,
        *,
        fallbacks: Sequence[FallbackClient],
        cache: ScoreCache | None,
    ) -> Fleet:
        """The client's fleet: a fallback needs to know when the primary is down, so a
        client with one watches even a single endpoint's health.

        Raises:
            TypeError: ``cache`` is not a ``ScoreCache``.
        """
        if cache is not None and not isinstance(cache, ScoreCache):
            raise TypeError(f"cache must be a ScoreCache or None, not {type(cache).__name__}")
        transport = open_fleet(config, watch_health=bool(fallbacks))
        scoring = (
            None
            if cache is None
            else CachedScoring(cache, provider=config.provider.name, model=config.options.model)
        )
        fleet = cls(transport, cache=scoring, fallback=None)
        if fallbacks:
            fleet.fallback = FallbackChain(
                fallbacks, primary_down=fleet.is_down, wait_primary_down=fleet.wait_until_down
            )
        return fleet

    async def aclose(self) -> None:
        """Close the connections, then write the cache's held-back scores to its file.

        A cache file that cannot be written is logged, not raised: closing must not fail.
        """
        try:
            await self.transport.sender.aclose()
        finally:
            if self.cache is not None:
                try:
                    self.cache.cache.flush()
                except ScoreCacheError as error:
                    logger.warning("%s", error)

    async def wait_until_down(self) -> None:
        """Return once every endpoint is ejected; never for a single unwatched endpoint."""
        transport = self.transport
        if isinstance(transport, FleetTransport):
            await transport.replicas.wait_until_down()
        else:
            await anyio.sleep_forever()

    def is_down(self) -> bool:
        """Whether every endpoint of the client is ejected (a fallback skips it then)."""
        transport = self.transport
        return isinstance(transport, FleetTransport) and transport.replicas.all_ejected

    def statistics(self, statistics: ClientStatistics) -> ClientStatistics:
        """``statistics`` with the replicas' states, the cache's counts, the fallbacks."""
        transport = self.transport
        cache = self.cache
        fallback = self.fallback
        if not isinstance(transport, FleetTransport) and cache is None and fallback is None:
            return statistics
        return dataclasses.replace(
            statistics,
            replicas=transport.replicas.statistics()
            if isinstance(transport, FleetTransport)
            else (),
            cache_hits=0 if cache is None else cache.hits,
            cache_misses=0 if cache is None else cache.misses,
            fallbacks=0 if fallback is None else fallback.calls,
        )
