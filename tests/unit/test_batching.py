"""Pure batching rules: balanced split, spreading, dedupe, merge and ranking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_async._batching import (
    Deduper,
    ScoreSlots,
    dedupe,
    fan_out,
    has_duplicates,
    plan_batches,
    rank_indices,
    split_by_budget,
)


def sizes(spans: list[tuple[int, int]]) -> list[int]:
    return [stop - start for start, stop in spans]


@pytest.mark.parametrize(
    ("n", "batch_size", "min_batch_size", "free_slots", "expected"),
    [
        (0, 32, 8, 8, []),
        (1, 32, 8, 8, [1]),
        (100, 32, 32, 1, [25, 25, 25, 25]),  # balanced, not 32/32/32/4
        (100, 32, 1, 1, [25, 25, 25, 25]),
        (65, 32, 32, 1, [22, 22, 21]),
        (64, 32, 32, 8, [32, 32]),  # min size forbids spreading
        (100, 64, 8, 8, [13, 13, 13, 13, 12, 12, 12, 12]),  # spread over free slots
        (100, 64, 8, 32, [9] * 4 + [8] * 8),  # never below min_batch_size
        (10, 64, 8, 32, [10]),  # too few to spread
        (1000, 32, 8, 8, [32] * 8 + [31] * 24),  # more than one round: fewest requests
        (7, 1, 1, 100, [1] * 7),
    ],
)
def test_plan_batches(
    n: int, batch_size: int, min_batch_size: int, free_slots: int, expected: list[int]
) -> None:
    spans = plan_batches(
        n, batch_size=batch_size, min_batch_size=min_batch_size, free_slots=free_slots
    )
    assert sizes(spans) == expected


@given(
    n=st.integers(0, 5000),
    batch_size=st.integers(1, 300),
    min_batch_size=st.integers(1, 300),
    free_slots=st.integers(1, 64),
)
def test_plan_batches_properties(
    n: int, batch_size: int, min_batch_size: int, free_slots: int
) -> None:
    min_batch_size = min(min_batch_size, batch_size)
    spans = plan_batches(
        n, batch_size=batch_size, min_batch_size=min_batch_size, free_slots=free_slots
    )
    # Contiguous cover of range(n), in order.
    assert [i for start, stop in spans for i in range(start, stop)] == list(range(n))
    if n == 0:
        return
    batch_sizes = sizes(spans)
    assert max(batch_sizes) <= batch_size
    assert max(batch_sizes) - min(batch_sizes) <= 1
    fewest = -(-n // batch_size)
    if fewest >= free_slots:
        assert len(spans) == fewest  # a full round anyway: never more requests than needed
    else:
        assert len(spans) <= free_slots
        if len(spans) > fewest:
            assert min(batch_sizes) >= min_batch_size


@pytest.mark.parametrize(
    ("documents", "unique", "positions"),
    [
        ([], [], []),
        (["a", "b", "c"], ["a", "b", "c"], [0, 1, 2]),
        (["a", "b", "a", "a", "c", "b"], ["a", "b", "c"], [0, 1, 0, 0, 2, 1]),
        (["x"] * 4, ["x"], [0, 0, 0, 0]),
    ],
)
def test_dedupe(documents: list[str], unique: list[str], positions: list[int]) -> None:
    assert dedupe(documents) == (unique, positions)
    assert has_duplicates(documents) == (len(unique) < len(documents))


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", ""]) | st.text(max_size=5), max_size=60),
    st.integers(1, 7),
)
def test_dedupe_in_pieces_matches_dedupe(documents: list[str], piece: int) -> None:
    deduper = Deduper()
    for start in range(0, len(documents), piece):
        deduper.add(documents[start : start + piece])
    assert (deduper.unique, deduper.positions) == dedupe(documents)
    assert has_duplicates(documents) == (len(deduper.unique) < len(documents))


@given(st.lists(st.sampled_from(["a", "b", "c", "d", ""]) | st.text(max_size=5), max_size=60))
def test_dedupe_round_trips(documents: list[str]) -> None:
    unique, positions = dedupe(documents)
    assert len(set(unique)) == len(unique)
    assert [unique[p] for p in positions] == documents
    assert fan_out([float(i) for i in range(len(unique))], positions) == [
        float(unique.index(d)) for d in documents
    ]


def test_score_slots_fill_in_any_order() -> None:
    slots = ScoreSlots(5)
    slots.fill(3, [0.3, 0.4])
    assert not slots.is_filled(0)
    slots.fill(0, [0.0, 0.1, 0.2])
    assert slots.filled == 5
    assert slots.complete() == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_score_slots_refuse_double_fill() -> None:
    slots = ScoreSlots(4)
    slots.fill(0, [0.1, 0.2])
    with pytest.raises(RuntimeError, match=r"\[1, 3\) was already scored"):
        slots.fill(1, [0.5, 0.6])


def test_score_slots_refuse_out_of_range() -> None:
    with pytest.raises(IndexError):
        ScoreSlots(2).fill(1, [0.1, 0.2])


def test_score_slots_refuse_incomplete() -> None:
    slots = ScoreSlots(3)
    slots.fill(0, [0.1])
    with pytest.raises(RuntimeError, match="2 document"):
        slots.complete()


@pytest.mark.parametrize(
    ("scores", "top_k", "expected"),
    [
        ([], None, []),
        ([0.1, 0.9, 0.5], None, [1, 2, 0]),
        ([0.5, 0.9, 0.5, 0.9], None, [1, 3, 0, 2]),  # ties: lower index first
        ([0.5, 0.9, 0.5, 0.9], 3, [1, 3, 0]),
        ([0.2, 0.1], 5, [0, 1]),
        ([0.2, 0.1], 1, [0]),
    ],
)
def test_rank_indices(scores: list[float], top_k: int | None, expected: list[int]) -> None:
    assert rank_indices(scores, top_k) == expected


@given(
    st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), max_size=40),
    st.integers(1, 50) | st.none(),
)
def test_rank_indices_agrees_with_full_sort(scores: list[float], top_k: int | None) -> None:
    full = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    assert rank_indices(scores, top_k) == full[:top_k]


@pytest.mark.parametrize(
    ("spans", "costs", "budget", "expected"),
    [
        ([(0, 4)], [1, 1, 1, 1], 10, [(0, 4)]),
        ([(0, 4)], [3, 3, 3, 3], 6, [(0, 2), (2, 4)]),
        ([(0, 4)], [3, 3, 3, 3], 7, [(0, 2), (2, 4)]),
        ([(0, 3)], [9, 1, 1], 5, [(0, 1), (1, 3)]),  # one document over budget goes alone
        ([(0, 2), (2, 5)], [4, 4, 1, 1, 9], 5, [(0, 1), (1, 2), (2, 4), (4, 5)]),
        ([], [], 5, []),
    ],
)
def test_split_by_budget(
    spans: list[tuple[int, int]], costs: list[int], budget: int, expected: list[tuple[int, int]]
) -> None:
    assert split_by_budget(spans, costs, budget) == expected


@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=80), st.integers(1, 120), st.integers(1, 30)
)
def test_split_by_budget_properties(costs: list[int], budget: int, batch_size: int) -> None:
    spans = plan_batches(len(costs), batch_size=batch_size, min_batch_size=1, free_slots=1)
    pieces = split_by_budget(spans, costs, budget)
    assert [i for start, stop in pieces for i in range(start, stop)] == list(range(len(costs)))
    for start, stop in pieces:
        assert stop - start <= batch_size
        assert stop - start == 1 or sum(costs[start:stop]) <= budget


@pytest.mark.parametrize(
    ("n", "free_slots", "max_spread", "expected"),
    [
        (145, 32, None, [9] * 1 + [8] * 17),  # the probe's lone request: 18 requests
        (145, 32, 4, [13] + [12] * 11),  # capped at 4 x the 3 requests it needs
        (100, 32, 4, [13] * 4 + [12] * 4),
        (1000, 8, 4, [63] * 8 + [62] * 8),  # a full round anyway: the cap never adds requests
        (145, 1, 4, [49, 48, 48]),  # no free slot: the fewest requests
    ],
)
def test_spreading_is_capped_at_a_multiple_of_the_fewest_requests(
    n: int, free_slots: int, max_spread: int | None, expected: list[int]
) -> None:
    spans = plan_batches(
        n, batch_size=64, min_batch_size=8, free_slots=free_slots, max_spread=max_spread
    )
    assert sizes(spans) == expected


@given(
    n=st.integers(1, 5000),
    batch_size=st.integers(1, 300),
    free_slots=st.integers(1, 64),
    max_spread=st.integers(1, 8),
)
def test_capped_spreading_never_exceeds_the_cap(
    n: int, batch_size: int, free_slots: int, max_spread: int
) -> None:
    spans = plan_batches(
        n, batch_size=batch_size, min_batch_size=1, free_slots=free_slots, max_spread=max_spread
    )
    fewest = -(-n // batch_size)
    assert fewest <= len(spans) <= max(fewest, max_spread * fewest)
    assert [i for start, stop in spans for i in range(start, stop)] == list(range(n))
