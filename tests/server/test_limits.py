"""AdmissionControl on a fake clock: the concurrency cap, the rate bucket, the outage."""

from __future__ import annotations

import anyio
import httpx
import pytest

from rerank_async.server import ServerConfig, create_app
from rerank_async.server._limits import AdmissionControl, Refusal, retry_after_header

URL = "/v1/inference/acme/model"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def control(clock: Clock, **knobs: object) -> AdmissionControl:
    return AdmissionControl(ServerConfig(**knobs), clock=clock)  # type: ignore[arg-type]


def test_no_limits_admit_everything() -> None:
    admission = control(Clock())
    assert all(admission.admit() is None for _ in range(1000))
    assert admission.in_flight == 1000
    assert admission.refusals == {}


def test_max_in_flight_refuses_with_a_bare_429_above_the_cap() -> None:
    admission = control(Clock(), max_in_flight=2)
    assert admission.admit() is None
    assert admission.admit() is None
    assert admission.admit() == Refusal(429, "max_in_flight", None)
    admission.leave()
    assert admission.admit() is None
    assert admission.refusals == {"max_in_flight": 1}


@pytest.mark.parametrize("with_retry_after", [False, True])
def test_rate_limit_bucket(with_retry_after: bool) -> None:
    clock = Clock()
    admission = control(clock, rate_limit_rps=10.0, rate_limit_retry_after=with_retry_after)
    admitted = sum(admission.admit() is None for _ in range(15))
    assert admitted == 10  # the burst: one second's worth
    refusal = admission.admit()
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (429, "rate_limit")
    if with_retry_after:
        assert refusal.retry_after_s == pytest.approx(0.1)
    else:
        assert refusal.retry_after_s is None
    clock.now += 0.5
    assert sum(admission.admit() is None for _ in range(10)) == 5  # 10 per second


def test_burst_can_be_set() -> None:
    admission = control(Clock(), rate_limit_rps=10.0, rate_limit_burst=2.0)
    assert [admission.admit() is None for _ in range(3)] == [True, True, False]


def test_outage_counts_from_the_first_request() -> None:
    clock = Clock()
    admission = control(clock, outage_start_s=1.0, outage_duration_s=2.0)
    assert admission.admit() is None
    clock.now += 1.0
    assert admission.admit() == Refusal(503, "outage")
    clock.now += 1.99
    assert admission.admit() == Refusal(503, "outage")
    clock.now += 0.02
    assert admission.admit() is None
    assert admission.refusals == {"outage": 2}
    admission.reset()
    assert admission.refusals == {}
    assert admission.admit() is None  # the outage clock restarted
    clock.now += 1.5
    assert admission.admit() == Refusal(503, "outage")


@pytest.mark.parametrize(
    ("knobs", "message"),
    [({"max_in_flight": 0}, "max_in_flight"), ({"rate_limit_rps": 0.0}, "rate_limit_rps"),
     ({"rate_limit_burst": -1.0}, "rate_limit_burst"), ({"outage_start_s": -1.0}, "outage_start_s"),
     ({"outage_duration_s": -2.0}, "outage_duration_s")],
)  # fmt: skip
def test_config_rejects_bad_limits(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2")])
def test_retry_after_header_rounds_up_to_whole_seconds(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


# -- through the app: what a client sees ------------------------------------------------------


async def test_the_app_refuses_with_the_right_status_and_headers() -> None:
    config = ServerConfig(rate_limit_rps=1.0, rate_limit_burst=1.0, rate_limit_retry_after=True)
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        body = {"query": "q", "documents": ["a"]}
        first = await client.post(URL, json=body)
        second = await client.post(URL, json=body)
        stats = (await client.get("/stats")).json()
    assert first.status_code == 200
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert 0 < int(second.headers["retry-after-ms"]) <= 1000
    assert second.json() == {"error": {"message": "Rate limit exceeded (simulated)"}}
    assert stats["refusals"] == {"rate_limit": 1}
    assert stats["status_counts"] == {"200": 1, "429": 1}


async def test_a_concurrency_cap_429_carries_no_retry_after() -> None:
    config = ServerConfig(max_in_flight=1, latency_ms=30.0)
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        statuses: list[httpx.Response] = []

        async def one() -> None:
            statuses.append(await client.post(URL, json={"query": "q", "documents": ["a"]}))

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            await anyio.wait_all_tasks_blocked()  # the first is inside its 30 ms of work
            group.start_soon(one)
    refused = [response for response in statuses if response.status_code == 429]
    assert len(refused) == 1
    assert "retry-after" not in refused[0].headers


def test_serve_has_a_flag_per_limit_knob() -> None:
    from rerank_async.cli._common import server_config_from
    from rerank_async.cli._main import build_parser

    argv = ["serve", "--max-in-flight", "8", "--rate-limit-rps", "20", "--rate-limit-retry-after",
            "--outage-start-s", "2", "--outage-duration-s", "5"]  # fmt: skip
    config = server_config_from(build_parser(argv).parse_args(argv))
    assert (config.max_in_flight, config.rate_limit_rps, config.rate_limit_retry_after) == (
        8, 20.0, True,
    )  # fmt: skip
    assert (config.outage_start_s, config.outage_duration_s) == (2.0, 5.0)
