"""LatencyWindow: the rolling quantile that hedge_after="auto" uses."""

from __future__ import annotations

import pytest

from rerank_async._latency_window import LatencyWindow


def test_no_threshold_until_enough_answers() -> None:
    window = LatencyWindow()
    for _ in range(19):
        window.add(0.05)
    assert window.threshold() is None
    window.add(0.05)
    assert window.threshold() == 0.05


def test_p95_of_a_heavy_tail() -> None:
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
