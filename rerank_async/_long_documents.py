"""Documents longer than a model reads: cut each one, or score overlapping windows of it.

``LongDocuments`` is the public option; ``LongDocumentPolicy`` is it resolved against a
provider (its per-document cap and token estimate). The pure part splits texts at word
boundaries by the provider's estimate and merges window scores back, one score per
input document in input order: the best window's (SiliconFlow's ``max_chunks_per_doc``
scores a document the same way, server-side).

Imports only ``_partial`` (a leaf).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, TypeVar

from ._partial import PartialScores

__all__ = [
    "DocumentWindows",
    "LongDocumentPolicy",
    "LongDocuments",
    "LongDocumentsMode",
    "window_spans",
    "windows",
]

LongDocumentsMode: TypeAlias = Literal["truncate", "chunk"]
Estimate: TypeAlias = Callable[[str], int]
UsageT = TypeVar("UsageT")

# Without overlap_tokens, windows share an eighth of their length: a passage cut at a
# window's edge is still whole in the next one.
_DEFAULT_OVERLAP_SHARE: Final = 8
_WORD: Final = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class LongDocuments:
    """What to do with documents longer than ``max_tokens``.

    Args:
        max_tokens: The longest document sent, by the provider's token estimate;
            ``None`` for the provider's documented per-document cap.
        mode: ``"truncate"`` cuts each document to ``max_tokens`` (with the
            provider's own option where it has one, e.g. Cohere v2's
            ``max_tokens_per_doc``); ``"chunk"`` scores overlapping windows that
            together cover the document, and the document gets its best window's score.
        overlap_tokens: Tokens adjacent windows share (``"chunk"`` only);
            ``None`` for an eighth of ``max_tokens``.

    Raises:
        ValueError: A value out of range; the message names it.
    """

    max_tokens: int | None = None
    mode: LongDocumentsMode = "truncate"
    overlap_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("truncate", "chunk"):
            raise ValueError(f"mode must be 'truncate' or 'chunk', not {self.mode!r}")
        for name in ("max_tokens", "overlap_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.overlap_tokens is not None:
            if self.overlap_tokens < 0:
                raise ValueError(f"overlap_tokens must be >= 0, got {self.overlap_tokens}")
            if self.max_tokens is not None and self.overlap_tokens >= self.max_tokens:
                raise ValueError(
                    f"overlap_tokens ({self.overlap_tokens}) must be less than "
                    f"max_tokens ({self.max_tokens})"
                )

    def resolve(self, *, cap: int | None, estimate: Estimate) -> LongDocumentPolicy:
        """This option for one provider: its cap when ``max_tokens`` is unset.

        Raises:
            ValueError: Neither ``max_tokens`` nor the provider's cap is known.
        """
        max_tokens = self.max_tokens if self.max_tokens is not None else cap
        if max_tokens is None:
            raise ValueError(
                "long_documents needs max_tokens: the provider documents no per-document cap"
            )
        overlap = self.overlap_tokens
        if overlap is None:
            overlap = max_tokens // _DEFAULT_OVERLAP_SHARE
        return LongDocumentPolicy(
            max_tokens=max_tokens, mode=self.mode, overlap_tokens=min(overlap, max_tokens - 1),
            estimate=estimate,
        )  # fmt: skip


def _spans(text: str, max_tokens: int, estimate: Estimate) -> list[tuple[int, int]]:
    """``(start, end)`` of each word; a word over ``max_tokens`` alone is cut into pieces."""
    spans: list[tuple[int, int]] = []
    for word in _WORD.finditer(text):
        start, end = word.span()
        while estimate(text[start:end]) > max_tokens:
            # The longest prefix that fits; at least one character, so the loop advances.
            low, high = start + 1, end
            while low < high:
                middle = (low + high + 1) // 2
                if estimate(text[start:middle]) <= max_tokens:
                    low = middle
                else:
                    high = middle - 1
            spans.append((start, low))
            start = low
        spans.append((start, end))
    return spans


def _window_end(
    text: str, spans: list[tuple[int, int]], first: int, max_tokens: int, estimate: Estimate
) -> int:
    """The last span of the window starting at ``spans[first]``: the most that fit."""
    begin = spans[first][0]
    low, high = first, len(spans) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if estimate(text[begin : spans[middle][1]]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return low


def _next_start(
    text: str,
    spans: list[tuple[int, int]],
    first: int,
    last: int,
    overlap_tokens: int,
    estimate: Estimate,
) -> int:
    """Where the window after ``spans[first..last]`` starts: the earliest span after
    ``first`` whose stretch to the window's end fits in ``overlap_tokens``; with none,
    right after the window."""
    end = spans[last][1]
    low, high = first + 1, last + 1
    while low < high:
        middle = (low + high) // 2
        if estimate(text[spans[middle][0] : end]) <= overlap_tokens:
            high = middle
        else:
            low = middle + 1
    return low


def window_spans(
    text: str, *, max_tokens: int, overlap_tokens: int, estimate: Estimate
) -> list[tuple[int, int]]:
    """``(start, end)`` of overlapping windows of ``text``, each within ``max_tokens``.

    Windows start and end at word boundaries (a single word longer than the
    limit is cut inside), start in increasing order, and together cover every
    word of ``text``; adjacent ones share about ``overlap_tokens``. A text
    within the limit is its own single window.
    """
    if estimate(text) <= max_tokens:
        return [(0, len(text))]
    spans = _spans(text, max_tokens, estimate)
    if not spans:
        return [(0, len(text))]
    found: list[tuple[int, int]] = []
    first = 0
    while True:
        last = _window_end(text, spans, first, max_tokens, estimate)
        found.append((spans[first][0], spans[last][1]))
        if last == len(spans) - 1:
            return found
        first = _next_start(text, spans, first, last, overlap_tokens, estimate)


def windows(text: str, *, max_tokens: int, overlap_tokens: int, estimate: Estimate) -> list[str]:
    """The texts of ``window_spans``."""
    return [
        text[start:end]
        for start, end in window_spans(
            text, max_tokens=max_tokens, overlap_tokens=overlap_tokens, estimate=estimate
        )
    ]


@dataclass(frozen=True, slots=True)
class DocumentWindows:
    """The texts sent for a call's documents, and whose each one is.

    Attributes:
        texts: What is scored: each document, cut, or its windows in order.
        owners: ``owners[i]`` is the document ``texts[i]`` came from; ``None``
            when ``texts`` are the documents one for one.
        n_documents: The caller's document count.
    """

    texts: list[str]
    owners: list[int] | None
    n_documents: int

    def merge(self, scores: Sequence[float]) -> list[float]:
        """One score per document, in input order: the best of its windows'."""
        if self.owners is None:
            return list(scores)
        best: list[float | None] = [None] * self.n_documents
        for owner, score in zip(self.owners, scores, strict=True):
            current = best[owner]
            if current is None or score > current:
                best[owner] = score
        if any(score is None for score in best):
            raise ValueError("a document has no window")  # cannot happen: each has one or more
        return [score for score in best if score is not None]

    def partial(self, scored: PartialScores) -> PartialScores:
        """A failed call's window scores as document scores: a document has one only
        when every window of it was scored (its maximum is then known)."""
        if self.owners is None:
            return scored
        best: list[float | None] = [None] * self.n_documents
        missing = [False] * self.n_documents
        for owner, score in zip(self.owners, scored.scores, strict=True):
            if score is None:
                missing[owner] = True
            else:
                current = best[owner]
                best[owner] = score if current is None else max(current, score)
        return PartialScores.from_scores(
            [None if gap else score for gap, score in zip(missing, best, strict=True)]
        )


