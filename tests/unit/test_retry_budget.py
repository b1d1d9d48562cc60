"""RetryBudget on a fake clock: the ratio, the floor, the cap."""

from __future__ import annotations

import pytest

from rerank_async._flow.retry_budget import RetryBudget
from tests.unit.fake_clock import FakeClock


def test_starts_with_the_floor_reserve_only() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 1.0, clock=clock)
    assert budget.left() == pytest.approx(10.0)


def test_retries_are_a_share_of_requests_once_the_reserve_is_spent() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 0.0, clock=clock)
    assert not budget.try_withdraw()
    granted = 0
    for _ in range(100):
        budget.deposit()
        granted += budget.try_withdraw()
    assert granted == 20
    assert budget.retries == 20
    assert budget.refused == 81


def test_the_floor_refills_with_time_up_to_a_cap() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 2.0, clock=clock)
    while budget.try_withdraw():
        pass
    clock.advance(1.0)
    assert budget.left() == pytest.approx(2.0)
    clock.advance(3600.0)
    assert budget.left() == pytest.approx(2.0 * 10 + 0.2 * 100)  # never more than the cap
    for _ in range(10_000):
        budget.deposit()
    assert budget.left() == pytest.approx(40.0)


@pytest.mark.parametrize(("ratio", "floor"), [(-0.1, 1.0), (0.2, -1.0), (float("nan"), 1.0)])
def test_rejects_bad_values(ratio: float, floor: float) -> None:
    with pytest.raises(ValueError, match="retry budget"):
        RetryBudget(ratio, floor)


def test_a_reserve_adds_to_the_start_and_the_cap() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.2, 2.0, reserve=64, clock=clock)
    assert budget.left() == pytest.approx(84.0)
    clock.advance(3600.0)
    assert budget.left() == pytest.approx(84.0)


def test_reports_its_settings() -> None:
    budget = RetryBudget(0.1, 3.0)
    assert (budget.ratio, budget.floor_per_second) == (0.1, 3.0)
