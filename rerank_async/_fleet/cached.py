"""One client's use of a ``ScoreCache``: look up, send only the rest, merge, store.

The merge and the mapping of a failure back to the caller's indices are the
resume path's (``score_the_gaps``): cached scores are a partial result the
call already has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from .._exceptions import RerankError
from .._models import Usage
from .._partial import PartialScores
from .._resume import score_the_gaps
from .cache import ScoreCache
from .cache_keys import CacheContext

__all__ = ["CachedScoring"]


class CachedScoring:
    """A client's cache: its provider and model in every key, its own hit counts.

    Args:
        cache: The shared cache.
        provider: The wire format's name.
        model: The client's model.
    """

    def __init__(self, cache: ScoreCache, *, provider: str, model: str) -> None:
        self.cache = cache
        self._provider = provider
        self._model = model
        self.hits = 0
        self.misses = 0

    async def score(
        self,
        query: str,
        documents: list[str],
        instruction: str | None,
        score_missing: Callable[[list[str]], Awaitable[tuple[list[float], Usage]]],
    ) -> tuple[list[float], Usage]:
        """Scores of ``documents`` in order: the cache's, and ``score_missing``'s for the rest.

        What ``score_missing`` returns is stored; so are the scores a failure of it
        kept (its ``partial``), which a retry of the call then finds.

        Raises:
            RerankError: ``score_missing`` failed; ``partial`` covers every document.
            ScoreCacheError: The cache file is not ours, or is damaged.
        """
        with self.cache.in_use():
            return await self._score(query, documents, instruction, score_missing)

    async def _score(
        self,
        query: str,
        documents: list[str],
        instruction: str | None,
        score_missing: Callable[[list[str]], Awaitable[tuple[list[float], Usage]]],
    ) -> tuple[list[float], Usage]:
        context = CacheContext(self._provider, self._model, instruction, query)
        cached = self.cache.lookup(context, documents)
        hits = len(documents) - cached.count(None)
        self.hits += hits
        self.misses += len(documents) - hits
        if hits == 0:
            # A cold call, the common case of a first run: no merge to make.
            scores, usage = await self._score_storing(context, documents, score_missing)
        elif hits == len(documents):
            scores, usage = cached, Usage()  # type: ignore[assignment]  # no None left
        else:
            scores, sent = await score_the_gaps(
                documents,
                PartialScores.from_scores(cached),
                partial(self._score_storing, context, score=score_missing),
            )
            usage = sent or Usage()
        return scores, usage.model_copy(
            update={
                "documents": len(documents),
                "cache_hits": hits,
                "cache_misses": len(documents) - hits,
            }
        )

    async def _score_storing(
        self,
        context: CacheContext,
        documents: list[str],
        score: Callable[[list[str]], Awaitable[tuple[list[float], Usage]]],
    ) -> tuple[list[float], Usage]:
        """``score(documents)``, each score stored under ``context``; on a failure, those
        its ``partial`` kept."""
        try:
            scores, usage = await score(documents)
        except RerankError as error:
            if error.partial is not None:
                kept = [
                    (document, value)
                    for document, value in zip(documents, error.partial.scores, strict=True)
                    if value is not None
                ]
                self.cache.store(
                    context, [document for document, _ in kept], [value for _, value in kept]
                )
            raise
        self.cache.store(context, documents, scores)
        return scores, usage