@dataclass(frozen=True, slots=True)
class LongDocumentPolicy:
    """``LongDocuments`` resolved for one provider: the limit, the overlap, the estimate."""

    max_tokens: int
    mode: LongDocumentsMode
    overlap_tokens: int
    estimate: Estimate

    def split(self, documents: Sequence[str]) -> DocumentWindows:
        """What to send for ``documents``: unchanged when none is over the limit."""
        texts: list[str] = []
        owners: list[int] = []
        changed = False
        for owner, document in enumerate(documents):
            if self.estimate(document) <= self.max_tokens:
                texts.append(document)
                owners.append(owner)
                continue
            changed = True
            parts = windows(
                document,
                max_tokens=self.max_tokens,
                overlap_tokens=self.overlap_tokens,
                estimate=self.estimate,
            )
            if self.mode == "truncate":
                parts = parts[:1]
            texts += parts
            owners += [owner] * len(parts)
        if not changed:
            return DocumentWindows(list(documents), None, len(documents))
        one_each = self.mode == "truncate"
        return DocumentWindows(texts, None if one_each else owners, len(documents))

    async def score(
        self,
        documents: Sequence[str],
        score_texts: Callable[[list[str], bool], Awaitable[tuple[list[float], UsageT]]],
    ) -> tuple[list[float], UsageT]:
        """Score ``documents`` through ``score_texts(texts, may_dedupe)`` by their windows,
        then merge.

        Windows are sent as they are, even two identical ones of a repetitive document
        (``may_dedupe`` is false): each window of a document is one scored passage, and
        a caller counting them sees every one. A failure's ``partial`` is mapped back to
        the caller's documents, so that ``resume=`` works on them as on any call.
        """
        split = self.split(documents)
        try:
            scores, usage = await score_texts(split.texts, split.owners is None)
        except Exception as error:
            kept = getattr(error, "partial", None)
            if isinstance(kept, PartialScores):
                error.partial = split.partial(kept)  # type: ignore[attr-defined]  # RerankError's
            raise
        return split.merge(scores), usage
