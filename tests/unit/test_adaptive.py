"""AdaptiveLimit: growth while used, retreat on capacity, cuts on overload, epochs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_async._flow.adaptive import AdaptiveLimit, LimitChange, Ticket


def fill(limit: AdaptiveLimit, successes: int, *, level: int | None = None) -> None:
    """Answer ``successes`` requests, each sent with the limit in full use."""
    for _ in range(successes):
        limit.on_success(limit.on_send(level if level is not None else limit.limit))


def test_starts_at_sixteen_or_the_ceiling() -> None:
    assert AdaptiveLimit(64).limit == 16
    assert AdaptiveLimit(8).limit == 8
    assert AdaptiveLimit(64, initial=3).limit == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ceiling": 0}, "ceiling"),
        ({"ceiling": 4, "initial": 5}, "initial"),
        ({"ceiling": 4, "initial": 0}, "initial"),
        ({"ceiling": 4, "backoff_ratio": 1.0}, "backoff_ratio"),
        ({"ceiling": 4, "backoff_ratio": 0.0}, "backoff_ratio"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveLimit(**kwargs)  # type: ignore[arg-type]


def test_slow_start_doubles_per_round_trip_up_to_the_ceiling() -> None:
    limit = AdaptiveLimit(64, initial=4)
    fill(limit, 4)  # one round trip at 4
    assert limit.limit == 8
    fill(limit, 8)
    assert limit.limit == 16
    fill(limit, 200)
    assert limit.limit == 64  # never above the ceiling


def test_an_unused_limit_grows_to_the_ceiling_until_something_pushes_back() -> None:
    limit = AdaptiveLimit(64, initial=16)
    fill(limit, 100, level=2)  # nothing has pushed back: a first wide call meets the ceiling
    assert limit.limit == 64


def test_an_unused_limit_does_not_grow_once_something_pushed_back() -> None:
    limit = AdaptiveLimit(64, initial=32)
    fill(limit, 20, level=8)
    limit.on_overload(Ticket(level=9, epoch=0))  # a wall at 8
    fill(limit, 100, level=2)  # only 2 in flight: the limit proves nothing
    assert limit.limit == 8


def test_a_capacity_from_latency_caps_the_limit_once_per_epoch() -> None:
    limit = AdaptiveLimit(32, initial=32)
    ticket = limit.on_send(32)
    assert limit.on_capacity(ticket, 8) is LimitChange.DECREASE
    assert limit.limit == 8  # nothing queues at the server: the client's fair queue decides
    assert limit.on_capacity(ticket, 4) is LimitChange.NONE  # the same burst, once
    assert limit.on_capacity(limit.on_send(8), 8) is LimitChange.NONE


def test_capacity_failures_at_the_top_retreat_below_the_failing_level() -> None:
    limit = AdaptiveLimit(16, initial=10)
    fill(limit, 20, level=8)  # levels up to 8 succeed
    change = limit.on_overload(Ticket(level=9, epoch=0))
    assert change is LimitChange.RETREAT
    assert limit.limit == 8


def test_one_burst_counts_once() -> None:
    limit = AdaptiveLimit(16, initial=12)
    fill(limit, 20, level=8)
    stale = [limit.on_send(9) for _ in range(4)]
    assert limit.on_overload(stale[0]) is LimitChange.RETREAT
    assert limit.limit == 8
    for ticket in stale[1:]:  # sent before the retreat: already answered
        assert limit.on_overload(ticket) is LimitChange.NONE
    assert limit.limit == 8


def test_probing_above_a_retreat_slows_down_each_time_it_fails_there() -> None:
    limit = AdaptiveLimit(16, initial=10)
    fill(limit, 20, level=8)
    limit.on_overload(limit.on_send(9))
    assert limit.limit == 8

    def successes_to_reach_nine() -> int:
        count = 0
        while limit.limit < 9:
            fill(limit, 1, level=8)
            count += 1
        return count

    first = successes_to_reach_nine()
    limit.on_overload(limit.on_send(9))
    assert limit.limit == 8
    second = successes_to_reach_nine()
    assert first >= 8 * 4 - 1  # much slower than one slot per round trip
    assert second >= 2 * first - 2


def test_failures_spread_over_every_level_change_nothing() -> None:
    """A busy service's random 503s: a fixed bound would not do better, so keep the limit."""
    limit = AdaptiveLimit(8)
    for round_ in range(200):
        for level in range(1, 9):
            ticket = limit.on_send(level)
            if (round_ * 8 + level) % 7 == 0:  # about 14% of answers, at every level
                assert limit.on_overload(ticket) is LimitChange.NONE
            else:
                limit.on_success(ticket)
    assert limit.limit == 8


