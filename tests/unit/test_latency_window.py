"""LatencyWindow: the rolling quantile that hedge_after="auto" uses."""

from __future__ import annotations

import pytest

from rerank_async._flow.latency_window import LatencyWindow


def test_no_threshold_before_an_answer_then_twice_the_median_until_twenty() -> None:
    window = LatencyWindow()
    assert window.threshold() is None
    window.add(0.05)
    assert window.threshold() == pytest.approx(0.1)
    for _ in range(2):
        window.add(0.05)
    window.add(0.5)
    assert window.threshold() == pytest.approx(0.1)  # the median of 4, doubled
    for _ in range(15):
        window.add(0.05)
    assert window.threshold() == pytest.approx(0.1)
    window.add(0.05)  # the 20th: now the quantile
    assert window.threshold() == 0.05


def test_the_quantile_of_a_heavy_tail() -> None:
    window = LatencyWindow()
    for index in range(200):
        window.add(0.5 if index % 20 == 0 else 0.05)  # 5% ten times slower
    assert window.threshold() == 0.05
    for _ in range(40):  # now 1 in 4 slow: the quantile follows within a refresh
        for value in (0.5, 0.05, 0.05, 0.05):
            window.add(value)
    assert window.threshold() == 0.5


def test_ignores_nonsense_samples() -> None:
    window = LatencyWindow(0.5)
    for _ in range(30):
        window.add(float("nan"))
        window.add(-1.0)
    assert window.threshold() is None


@pytest.mark.parametrize("quantile", [0.0, 1.0, -0.5])
def test_rejects_bad_quantiles(quantile: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        LatencyWindow(quantile)
