"""Pure: pack the (query, document) pairs of several calls into full requests, and back.

Some wire formats carry one query per document (DeepInfra's ``{"queries",
"documents"}`` form, vLLM's ``/score`` with two lists). For them a request need
not belong to one call: 200 queries of 100 documents at ``batch_size=32`` fit
in 625 full requests instead of 800 per-query ones (32/32/32/4 each). The
packer fills requests in arrival order with contiguous *pieces* of each call's
documents; ``unpack`` hands each piece its slice of a request's scores.

Nothing here does I/O or imports from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PackedBatch",
    "Packer",
    "Piece",
    "split_by_owner",
    "split_packed",
    "unpack",
]


@dataclass(frozen=True, slots=True)
class Piece:
    """Documents ``start..stop-1`` of one call, sent together inside a packed request.

    Attributes:
        owner: The call the documents belong to (the packer's caller numbers them).
        start: First document, an index into the call's (deduplicated) documents.
        stop: One past the last document.
    """

    owner: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Documents in the piece."""
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """One request's worth of pieces, in the order their pairs are sent."""

    pieces: tuple[Piece, ...]

    @property
    def size(self) -> int:
        """Documents (pairs) in the request."""
        return sum(piece.size for piece in self.pieces)


class Packer:
    """Fills requests to ``batch_size`` with pieces of the calls added, in order.

    ``add`` returns the requests a call completed; the remainder waits in an
    open request for the next call, until ``flush`` hands it out short (when
    waiting longer would leave a concurrency slot idle, or nothing more comes).

    Args:
        batch_size: Most pairs per request (>= 1).

    Raises:
        ValueError: ``batch_size`` < 1.
    """

    __slots__ = ("_batch_size", "_open", "_open_size")

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._batch_size = batch_size
        self._open: list[Piece] = []
        self._open_size = 0

    @property
    def batch_size(self) -> int:
        """Most pairs per request."""
        return self._batch_size

    @property
    def open_size(self) -> int:
        """Pairs waiting in the open, not yet full, request."""
        return self._open_size

    def add(self, owner: int, stop: int, *, start: int = 0) -> list[PackedBatch]:
        """Queue documents ``start..stop-1`` of ``owner``; return the requests now full.

        Raises:
            ValueError: ``start`` < 0 or ``stop`` < ``start``.
        """
        if start < 0 or stop < start:
            raise ValueError(f"documents {start}..{stop} are not a range")
        full: list[PackedBatch] = []
        while start < stop:
            take = min(self._batch_size - self._open_size, stop - start)
            self._open.append(Piece(owner, start, start + take))
            self._open_size += take
            start += take
            if self._open_size == self._batch_size:
                full.append(self._take_open())
        return full

    def flush(self) -> PackedBatch | None:
        """The open request as it is (short), or ``None`` when it holds nothing."""
        return self._take_open() if self._open else None

    def _take_open(self) -> PackedBatch:
        batch = PackedBatch(tuple(self._open))
        self._open = []
        self._open_size = 0
        return batch


def unpack(batch: PackedBatch, scores: Sequence[float]) -> list[tuple[Piece, list[float]]]:
    """Each piece of ``batch`` with its scores, taken in the order the pairs were sent.

    Raises:
        ValueError: ``scores`` does not hold exactly one score per pair.
    """
    if len(scores) != batch.size:
        raise ValueError(f"expected {batch.size} scores for a packed request, got {len(scores)}")
    out: list[tuple[Piece, list[float]]] = []
    at = 0
    for piece in batch.pieces:
        out.append((piece, list(scores[at : at + piece.size])))
        at += piece.size
    return out


def split_packed(batch: PackedBatch, size: int) -> list[PackedBatch]:
    """Cut ``batch`` into requests of at most ``size`` pairs (a server said it was too large).

    Pieces are cut where a request boundary falls inside them; the pairs keep
    their order.

    Raises:
        ValueError: ``size`` < 1.
    """
    packer = Packer(size)
    out: list[PackedBatch] = []
    for piece in batch.pieces:
        out += packer.add(piece.owner, piece.stop, start=piece.start)
    last = packer.flush()
    if last is not None:
        out.append(last)
    return out


def split_by_owner(batch: PackedBatch) -> list[PackedBatch]:
    """``batch`` as one request per call it carries, each call's pieces in their order."""
    by_owner: dict[int, list[Piece]] = {}
    for piece in batch.pieces:
        by_owner.setdefault(piece.owner, []).append(piece)
    return [PackedBatch(tuple(pieces)) for pieces in by_owner.values()]
