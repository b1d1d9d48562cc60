"""EndpointModel and choose_width: the fitted latency line, the knee, the chosen width."""

from __future__ import annotations

import pytest

from rerank_async._flow.endpoint_model import EndpointEstimate, EndpointModel
from rerank_async._flow.width import choose_width


def answer(model: EndpointModel, documents: int, seconds: float, level: int = 1) -> None:
    model.on_answer(0.0, seconds, documents=documents, level=level)


def test_no_answers_no_model() -> None:
    assert EndpointModel().estimate() is None


def test_one_size_gives_a_fixed_cost_only() -> None:
    model = EndpointModel()
    for _ in range(5):
        answer(model, 256, 0.261)
    estimate = model.estimate()
    assert estimate is not None
    assert estimate.fixed_s == pytest.approx(0.261)
    assert estimate.per_document_s is None


def test_two_sizes_fit_a_fixed_and_a_per_document_cost() -> None:
    model = EndpointModel()
    for documents in (256, 128, 32):
        answer(model, documents, 0.005 + 0.001 * documents)
        answer(model, documents, 0.005 + 0.001 * documents + 0.030)  # a queued one: ignored
    estimate = model.estimate()
    assert estimate is not None
    assert estimate.fixed_s == pytest.approx(0.005, abs=1e-6)
    assert estimate.per_document_s == pytest.approx(0.001, abs=1e-9)
    assert estimate.latency(64) == pytest.approx(0.069, abs=1e-6)


def test_a_fifo_servers_steps_give_its_capacity_despite_a_late_reader() -> None:
    model = EndpointModel()
    for _ in range(5):
        answer(model, 10, 0.020)  # small calls alone: one service time
    # A burst of 32 read 110 ms late by a busy client, from a server of capacity 8.
    for level in range(1, 33):
        answer(model, 64, 0.110 + 0.020 * ((level - 1) // 8 + 1), level=level)
    estimate = model.estimate()
    assert estimate is not None
    assert estimate.capacity == 8


def test_no_steps_no_capacity() -> None:
    model = EndpointModel()
    for level in range(1, 33):
        answer(model, 64, 0.050 + 0.0001 * level, level=level)  # slow reading, no queue
    estimate = model.estimate()
    assert estimate is not None
    assert estimate.capacity is None


def test_sustainable_concurrency_follows_littles_law() -> None:
    model = EndpointModel()
    for tick in range(20):
        model.on_answer(tick * 0.05, 0.1, documents=1, level=1)  # 20 per second, 0.1 s each
    assert model.sustainable(1.0) == 2
    assert model.sustainable(10.0) == 0  # nothing in the last second


def estimate(
    fixed: float,
    per_document: float,
    *,
    capacity: int | None = None,
    tail_share: float = 0.0,
    tail_ratio: float = 1.0,
) -> EndpointEstimate:
    return EndpointEstimate(fixed, per_document, tail_share, tail_ratio, capacity, 100)


@pytest.mark.parametrize(
    ("model", "free_slots", "expected"),
    [
        (estimate(0.050, 0.0), 32, 1),  # latency does not grow with documents: fewest
        (estimate(0.005, 0.001), 32, 32),  # it does, and nothing bounds the fan-out
        (estimate(0.005, 0.001, capacity=8), 32, 8),  # the server queues above 8
        (estimate(0.005, 0.001), 4, 4),  # other calls hold the rest of the slots
        (estimate(0.050, 0.00001, tail_share=0.05, tail_ratio=10.0), 32, 1),  # a tail to dodge
    ],
)
def test_choose_width(model: EndpointEstimate, free_slots: int, expected: int) -> None:
    width = choose_width(256, fewest=1, most=32, free_slots=free_slots, estimate=model)
    assert width == expected


def test_width_never_below_the_fewest() -> None:
    model = estimate(0.050, 0.0)
    assert choose_width(1024, fewest=32, most=128, free_slots=8, estimate=model) == 32


def burst_from_a_fifo_server(model: EndpointModel) -> None:
    """Small calls, then a burst of 32 to a server of capacity 8 (20 ms), read 110 ms late."""
    for index in range(5):
        model.on_answer(index * 0.02, 0.020, documents=10, level=1)
    for level in range(1, 33):
        seconds = 0.110 + 0.020 * ((level - 1) // 8 + 1)
        model.on_answer(0.1 + seconds, seconds, documents=64, level=level)


@pytest.mark.parametrize(("every", "kept"), [(0.0025, True), (0.05, False)])
def test_a_capacity_stays_only_if_the_endpoint_answers_as_much_at_it(
    every: float, kept: bool
) -> None:
    model = EndpointModel()
    burst_from_a_fifo_server(model)
    assert model.capacity() == 8
    # Held to 8 in flight: a saturated server still answers one every 2.5 ms; a healthy
    # server that only looked queued (a late reader) answers far fewer than before.
    for index in range(20):
        model.on_answer(1.0 + index * every, 0.020, documents=64, level=8)
        model.estimate()
    assert (model.capacity() == 8) is kept
    assert model.take_withdrawn() is not kept
    assert not model.take_withdrawn()  # told once
