"""Resuming a failed call: send only the documents its ``partial`` has no score for.

The scoring itself is the caller's (the client's runner); this module checks the
``resume`` argument, picks the gaps, and maps the answer, or a new failure, back
into the caller's indices.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from ._exceptions import RerankError
from ._partial import PartialScores

__all__ = ["checked_resume", "score_the_gaps"]

UsageT = TypeVar("UsageT")


def checked_resume(resume: object, n_documents: int) -> PartialScores | None:
    """``resume`` if it fits a call of ``n_documents``.

    Raises:
        TypeError: It is not a ``PartialScores``.
        ValueError: It has a different number of scores.
    """
    if resume is None:
        return None
    if not isinstance(resume, PartialScores):
        raise TypeError(f"resume must be a PartialScores, not {type(resume).__name__}")
    if len(resume.scores) != n_documents:
        raise ValueError(
            f"resume has {len(resume.scores)} scores for {n_documents} documents; "
            "pass the same documents as the failed call"
        )
    return resume


async def score_the_gaps(
    documents: list[str],
    resume: PartialScores,
    score: Callable[[list[str]], Awaitable[tuple[list[float], UsageT]]],
) -> tuple[list[float], UsageT | None]:
    """Every score: ``resume``'s, and ``score``'s for the documents it lacks.

    Returns:
        The scores in input order, and what ``score`` reported (``None`` when
        nothing was missing, so nothing was sent).

    Raises:
        RerankError: ``score`` failed; its ``partial`` and ``document_range``
            are rewritten in the caller's indices (``resume``'s scores kept).
    """
    missing = resume.missing()
    if not missing:
        return [score for score in resume.scores if score is not None], None
    try:
        scores, usage = await score([documents[index] for index in missing])
    except RerankError as error:
        # The subset's position k is the caller's missing[k].
        if error.partial is not None:
            error.partial = resume.filled(missing, error.partial.scores)
        if error.document_range is not None:
            first, stop = error.document_range
            error.document_range = (missing[first], missing[stop - 1] + 1)
        raise
    complete = resume.filled(missing, scores).complete()
    if complete is None:  # pragma: no cover - every gap was just filled
        raise RuntimeError("a resumed call left a document without a score")
    return complete, usage
