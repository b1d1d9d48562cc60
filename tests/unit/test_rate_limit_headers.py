"""Rate-limit headers: durations, the three spellings, resets as Unix times."""

from __future__ import annotations

import httpx
import pytest

from rerank_async._rate_limit_headers import parse_duration, seconds_until_reset

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
