"""Option objects and the one resolve path: argument > environment > provider default, checked.

Like httpx's ``_config.py`` (``Timeout``, ``Limits``): the client asks
``resolve_config`` once in ``__init__`` and keeps the frozen result; nothing here
is read at import time or per call.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import httpx

from ._checks import (
    check_base_url,
    check_encodable,
    check_int,
    check_seconds,
    checked_documents,
    checked_query,
    non_empty,
)
from ._constants import (
    DEFAULT_MIN_BATCH_SIZE,
    DEFAULT_RETRY_BUDGET_PER_SECOND,
    DEFAULT_RETRY_BUDGET_RATIO,
    ENV_BASE_URL,
    ENV_MODEL,
)
from ._flow import LoadSettings
from ._retry import RetryPolicy
from ._secrets import check_api_key
from ._version import __version__
from .providers import Provider, resolve_provider

__all__ = [
    "HTTP_ENGINES",
    "NOT_GIVEN",
    "CallRequest",
    "ClientOptions",
    "HttpEngine",
    "NotGiven",
    "ResolvedConfig",
    "resolve_call",
    "resolve_call_timeout",
    "resolve_config",
]

HttpEngine: TypeAlias = Literal["auto", "httpx", "aiohttp"]
HTTP_ENGINES: Final[tuple[HttpEngine, ...]] = ("auto", "httpx", "aiohttp")


class NotGiven(enum.Enum):
    """Marks an argument the caller left out, where ``None`` has a meaning of its own."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN

# A per-request timeout after its check; NOT_GIVEN leaves the choice to the engine.
RequestTimeout: TypeAlias = httpx.Timeout | float | NotGiven | None


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """A client's options after precedence (argument > environment > default) and checks."""

    model: str
    base_url: str
    url: str
    batch_size: int
    min_batch_size: int
    max_concurrency: int
    split: bool
    total_timeout: float | None
    hedge_after: float | Literal["auto"] | None
    dedupe: bool
    retry: RetryPolicy
    limits: LoadSettings
    # Read HTTP(S)_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE/DIR (httpx's name and rules).
    trust_env: bool = True


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    """Everything ``RerankClient.__init__`` needs, resolved and checked.

    Attributes:
        options: The public, resolved options.
        provider: The wire format.
        api_key: The key, from the argument or the provider's variables; never logged.
        http_engine: Which engine sends the requests; "auto" settles at the first one.
        http_client: A caller-owned httpx client, or ``None``.
        timeout: The per-request timeout after its check, or ``NOT_GIVEN``.
        headers: Headers every request carries, authentication included.
    """

    options: ClientOptions
    provider: Provider
    api_key: str | None
    http_engine: HttpEngine
    http_client: httpx.AsyncClient | None
    timeout: RequestTimeout
    headers: dict[str, str]


def resolve_config(
    *,
    model: str | None,
    api_key: str | None,
    base_url: str | None,
    provider: str | Provider,
    batch_size: int | None,
    min_batch_size: int | None,
    max_concurrency: int | None,
    split: bool,
    max_retries: int,
    timeout: float | httpx.Timeout | NotGiven | None,
    total_timeout: float | None,
    retry_initial_delay: float,
    retry_max_delay: float,
    max_retry_after: float,
    dedupe: bool,
    http_client: httpx.AsyncClient | None,
    http_engine: HttpEngine,
    hedge_after: float | Literal["auto"] | None,
    adaptive_concurrency: bool = True,
    max_requests_per_minute: float | None = None,
    max_tokens_per_minute: float | None = None,
    retry_budget_ratio: float | None = DEFAULT_RETRY_BUDGET_RATIO,
    retry_budget_per_second: float = DEFAULT_RETRY_BUDGET_PER_SECOND,
    trust_env: bool = True,
) -> ResolvedConfig:
    """Resolve and check ``RerankClient``'s arguments; see its docstring for their meaning.

    Raises:
        ValueError: An option is out of range; the message names it.
        TypeError: An option has the wrong type.
    """
    chosen_provider = resolve_provider(provider)
    if batch_size is None:
        batch_size = chosen_provider.default_batch_size
    if max_concurrency is None:
        max_concurrency = chosen_provider.default_max_concurrency
    check_int("batch_size", batch_size, minimum=1)
    if min_batch_size is None:
        min_batch_size = min(DEFAULT_MIN_BATCH_SIZE, batch_size)
    check_int("min_batch_size", min_batch_size, minimum=1)
    check_int("max_concurrency", max_concurrency, minimum=1)
    check_int("max_retries", max_retries, minimum=0)
    if min_batch_size > batch_size:
        raise ValueError(
            f"min_batch_size ({min_batch_size}) must not exceed batch_size ({batch_size})"
        )
    for name, seconds in (
        ("retry_initial_delay", retry_initial_delay),
        ("retry_max_delay", retry_max_delay),
        ("max_retry_after", max_retry_after),
    ):
        check_seconds(name, seconds, allow_zero=True)
    if total_timeout is not None:
        check_seconds("total_timeout", total_timeout, allow_zero=False)
    if hedge_after is not None and hedge_after != "auto":
        check_seconds("hedge_after", hedge_after, allow_zero=False)
    limits = _resolve_limits(
        max_concurrency=max_concurrency,
        adaptive_concurrency=adaptive_concurrency,
        max_requests_per_minute=max_requests_per_minute,
        max_tokens_per_minute=max_tokens_per_minute,
        retry_budget_ratio=retry_budget_ratio,
        retry_budget_per_second=retry_budget_per_second,
        max_retry_after=max_retry_after,
    )
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
    if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
        raise TypeError(
            f"http_client must be an httpx.AsyncClient, not {type(http_client).__name__}"
        )

    chosen_model = model or os.environ.get(ENV_MODEL) or chosen_provider.default_model
    if chosen_model is None:
        raise ValueError(
            f"model is required with provider {chosen_provider.name!r}, which has no default "
            f"model; pass model= or set {ENV_MODEL}"
        )
    resolved_model = non_empty("model", chosen_model)
    resolved_base_url = _checked_base_url(
        base_url or os.environ.get(ENV_BASE_URL) or chosen_provider.default_base_url
    )
    resolved_key = _resolve_api_key(api_key, chosen_provider.api_key_env_vars)
    options = ClientOptions(
        model=resolved_model,
        base_url=resolved_base_url,
        url=chosen_provider.url(resolved_base_url, resolved_model),
        batch_size=batch_size,
        min_batch_size=min_batch_size,
        max_concurrency=max_concurrency,
        split=split,
        total_timeout=total_timeout,
        hedge_after=hedge_after,
        dedupe=dedupe,
        retry=RetryPolicy(
            max_retries=max_retries,
            initial_delay=retry_initial_delay,
            max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
        ),
        limits=limits,
        trust_env=trust_env,
    )

    if http_engine not in HTTP_ENGINES:
        raise ValueError(f"http_engine must be 'auto', 'httpx' or 'aiohttp', not {http_engine!r}")
    if http_engine == "aiohttp" and http_client is not None:
        raise ValueError(
            "http_client is an httpx client; it cannot be used with http_engine='aiohttp'"
        )
    return ResolvedConfig(
        options=options,
        provider=chosen_provider,
        api_key=resolved_key,
        http_engine=http_engine,
        http_client=http_client,
        timeout=timeout if isinstance(timeout, NotGiven) else _checked_timeout(timeout),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"rerank-async/{__version__}",
            **chosen_provider.auth_headers(resolved_key),
        },
    )


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One ``rerank`` call's arguments after their checks."""

    query: str
    documents: list[str]
    top_k: int | None
    deadline_seconds: float | None


