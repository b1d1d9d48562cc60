"""What a failed call had already scored, and how a retry of the rest fits back in.

A leaf: it imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PartialScores", "missing_ranges"]


def missing_ranges(scores: Sequence[float | None]) -> list[tuple[int, int]]:
    """``(start, stop)`` runs of ``None`` in ``scores``, in order."""
    ranges: list[tuple[int, int]] = []
    start = -1
    for index, score in enumerate(scores):
        if score is None:
            if start < 0:
                start = index
        elif start >= 0:
            ranges.append((start, index))
            start = -1
    if start >= 0:
        ranges.append((start, len(scores)))
    return ranges


@dataclass(frozen=True, slots=True)
class PartialScores:
    """The scores a call obtained before it failed, in input order.

    Carried by a failed call's error as ``error.partial``. Pass it back as
    ``client.rerank(query, documents, resume=error.partial)`` to send only the
    documents still missing, or retry ``failed_ranges`` yourself.

    Attributes:
        scores: ``scores[i]`` for ``documents[i]``, or ``None`` where the call
            has no score (its batch failed, or was stopped by the failure).
        failed_ranges: ``(start, stop)`` runs of documents with no score.
    """

    scores: tuple[float | None, ...]
    failed_ranges: tuple[tuple[int, int], ...]

    @classmethod
    def from_scores(cls, scores: Sequence[float | None]) -> PartialScores:
        """The partial result for ``scores``, with ``failed_ranges`` derived from it."""
        return cls(tuple(scores), tuple(missing_ranges(scores)))

    @property
    def documents_scored(self) -> int:
        """How many documents have their score."""
        return sum(1 for score in self.scores if score is not None)

    def missing(self) -> list[int]:
        """Indices of the documents with no score, ascending."""
        return [index for index, score in enumerate(self.scores) if score is None]

    def filled(self, positions: Sequence[int], scores: Sequence[float | None]) -> PartialScores:
        """A copy with ``scores[k]`` put at ``positions[k]`` (a ``None`` leaves the gap).

        Raises:
            ValueError: ``positions`` and ``scores`` differ in length, or a
                position already holds a score.
        """
        if len(positions) != len(scores):
            raise ValueError(f"{len(positions)} positions for {len(scores)} scores")
        merged = list(self.scores)
        for position, score in zip(positions, scores, strict=True):
            if merged[position] is not None:
                raise ValueError(f"document {position} already has a score")
            merged[position] = score
        return PartialScores.from_scores(merged)

    def complete(self) -> list[float] | None:
        """Every score, when none is missing; otherwise ``None``."""
        if any(score is None for score in self.scores):
            return None
        return list(self.scores)  # type: ignore[arg-type]  # no None left, checked above
