"""`ServerConfig`: every knob of the local reranker server, validated once.

Each field carries ``metadata={"help": ...}`` so the command line can build one flag per
field (``latency_ms`` -> ``--latency-ms``) without repeating the text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Final

__all__ = ["ServerConfig"]

_RATE_FIELDS: Final = (
    "tail_probability",
    "error_503_rate",
    "error_429_rate",
    "drop_rate",
    "malformed_rate",
)
_NON_NEGATIVE_FIELDS: Final = (
    "latency_ms",
    "per_doc_latency_ms",
    "jitter_ms",
    "outage_duration_s",
    "stall_duration_s",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Settings of the local DeepInfra-compatible reranker server.

    Every fault is off by default: the default server answers every valid request at once
    with correct scores. ``0`` is a valid value everywhere; ``None`` means "no limit".

    Raises:
        ValueError: From construction, naming the field, when a value is out of range.
    """

    api_key: str | None = field(
        default=None,
        metadata={"help": "Require 'Authorization: Bearer KEY' on inference requests."},
    )
    known_models: frozenset[str] | None = field(
        default=None,
        metadata={"help": "Model names to accept; others get 404. None accepts any model."},
    )
    latency_ms: float = field(
        default=0.0,
        metadata={"help": "Base simulated processing time per request, in milliseconds."},
    )
    per_doc_latency_ms: float = field(
        default=0.0,
        metadata={"help": "Extra simulated processing time per document, in milliseconds."},
    )
    jitter_ms: float = field(
        default=0.0,
        metadata={"help": "Uniform jitter of +/- this many milliseconds on the latency."},
    )
    tail_probability: float = field(
        default=0.0,
        metadata={"help": "Probability that a request's latency is multiplied (heavy tail)."},
    )
    tail_multiplier: float = field(
        default=10.0,
        metadata={"help": "Latency multiplier for tail requests (>= 1)."},
    )
    capacity: int | None = field(
        default=None,
        metadata={
            "help": "Requests processed at once; more wait in a queue (like a GPU worker "
            "pool). None means unlimited."
        },
    )
    max_batch_size: int | None = field(
        default=None,
        metadata={"help": "Reject requests with more documents with 413. None: no limit."},
    )
    error_503_rate: float = field(
        default=0.0,
        metadata={"help": "Probability of answering 503 Service Unavailable."},
    )
    error_429_rate: float = field(
        default=0.0,
        metadata={"help": "Probability of answering 429 Too Many Requests."},
    )
    retry_after_s: float | None = field(
        default=None,
        metadata={
            "help": "Retry-After sent with each 429, in seconds (rounded up). None: omitted."
        },
    )
    poison: str | None = field(
        default=None,
        metadata={
            "help": "Answer 500 to every request holding a document that contains this "
            "text, as a server whose tokenizer or model crashes on one input. None: off."
        },
    )
    drop_rate: float = field(
        default=0.0,
        metadata={"help": "Probability of dropping the connection mid-response."},
    )
    malformed_rate: float = field(
        default=0.0,
        metadata={
            "help": "Probability of a 200 with a broken body (truncated JSON, wrong score "
            "count, or no 'scores' key, in turn)."
        },
    )
    seed: int | None = field(
        default=None,
        metadata={"help": "Seed for the random faults and jitter. None: fresh entropy."},
    )
    max_in_flight: int | None = field(
        default=None,
        metadata={
            "help": "Answer 429 at once, without Retry-After, to requests above this many in "
            "flight (a provider's concurrency cap). None: no cap."
        },
    )
    rate_limit_rps: float | None = field(
        default=None,
        metadata={"help": "Requests per second allowed (a token bucket); past it, 429. None: off."},
    )
    rate_limit_burst: float | None = field(
        default=None,
        metadata={"help": "Bucket size of the rate limit, in requests. None: one second's worth."},
    )
    rate_limit_retry_after: bool = field(
        default=False,
        metadata={"help": "Send Retry-After (and retry-after-ms) with rate-limit 429s."},
    )
    outage_start_s: float | None = field(
        default=None,
        metadata={
            "help": "Seconds after the first inference request when a full outage (every "
            "request 503) begins. None: no outage."
        },
    )
    outage_duration_s: float = field(
        default=0.0,
        metadata={"help": "How long the outage lasts, in seconds."},
    )
    stall_duration_s: float = field(
        default=0.0,
        metadata={
            "help": "How long each stall lasts, in seconds: every request in the server or "
            "arriving meanwhile is held until it ends (a stop-the-world pause). 0: no stall."
        },
    )
    stall_every_s: float | None = field(
        default=None,
        metadata={
            "help": "Seconds from one stall's start to the next. None: a single stall at "
            "stall_start_s."
        },
    )
    stall_start_s: float | None = field(
        default=None,
        metadata={
            "help": "Seconds after the first inference request when the first stall begins. "
            "None: stall_every_s."
        },
    )

    def __post_init__(self) -> None:
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            msg = "api_key must be a non-empty string or None"
            raise ValueError(msg)
        if self.known_models is not None:
            # Accept any iterable of names (a list from the CLI), store a frozenset.
            models: Iterable[object] = self.known_models
            if isinstance(models, str) or not all(isinstance(m, str) for m in models):
                msg = "known_models must be a collection of model names (strings) or None"
                raise ValueError(msg)
            object.__setattr__(self, "known_models", frozenset(self.known_models))
        if self.poison is not None and (not isinstance(self.poison, str) or not self.poison):
            msg = "poison must be a non-empty string or None"
            raise ValueError(msg)
        for name in _NON_NEGATIVE_FIELDS:
            _check_float(name, getattr(self, name), low=0.0)
        for name in _RATE_FIELDS:
            _check_float(name, getattr(self, name), low=0.0, high=1.0)
        _check_float("tail_multiplier", self.tail_multiplier, low=1.0)
        if self.retry_after_s is not None:
            _check_float("retry_after_s", self.retry_after_s, low=0.0)
        for name in ("rate_limit_rps", "rate_limit_burst", "outage_start_s"):
            value = getattr(self, name)
            if value is not None:
                _check_float(name, value, low=0.0)
                if name != "outage_start_s" and value <= 0:
                    msg = f"{name} must be > 0 or None, got {value!r}"
                    raise ValueError(msg)
        self._check_stall()
        for name in ("capacity", "max_batch_size", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                msg = f"{name} must be a positive integer or None, got {value!r}"
                raise ValueError(msg)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            msg = f"seed must be an integer or None, got {self.seed!r}"
            raise ValueError(msg)

    def _check_stall(self) -> None:
        for name in ("stall_every_s", "stall_start_s"):
            value = getattr(self, name)
            if value is not None:
                _check_float(name, value, low=0.0)
        every = self.stall_every_s
        if every is not None and every <= 0:
            msg = f"stall_every_s must be > 0 or None, got {every!r}"
            raise ValueError(msg)
        # A stall as long as its period never ends: the server would answer nothing.
        if every is not None and self.stall_duration_s >= every:
            msg = (
                f"stall_duration_s must be shorter than stall_every_s, got "
                f"{self.stall_duration_s!r} >= {every!r}"
            )
            raise ValueError(msg)
        if self.stall_duration_s > 0 and every is None and self.stall_start_s is None:
            msg = "stall_duration_s needs stall_every_s or stall_start_s to say when"
            raise ValueError(msg)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Return each field's help text, by field name, in declaration order.

        Returns:
            ``{"latency_ms": "Base simulated ...", ...}``.
        """
        return {f.name: str(f.metadata.get("help", "")) for f in fields(cls)}


def _check_float(name: str, value: object, *, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"{name} must be a finite number, got {value!r}"
        raise ValueError(msg)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        msg = f"{name} must be {bounds}, got {value!r}"
        raise ValueError(msg)
