"""Reading a provider's rate-limit headers: how long until a spent limit resets.

A server that says how much of a limit is left lets a client stop *before*
the 429. Three spellings are in use (docs/rate-limits.md lists who sends which):

* OpenAI-style, per resource: ``x-ratelimit-remaining-requests`` /
  ``-tokens`` with ``x-ratelimit-reset-requests`` / ``-tokens`` as a duration
  (``"1s"``, ``"6m0s"``, ``"20ms"``) or plain seconds;
* one resource: ``x-ratelimit-remaining`` with ``x-ratelimit-reset``
  (Together AI: seconds until reset; some servers send a Unix time instead);
* the IETF draft's ``RateLimit-Remaining`` / ``RateLimit-Reset`` (seconds).

Only "nothing left" is acted on: a remaining count above zero says nothing
about other clients sharing the key, and guessing from it would slow a job
that is well inside its limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

__all__ = ["parse_duration", "seconds_until_reset"]

# (remaining, reset) header pairs, most specific first.
_PAIRS: Final = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ("x-ratelimit-remaining", "x-ratelimit-reset"),
    ("ratelimit-remaining", "ratelimit-reset"),
)
# A reset this large is a Unix time, not a delay (about 2001-09-09).
_UNIX_TIME_THRESHOLD: Final = 1e9
# Used when a limit is spent but the server gives no (readable) reset time.
_UNKNOWN_RESET_S: Final = 1.0
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float | None:
    """Seconds in ``"1.5"``, ``"20ms"``, ``"6m0s"`` or ``"1h2m3s"``; ``None`` if unreadable."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(text) and position > 0 else None


def seconds_until_reset(headers: Mapping[str, str], *, now: float) -> float | None:
    """How long to send nothing because a limit is spent, or ``None`` if none is.

    Args:
        headers: Response headers (case-insensitive lookups, as httpx gives).
        now: Unix time, to turn a reset given as a Unix time into a delay.

    Returns:
        The longest wait any spent limit asks for, in seconds.
    """
    wait: float | None = None
    for remaining_name, reset_name in _PAIRS:
        remaining = headers.get(remaining_name)
        if remaining is None:
            continue
        try:
            left = float(remaining)
        except ValueError:
            continue
        if not math.isfinite(left) or left > 0:
            continue
        reset = _reset_seconds(headers.get(reset_name), now)
        wait = reset if wait is None else max(wait, reset)
    return wait


def _reset_seconds(raw: str | None, now: float) -> float:
    seconds = parse_duration(raw) if raw is not None else None
    if seconds is None:
        return _UNKNOWN_RESET_S
    if seconds >= _UNIX_TIME_THRESHOLD:
        return max(seconds - now, 0.0)
    return seconds
