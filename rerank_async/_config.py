"""Option objects and the one resolve path: argument > environment > provider default, checked.

Like httpx's ``_config.py`` (``Timeout``, ``Limits``): the client asks
``resolve_config`` once in ``__init__`` and keeps the frozen result; nothing here
is read at import time or per call.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, TypedDict, TypeVar

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
from ._constants import DEFAULT_MAX_RETRIES, DEFAULT_MIN_BATCH_SIZE, ENV_BASE_URL, ENV_MODEL
from ._flow import LoadSettings
from ._long_documents import LongDocumentPolicy, LongDocuments
from ._options import Limits, RetryPolicy
from ._secrets import check_api_key
from ._version import __version__
from .providers import Provider, resolve_provider

__all__ = [
    "HTTP_ENGINES",
    "NOT_GIVEN",
    "CallRequest",
    "ClientOptions",
    "EndpointArguments",
    "HttpEngine",
    "NotGiven",
    "ResolvedConfig",
    "resolve_call",
    "resolve_call_timeout",
    "resolve_config",
    "resolve_instruction",
]

HttpEngine: TypeAlias = Literal["auto", "httpx", "aiohttp"]
HTTP_ENGINES: Final[tuple[HttpEngine, ...]] = ("auto", "httpx", "aiohttp")


class NotGiven(enum.Enum):
    """Marks an argument the caller left out, where ``None`` has a meaning of its own."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven.NOT_GIVEN

OptionT = TypeVar("OptionT", Limits, RetryPolicy)

# A per-request timeout after its check; NOT_GIVEN leaves the choice to the engine.
RequestTimeout: TypeAlias = httpx.Timeout | float | NotGiven | None


