"""One client's use of a ``ScoreCache``: look up, send only the rest, merge, store.

The merge and the mapping of a failure back to the caller's indices are the
resume path's (``score_the_gaps``): cached scores are a partial result the
call already has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .._exceptions import RerankError
from .._models import Usage
from .._partial import PartialScores
from .._resume import score_the_gaps
from .cache import CacheContext, ScoreCache

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
        keys = CacheContext(self._provider, self._model, instruction, query).keys(documents)
        cached = self.cache.lookup(keys)
        known = PartialScores.from_scores(cached)
        missing = known.missing()
        hits = len(documents) - len(missing)
        self.hits += hits
        self.misses += len(missing)
        try:
            scores, usage = await score_the_gaps(documents, known, score_missing)
        except RerankError as error:
            if error.partial is not None:
                self._store_new(keys, missing, error.partial.scores)
            raise
        self._store_new(keys, missing, scores)
        return scores, (usage or Usage()).model_copy(
            update={"documents": len(documents), "cache_hits": hits, "cache_misses": len(missing)}
        )

    def _store_new(
        self, keys: list[bytes], missing: list[int], scores: tuple[float | None, ...] | list[float]
    ) -> None:
        new_keys = []
        new_scores = []
        for index in missing:
            score = scores[index]
            if score is not None:
                new_keys.append(keys[index])
                new_scores.append(score)
        self.cache.store(new_keys, new_scores)
