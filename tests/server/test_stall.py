"""The stall knob: a fake clock for the schedule, the app for what a client sees."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest

from rerank_async.server import ServerConfig, create_app
from rerank_async.server._stall import Stall

URL = "/v1/inference/acme/model"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_stall_by_default() -> None:
    stall = Stall(ServerConfig())
    stall.mark_request()
    assert not stall.enabled
    assert stall.remaining_s() == 0.0


def test_periodic_stall_counts_from_the_first_request() -> None:
    clock = Clock()
    stall = Stall(ServerConfig(stall_duration_s=1.0, stall_every_s=2.0), clock=clock)
    assert stall.remaining_s() == 0.0  # nothing has arrived: the schedule has not begun
    stall.mark_request()
    clock.now += 5.0
    stall.mark_request()  # later requests do not move the origin
    # Origin at 100: pauses over [102, 103), [104, 105), ...; now at 105.
    expected = {105.0: 0.0, 106.25: 0.75, 106.999: 0.001, 107.0: 0.0, 108.5: 0.5}
    for now, remaining in expected.items():
        clock.now = now
        assert stall.remaining_s() == pytest.approx(remaining)


def test_single_stall_at_a_start_time() -> None:
    clock = Clock()
    stall = Stall(ServerConfig(stall_duration_s=1.0, stall_start_s=2.0), clock=clock)
    stall.mark_request()
    remaining = {}
    for offset in (1.9, 2.0, 2.5, 3.0, 4.5, 6.25):
        clock.now = 100.0 + offset
        remaining[offset] = stall.remaining_s()
    assert remaining == pytest.approx({1.9: 0, 2.0: 1.0, 2.5: 0.5, 3.0: 0, 4.5: 0, 6.25: 0})
    stall.reset()
    stall.mark_request()  # the schedule restarts here, at 106.25
    clock.now += 2.5
    assert stall.remaining_s() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [({"stall_duration_s": -1.0, "stall_every_s": 2.0}, "stall_duration_s"),
     ({"stall_duration_s": 1.0, "stall_every_s": 0.0}, "stall_every_s"),
     ({"stall_duration_s": 2.0, "stall_every_s": 2.0}, "shorter than stall_every_s"),
     ({"stall_duration_s": 1.0}, "needs stall_every_s or stall_start_s"),
     ({"stall_duration_s": 1.0, "stall_start_s": -1.0}, "stall_start_s")],
)  # fmt: skip
def test_config_rejects_bad_stalls(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**knobs)  # type: ignore[arg-type]


async def test_requests_meeting_a_stall_are_held_until_it_ends() -> None:
    config = ServerConfig(latency_ms=20.0, stall_duration_s=0.3, stall_start_s=0.1)
    transport = httpx.ASGITransport(app=create_app(config))
    body = {"query": "q", "documents": ["a"]}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        started = time.monotonic()
        first = await client.post(URL, json=body)  # starts the schedule; before the stall
        first_s = time.monotonic() - started
        await anyio.sleep(0.15 - first_s)  # inside the stall, 0.25 s before its end
        held_from = time.monotonic()
        held = await client.post(URL, json=body)
        held_s = time.monotonic() - held_from
        after_from = time.monotonic()
        after = await client.post(URL, json=body)
        after_s = time.monotonic() - after_from
    assert [r.status_code for r in (first, held, after)] == [200, 200, 200]
    assert first_s < 0.1
    assert held_s >= 0.2  # the rest of the stall, then its own 20 ms
    assert after_s < 0.1


def test_serve_and_bench_have_the_stall_flags() -> None:
    from rerank_async.cli._common import server_config_from
    from rerank_async.cli._main import build_parser

    for command in ("serve", "bench"):
        argv = [command, "--stall-duration-s", "1", "--stall-every-s", "2",
                "--stall-start-s", "0.5"]  # fmt: skip
        config = server_config_from(build_parser(argv).parse_args(argv))
        assert (config.stall_duration_s, config.stall_every_s, config.stall_start_s) == (
            1.0, 2.0, 0.5,
        )  # fmt: skip
