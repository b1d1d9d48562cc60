"""Rate-limit headers: durations, the three spellings, resets as Unix times."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
import respx

from rerank_async import RateLimitError
from rerank_async._transports.rate_limit_headers import parse_duration, seconds_until_reset
from tests.conftest import URL, SleepRecorder, make_client, pointwise_score, scored_response

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1.5", 1.5), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3s", 3723.0), ("2s", 2.0),
     (" 3 ", 3.0), ("", None), ("soon", None), ("5x", None), ("-1", None), ("nan", None),
     ("1s2", None)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({}, None),
        ({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "1s"}, None),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}, 1.5),
        ({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s",
          "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20ms"}, 360.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}, 2.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW + 7)}, 7.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(NOW - 7)}, 0.0),
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "4"}, 4.0),
        ({"x-ratelimit-remaining": "0"}, 1.0),  # spent, but no reset given
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "later"}, 1.0),
        ({"x-ratelimit-remaining": "many", "x-ratelimit-reset": "2"}, None),
    ],
)  # fmt: skip
def test_seconds_until_reset(headers: dict[str, str], wait: float | None) -> None:
    result = seconds_until_reset(httpx.Headers(headers), now=NOW)
    assert result == (pytest.approx(wait) if wait is not None else None)


async def test_a_spent_limit_in_the_headers_pauses_the_next_request(
    mock_api: respx.MockRouter,
) -> None:
    """A 200 saying no requests are left: the next call waits for the reset, without a 429."""
    sent: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(anyio.current_time())
        response = scored_response(json.loads(request.content))
        if len(sent) == 1:
            response.headers["x-ratelimit-remaining-requests"] = "0"
            response.headers["x-ratelimit-reset-requests"] = "1.5s"
        return response

    mock_api.post(URL).mock(side_effect=answer)
    sleep = SleepRecorder()
    async with make_client(sleep=sleep) as client:
        assert await client.score("q", ["a"]) == [pointwise_score("q", "a")]
        paused = client.statistics().paused_until
        assert paused is not None
        await client.score("q", ["b"])
    assert sleep.delays == [pytest.approx(1.5, abs=0.05)]
    assert len(sent) == 2


async def test_a_429_carries_its_limit_reset(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(
        return_value=httpx.Response(
            429, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"}
        )
    )
    async with make_client(max_retries=0) as client:
        with pytest.raises(RateLimitError) as caught:
            await client.score("q", ["a"])
    assert caught.value.limit_reset_s == 3.0
