"""OpenTelemetry: one CLIENT span per ``rerank`` call (the optional ``otel`` extra).

The span covers the whole call (its batches, retries, hedges and the merge); per-attempt
HTTP spans are left to the standard httpx / aiohttp instrumentations, which nest under it
because anyio's tasks copy the caller's context.

Cost when tracing is off: this module never imports ``opentelemetry``. A span is made
only when the application has imported ``opentelemetry.trace`` itself (any program that
configures tracing has) *and* set a real tracer provider; otherwise ``rerank_span``
returns a shared no-op after one ``sys.modules`` lookup (about 0.5 us per call, measured),
or, when the API is imported but no provider is set, after the API's own
``get_tracer_provider()`` (about 3 us: it reads an environment variable each time).

Names follow the OpenTelemetry GenAI semantic conventions where one fits
(https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/):

- span name ``"rerank {model}"`` and ``gen_ai.operation.name = "rerank"``: the convention's
  ``{operation} {model}`` form. Its list of operation names has no reranking value yet
  (``chat``, ``embeddings``, ``text_completion``, ...); the attribute allows a custom
  value, and ``rerank`` is the word every reranking API uses for its endpoint.
- ``gen_ai.provider.name`` (the provider's name, e.g. ``deepinfra``, ``cohere``),
  ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
  ``server.address``, ``server.port``, ``error.type``.
- What the conventions have no name for lives under ``rerank_async.*``: ``documents``,
  ``unique_documents``, ``batches``, ``requests``, ``retries``, ``hedges``, ``top_k`` and
  ``outcome`` (``ok``, ``error`` or ``cancelled``). ``gen_ai.request.top_k`` is *not*
  used: it means top-k sampling of a language model, not a cut of ranked results.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ._models import RerankResult

__all__ = ["TRACER_NAME", "rerank_span"]

TRACER_NAME: Final = "rerank_async"
_OPERATION: Final = "rerank"


class _NoSpan:
    """What ``rerank_span`` returns when tracing is off: does nothing, allocates nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def finished(self, result: RerankResult) -> RerankResult:
        return result


_NO_SPAN: Final = _NoSpan()


class _RerankSpan:
    """One live CLIENT span around one call; ``finished`` records the call's ``Usage``."""

    __slots__ = ("_attributes", "_name", "_scope", "_span", "_tracer")

    def __init__(self, tracer: Any, name: str, attributes: dict[str, Any]) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes
        self._scope: Any = None
        self._span: Any = None

    def __enter__(self) -> _RerankSpan:
        from opentelemetry.trace import SpanKind

        self._scope = self._tracer.start_as_current_span(
            self._name,
            kind=SpanKind.CLIENT,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._span = self._scope.__enter__()
        return self

    def finished(self, result: RerankResult) -> RerankResult:
        usage = result.usage
        span = self._span
        span.set_attribute("gen_ai.response.model", result.model)
        span.set_attribute("rerank_async.unique_documents", usage.unique_documents)
        span.set_attribute("rerank_async.batches", usage.batches)
        span.set_attribute("rerank_async.requests", usage.requests)
        span.set_attribute("rerank_async.retries", usage.retries)
        span.set_attribute("rerank_async.hedges", usage.hedges)
        if usage.input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._span
        if exc_value is None:
            span.set_attribute("rerank_async.outcome", "ok")
        elif isinstance(exc_value, Exception):
            span.set_attribute("rerank_async.outcome", "error")
            span.set_attribute("error.type", type(exc_value).__qualname__)
            span.record_exception(exc_value)
            span.set_status(Status(StatusCode.ERROR, str(exc_value)))
        else:  # cancellation (or KeyboardInterrupt): not the call's failure
            span.set_attribute("rerank_async.outcome", "cancelled")
        self._scope.__exit__(exc_type, exc_value, traceback)


_tracers: dict[int, tuple[object, Any]] = {}


def _tracer_for(provider: Any) -> Any:
    # get_tracer walks the provider's instrumentation-scope registry; once per provider is enough.
    cached = _tracers.get(id(provider))
    if cached is not None and cached[0] is provider:
        return cached[1]
    from ._version import __version__

    tracer = provider.get_tracer(TRACER_NAME, __version__)
    _tracers.clear()  # a new provider replaces the old one; keep no reference to it
    _tracers[id(provider)] = (provider, tracer)
    return tracer


def rerank_span(
    *,
    provider: str,
    model: str,
    url: str,
    documents: object,
    top_k: int | None,
) -> _NoSpan | _RerankSpan:
    """The span of one ``rerank`` call, or a no-op when no tracer provider is configured.

    Use as ``with rerank_span(...) as span: return span.finished(await ...)``.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return _NO_SPAN
    tracer_provider = trace.get_tracer_provider()
    if isinstance(tracer_provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return _NO_SPAN
    parts = urlsplit(url)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": _OPERATION,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }
    if parts.hostname:
        attributes["server.address"] = parts.hostname
        attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    if isinstance(documents, Sequence) and not isinstance(documents, str | bytes):
        attributes["rerank_async.documents"] = len(documents)
    if top_k is not None:
        attributes["rerank_async.top_k"] = top_k
    return _RerankSpan(_tracer_for(tracer_provider), f"{_OPERATION} {model}", attributes)