@pytest.mark.parametrize("seed", range(20))
def test_random_faults_in_random_order_keep_the_limit(seed: int) -> None:
    """15% failures (the benchmark's 10% 503 + 5% 429), answers in random order.

    With a 16-answer window, an early cluster of failures passed for overload in
    about two runs in five, and the limit fell to 1 and stayed low.
    """
    rng = random.Random(seed)
    limit = AdaptiveLimit(8)
    in_flight: list[Ticket] = []
    lowest = limit.limit
    for _ in range(3000):
        while len(in_flight) < limit.limit:
            in_flight.append(limit.on_send(len(in_flight) + 1))
        ticket = in_flight.pop(rng.randrange(len(in_flight)))
        if rng.random() < 0.15:
            limit.on_overload(ticket)
        else:
            limit.on_success(ticket)
        lowest = min(lowest, limit.limit)
    assert lowest >= 7
    assert limit.limit >= 7


def test_overload_at_every_level_cuts_multiplicatively_then_reports_the_floor() -> None:
    limit = AdaptiveLimit(32, initial=32)
    changes = []
    for _ in range(40):
        changes.append(limit.on_overload(limit.on_send(limit.limit)))
    assert LimitChange.DECREASE in changes
    assert limit.limit == 1
    assert changes[-1] is LimitChange.AT_FLOOR
    # 32 * 0.75 = 24, then 18, 13, 9, 6, 4, 3, 2, 1: each cut is one epoch.
    assert changes.count(LimitChange.DECREASE) == 9


def test_a_single_failure_with_nothing_to_compare_is_ignored() -> None:
    limit = AdaptiveLimit(8)
    assert limit.on_overload(limit.on_send(5)) is LimitChange.NONE
    assert limit.limit == 8


def test_after_a_cut_the_limit_grows_one_slot_per_round_trip() -> None:
    limit = AdaptiveLimit(32, initial=32)
    for _ in range(8):
        limit.on_overload(limit.on_send(32))
    assert limit.limit == 24
    fill(limit, 23)
    assert limit.limit == 24
    fill(limit, 2)  # 24 answers at 24 in flight: one more slot (floats may need one more)
    assert limit.limit == 25


def test_a_first_burst_of_rejections_cuts_below_the_lowest_failing_level() -> None:
    """A fresh client's 16 requests against a cap of 8: the 8 rejections come back first."""
    limit = AdaptiveLimit(64)
    tickets = [limit.on_send(level) for level in range(1, 17)]
    changes = [limit.on_overload(ticket) for ticket in tickets[8:]]
    assert changes[-1] is LimitChange.DECREASE
    assert limit.limit == 8


def test_neutral_failures_neither_grow_nor_shrink() -> None:
    limit = AdaptiveLimit(8, initial=4)
    for _ in range(10):
        limit.on_neutral(limit.on_send(4))
    assert limit.limit == 4
    assert limit.ceiling == 8


@given(
    ceiling=st.integers(min_value=1, max_value=64),
    events=st.lists(st.tuples(st.integers(min_value=0, max_value=80), st.booleans()), max_size=300),
)
def test_the_limit_stays_between_one_and_the_ceiling(
    ceiling: int, events: list[tuple[int, bool]]
) -> None:
    limit = AdaptiveLimit(ceiling)
    for level, failed in events:
        ticket = limit.on_send(level)
        if failed:
            limit.on_overload(ticket)
        else:
            limit.on_success(ticket)
        assert 1 <= limit.limit <= ceiling
