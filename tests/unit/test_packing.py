"""Packing pairs of several calls into full requests: tables and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_async._packed.packing import PackedBatch, Packer, Piece, split_packed, unpack


def pack_all(sizes: list[int], batch_size: int) -> list[PackedBatch]:
    packer = Packer(batch_size)
    batches: list[PackedBatch] = []
    for owner, size in enumerate(sizes):
        batches += packer.add(owner, size)
    last = packer.flush()
    return batches + ([last] if last is not None else [])


def layout(batches: list[PackedBatch]) -> list[list[tuple[object, int, int]]]:
    return [[(p.owner, p.start, p.stop) for p in batch.pieces] for batch in batches]


@pytest.mark.parametrize(
    ("sizes", "batch_size", "expected"),
    [
        ([], 32, []),
        ([0, 0], 32, []),
        ([5], 32, [[(0, 0, 5)]]),
        ([32], 32, [[(0, 0, 32)]]),
        ([3, 3, 3], 4, [[(0, 0, 3), (1, 0, 1)], [(1, 1, 3), (2, 0, 2)], [(2, 2, 3)]]),
        ([10], 4, [[(0, 0, 4)], [(0, 4, 8)], [(0, 8, 10)]]),
        ([2, 0, 2], 4, [[(0, 0, 2), (2, 0, 2)]]),
    ],
)
def test_pack_layout(
    sizes: list[int], batch_size: int, expected: list[list[tuple[object, int, int]]]
) -> None:
    assert layout(pack_all(sizes, batch_size)) == expected


def test_two_hundred_queries_of_a_hundred_fill_625_requests() -> None:
    # The workload: 800 per-query requests (32/32/32/4) become 625 full ones.
    batches = pack_all([100] * 200, 32)
    assert len(batches) == 625
    assert {batch.size for batch in batches} == {32}


def test_add_returns_only_full_requests_and_keeps_the_rest_open() -> None:
    packer = Packer(32)
    assert packer.batch_size == 32
    assert packer.add(0, 100) == [
        PackedBatch((Piece(0, 0, 32),)),
        PackedBatch((Piece(0, 32, 64),)),
        PackedBatch((Piece(0, 64, 96),)),
    ]
    assert packer.open_size == 4
    [full] = packer.add(1, 28)
    assert full.pieces == (Piece(0, 96, 100), Piece(1, 0, 28))
    assert packer.open_size == 0
    assert packer.flush() is None


@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (5, 4)])
def test_add_rejects_a_bad_range(start: int, stop: int) -> None:
    with pytest.raises(ValueError, match="not a range"):
        Packer(4).add(0, stop, start=start)


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Packer(0)


def test_unpack_rejects_a_wrong_count() -> None:
    batch = PackedBatch((Piece(0, 0, 2), Piece(1, 0, 1)))
    with pytest.raises(ValueError, match="expected 3 scores for a packed request, got 2"):
        unpack(batch, [0.1, 0.2])


def test_split_packed_cuts_inside_pieces() -> None:
    batch = PackedBatch((Piece(0, 96, 100), Piece(1, 0, 28)))
    parts = split_packed(batch, 10)
    assert layout(parts) == [
        [(0, 96, 100), (1, 0, 6)],
        [(1, 6, 16)],
        [(1, 16, 26)],
        [(1, 26, 28)],
    ]


calls = st.lists(st.integers(0, 300), max_size=40)


@given(sizes=calls, batch_size=st.integers(1, 100))
def test_every_pair_is_packed_once_in_order(sizes: list[int], batch_size: int) -> None:
    batches = pack_all(sizes, batch_size)
    sent = [
        (piece.owner, index)
        for batch in batches
        for piece in batch.pieces
        for index in range(piece.start, piece.stop)
    ]
    assert sent == [(owner, i) for owner, size in enumerate(sizes) for i in range(size)]
    assert all(0 < batch.size <= batch_size for batch in batches)
    # Only the last request may be short: every other one is full.
    assert all(batch.size == batch_size for batch in batches[:-1])
    assert len(batches) == -(-sum(sizes) // batch_size)
    assert all(piece.size > 0 for batch in batches for piece in batch.pieces)


@given(sizes=calls, batch_size=st.integers(1, 100), data=st.data())
def test_unpacked_scores_land_on_their_pairs(
    sizes: list[int], batch_size: int, data: st.DataObject
) -> None:
    # Score each pair by its identity; batches are unpacked in a scrambled order.
    batches = pack_all(sizes, batch_size)
    order = data.draw(st.permutations(range(len(batches))))
    got: dict[int, list[float | None]] = {owner: [None] * size for owner, size in enumerate(sizes)}
    for position in order:
        batch = batches[position]
        scores = [
            float(1000 * piece.owner + index)
            for piece in batch.pieces
            for index in range(piece.start, piece.stop)
        ]
        for piece, part in unpack(batch, scores):
            owner = piece.owner
            assert got[owner][piece.start : piece.stop] == [None] * piece.size
            got[owner][piece.start : piece.stop] = part
    assert got == {
        owner: [float(1000 * owner + i) for i in range(size)] for owner, size in enumerate(sizes)
    }


@given(sizes=calls, batch_size=st.integers(1, 100), size=st.integers(1, 100))
def test_split_packed_keeps_every_pair_in_order(
    sizes: list[int], batch_size: int, size: int
) -> None:
    for batch in pack_all(sizes, batch_size):
        parts = split_packed(batch, size)
        pairs = [(p.owner, i) for b in (batch,) for p in b.pieces for i in range(p.start, p.stop)]
        split_pairs = [
            (p.owner, i) for b in parts for p in b.pieces for i in range(p.start, p.stop)
        ]
        assert split_pairs == pairs
        assert all(0 < part.size <= size for part in parts)
        assert all(part.size == size for part in parts[:-1])