def resolve_call(
    options: ClientOptions,
    query: object,
    documents: object,
    *,
    top_k: object,
    total_timeout: float | NotGiven | None,
) -> CallRequest:
    """Check one call's arguments against the client's options, before any request.

    Raises:
        TypeError, ValueError: An argument is bad; the message names it.
    """
    checked = checked_documents(documents)
    checked_text = checked_query(query)
    check_encodable(checked_text, name="query")
    checked_top_k = None if top_k is None else check_int("top_k", top_k, minimum=1)
    deadline_seconds = resolve_call_timeout(options.total_timeout, total_timeout)
    if not options.split and len(checked) > options.batch_size:
        raise ValueError(
            f"split=False sends one request per call, but {len(checked)} documents exceed "
            f"batch_size={options.batch_size}"
        )
    return CallRequest(
        query=checked_text,
        documents=checked,
        top_k=checked_top_k,
        deadline_seconds=deadline_seconds,
    )


def resolve_call_timeout(
    client_default: float | None, total_timeout: float | NotGiven | None
) -> float | None:
    """One call's deadline in seconds: its own, or the client's when left out."""
    if isinstance(total_timeout, NotGiven):
        return client_default
    if total_timeout is None:
        return None
    return check_seconds("total_timeout", total_timeout, allow_zero=False)


def _resolve_limits(
    *,
    max_concurrency: int,
    adaptive_concurrency: bool,
    max_requests_per_minute: float | None,
    max_tokens_per_minute: float | None,
    retry_budget_ratio: float | None,
    retry_budget_per_second: float,
    max_retry_after: float,
) -> LoadSettings:
    if not isinstance(adaptive_concurrency, bool):
        raise TypeError(
            f"adaptive_concurrency must be a bool, not {type(adaptive_concurrency).__name__}"
        )
    for name, rate in (
        ("max_requests_per_minute", max_requests_per_minute),
        ("max_tokens_per_minute", max_tokens_per_minute),
    ):
        if rate is not None:
            _check_number(name, rate, positive=True)
    if retry_budget_ratio is not None:
        _check_number("retry_budget_ratio", retry_budget_ratio, positive=False)
    _check_number("retry_budget_per_second", retry_budget_per_second, positive=False)
    return LoadSettings(
        max_concurrency=max_concurrency,
        adaptive=adaptive_concurrency,
        max_requests_per_minute=max_requests_per_minute,
        max_tokens_per_minute=max_tokens_per_minute,
        retry_budget_ratio=retry_budget_ratio,
        retry_budget_floor=retry_budget_per_second,
        max_pause=max_retry_after,
    )


def _check_number(name: str, value: object, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")


def _checked_timeout(timeout: object) -> httpx.Timeout | float | None:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    return check_seconds("timeout", timeout, allow_zero=False)


def _checked_base_url(base_url: object) -> str:
    return check_base_url(non_empty("base_url", base_url))


def _resolve_api_key(api_key: str | None, env_vars: Sequence[str]) -> str | None:
    if api_key is not None:
        if not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, not {type(api_key).__name__}")
        return check_api_key(api_key)
    for name in env_vars:
        value = os.environ.get(name, "").strip()
        if value:
            return check_api_key(value, name=name)
    return None