class EndpointArguments(TypedDict, total=False):
    """``RerankClient``'s keyword arguments but the fleet's (``fallback``, ``cache``),
    whose types live above this layer: ``_client.ClientArguments`` adds them.
    """

    model: str | None
    api_key: str | None
    base_url: str | Sequence[str] | None
    provider: str | Provider
    batch_size: int | None
    max_concurrency: int | None
    max_retries: int
    timeout: float | httpx.Timeout | NotGiven | None
    total_timeout: float | None
    hedge_after: float | Literal["auto"] | None
    http_client: httpx.AsyncClient | HttpEngine | None
    trust_env: bool
    limits: Limits | None
    retry: RetryPolicy | None
    instruction: str | None
    long_documents: LongDocuments | None


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """A client's options after precedence (argument > environment > default) and checks.

    ``min_batch_size`` is ``limits.min_batch_size`` with its default applied.
    """

    model: str
    base_url: str
    url: str
    batch_size: int
    min_batch_size: int
    max_concurrency: int
    max_retries: int
    total_timeout: float | None
    hedge_after: float | Literal["auto"] | None
    trust_env: bool
    limits: Limits
    retry: RetryPolicy

    @property
    def shown_base_url(self) -> str | list[str]:
        """``base_url`` as the caller gave it: one root, or the replicas' list."""
        return list(self.replicas) if self.replicas else self.base_url

    def load_settings(self) -> LoadSettings:
        """What the flow-control gate (``Admission``) enforces."""
        return LoadSettings(
            max_concurrency=self.max_concurrency,
            # With replicas each has its own adaptive limit (rerank_async/_fleet); the
            # client-wide gate keeps only max_concurrency, or one replica's overload
            # would slow every other.
            adaptive=self.limits.adaptive_concurrency and not self.replicas,
            max_requests_per_minute=self.limits.max_requests_per_minute,
            max_tokens_per_minute=self.limits.max_tokens_per_minute,
            retry_budget_ratio=self.retry.budget_ratio,
            retry_budget_floor=self.retry.budget_per_second,
            max_pause=self.retry.max_retry_after,
            outage_patience=self.retry.outage_patience if self.max_retries > 0 else 0.0,
        )

    # The client's defaults for instructions and long documents (see RerankClient).
    instruction: str | None = None
    long_documents: LongDocuments | None = None
    # Every base URL when base_url was a sequence of several (replicas of one model;
    # base_url and url are the first's); empty for one endpoint.
    replicas: tuple[str, ...] = ()


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
        long_documents: ``options.long_documents`` resolved for the provider, when
            the client cuts or chunks documents itself (``None`` when the
            provider's own option does it, or when unset).
    """

    options: ClientOptions
    provider: Provider
    api_key: str | None
    http_engine: HttpEngine
    http_client: httpx.AsyncClient | None
    timeout: RequestTimeout
    headers: dict[str, str]
    long_documents: LongDocumentPolicy | None = None


def resolve_config(
    *,
    model: str | None = None,
    api_key: str | None = None,
    base_url: str | Sequence[str] | None = None,
    provider: str | Provider = "deepinfra",
    batch_size: int | None = None,
    max_concurrency: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
    total_timeout: float | None = None,
    hedge_after: float | Literal["auto"] | None = None,
    http_client: httpx.AsyncClient | HttpEngine | None = None,
    trust_env: bool = True,
    limits: Limits | None = None,
    retry: RetryPolicy | None = None,
    instruction: str | None = None,
    long_documents: LongDocuments | None = None,
) -> ResolvedConfig:
    """Resolve and check ``RerankClient``'s arguments; see its docstring for their meaning.

    Raises:
        ValueError: An option is out of range; the message names it.
        TypeError: An option has the wrong type.
    """
    chosen_provider = resolve_provider(provider)
    limits = _checked_option("limits", limits, Limits)
    retry = _checked_option("retry", retry, RetryPolicy)
    if batch_size is None:
        batch_size = chosen_provider.default_batch_size
    if max_concurrency is None:
        max_concurrency = chosen_provider.default_max_concurrency
    check_int("batch_size", batch_size, minimum=1)
    min_batch_size = limits.min_batch_size
    if min_batch_size is None:
        min_batch_size = min(DEFAULT_MIN_BATCH_SIZE, batch_size)
    elif min_batch_size > batch_size:
        raise ValueError(
            f"limits.min_batch_size ({min_batch_size}) must not exceed batch_size ({batch_size})"
        )
    check_int("max_concurrency", max_concurrency, minimum=1)
    check_int("max_retries", max_retries, minimum=0)
    if total_timeout is not None:
        check_seconds("total_timeout", total_timeout, allow_zero=False)
    if hedge_after is not None and hedge_after != "auto":
        check_seconds("hedge_after", hedge_after, allow_zero=False)
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
    http_engine, own_http_client = _resolve_http_client(http_client)

    chosen_model = model or os.environ.get(ENV_MODEL) or chosen_provider.default_model
    if chosen_model is None:
        raise ValueError(
            f"model is required with provider {chosen_provider.name!r}, which has no default "
            f"model; pass model= or set {ENV_MODEL}"
        )
    resolved_model = non_empty("model", chosen_model)
    urls = _checked_urls(base_url)
    replicas = urls if len(urls) > 1 else ()
    resolved_base_url = _checked_base_url(
        (urls[0] if urls else base_url)
        or os.environ.get(ENV_BASE_URL)
        or chosen_provider.base_url_default()
    )
    # Caps, instructions and long documents: the provider's documented limits.
    document_cap = chosen_provider.caps(resolved_model).documents
    if document_cap is not None:
        # A request over the service's documented cap only fails; plan at most the cap.
        batch_size = min(batch_size, document_cap)
        min_batch_size = min(min_batch_size, batch_size)
    resolved_instruction = _checked_instruction(instruction, chosen_provider, resolved_model)
    chosen_provider, policy = _resolve_long_documents(
        long_documents, chosen_provider, resolved_model
    )
    resolved_key = _resolve_api_key(api_key, chosen_provider.api_key_env_vars)
    options = ClientOptions(
        model=resolved_model,
        base_url=resolved_base_url,
        url=chosen_provider.url(resolved_base_url, resolved_model),
        batch_size=batch_size,
        min_batch_size=min_batch_size,
        max_concurrency=max_concurrency,
        max_retries=max_retries,
        total_timeout=total_timeout,
        hedge_after=hedge_after,
        trust_env=trust_env,
        limits=limits,
        retry=retry,
        instruction=resolved_instruction,
        long_documents=long_documents,
        replicas=replicas,
    )
    return ResolvedConfig(
        options=options,
        provider=chosen_provider,
        api_key=resolved_key,
        http_engine=http_engine,
        http_client=own_http_client,
        timeout=timeout if isinstance(timeout, NotGiven) else _checked_timeout(timeout),
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"rerank-async/{__version__}",
            **chosen_provider.auth_headers(resolved_key),
        },
        long_documents=policy,
    )


def _checked_option(name: str, value: object, kind: type[OptionT]) -> OptionT:
    """An option object, or its defaults for ``None``."""
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise TypeError(
            f"{name} must be a rerank_async.{kind.__name__}, not {type(value).__name__}"
        )
    return value


def _resolve_http_client(
    http_client: object,
) -> tuple[HttpEngine, httpx.AsyncClient | None]:
    """The engine to send with, and the caller's own httpx client if one was given.

    ``http_client`` is either a caller-owned ``httpx.AsyncClient`` (sent through as is,
    never closed here) or the name of the engine the client should open its own
    connections with.
    """
    if http_client is None:
        return "auto", None
    if isinstance(http_client, httpx.AsyncClient):
        return "httpx", http_client
    if http_client in HTTP_ENGINES:
        return http_client, None
    problem = ValueError if isinstance(http_client, str) else TypeError
    raise problem(
        "http_client must be an httpx.AsyncClient or one of 'auto', 'httpx', 'aiohttp', "
        f"not {http_client!r}"
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
    if not options.limits.split and len(checked) > options.batch_size:
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


def resolve_instruction(
    options: ClientOptions, provider: Provider, instruction: str | NotGiven | None
) -> str | None:
    """One call's instruction: its own, or the client's when left out (``None``: none).

    Raises:
        TypeError, ValueError: Not a non-empty string, or the provider (or model)
            has no instruction field; before any request.
    """
    if isinstance(instruction, NotGiven):
        return options.instruction
    return _checked_instruction(instruction, provider, options.model)


def _checked_instruction(instruction: object, provider: Provider, model: str) -> str | None:
    if instruction is None:
        return None
    checked = non_empty("instruction", instruction)
    if not provider.accepts_instruction(model):
        raise ValueError(
            f"provider {provider.name!r} has no instruction field for model {model!r}; "
            "pass instruction=None (providers with one: contextual, dashscope, fireworks, "
            "sglang, siliconflow, voyage rerank-2.5)"
        )
    check_encodable(checked, name="instruction")
    return checked


def _resolve_long_documents(
    long_documents: LongDocuments | None, provider: Provider, model: str
) -> tuple[Provider, LongDocumentPolicy | None]:
    """The provider to send with, and the client-side policy (``None``: nothing to do)."""
    if long_documents is None:
        return provider, None
    if not isinstance(long_documents, LongDocuments):
        raise TypeError(
            f"long_documents must be a LongDocuments, not {type(long_documents).__name__}"
        )
    cap = provider.caps(model).tokens_per_document
    policy = long_documents.resolve(cap=cap, estimate=provider.estimate_tokens)
    if policy.mode == "truncate":
        native = provider.native_truncation(policy.max_tokens)
        if native is not None:
            # The service cuts by its own tokenizer, which is better than our estimate.
            return native, None
    return provider, policy


def resolve_call_timeout(
    client_default: float | None, total_timeout: float | NotGiven | None
) -> float | None:
    """One call's deadline in seconds: its own, or the client's when left out."""
    if isinstance(total_timeout, NotGiven):
        return client_default
    if total_timeout is None:
        return None
    return check_seconds("total_timeout", total_timeout, allow_zero=False)


def _checked_timeout(timeout: object) -> httpx.Timeout | float | None:
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    return check_seconds("timeout", timeout, allow_zero=False)


def _checked_base_url(base_url: object) -> str:
    return check_base_url(non_empty("base_url", base_url))


def _checked_urls(base_url: object) -> tuple[str, ...]:
    """Every URL of ``base_url=[...]`` (replicas of one model); ``()`` for a str or None."""
    if base_url is None or isinstance(base_url, str):
        return ()
    if not isinstance(base_url, Sequence):
        raise TypeError(
            f"base_url must be a str or a sequence of str, not {type(base_url).__name__}"
        )
    urls = tuple(
        check_base_url(non_empty(f"base_url[{index}]", url), name=f"base_url[{index}]")
        for index, url in enumerate(base_url)
    )
    if not urls:
        raise ValueError("base_url must name at least one URL")
    if len(set(urls)) != len(urls):
        raise ValueError(f"base_url names a replica twice: {list(urls)}")
    return urls


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
