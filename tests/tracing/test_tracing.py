"""One OpenTelemetry CLIENT span per rerank call, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import pytest
import respx
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rerank_async import AuthenticationError, Limits, RequestRecord

from ..conftest import MODEL, URL, FakeReranker, make_client

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> None:
    # The global provider can be set once per process; this module is its only setter.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def only_rerank_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    finished = [s for s in exporter.get_finished_spans() if s.name.startswith("rerank ")]
    assert len(finished) == 1
    return finished[0]


async def test_one_client_span_per_call_with_usage(
    spans: InMemorySpanExporter, fake: FakeReranker
) -> None:
    async with make_client(
        batch_size=4, max_concurrency=4, limits=Limits(min_batch_size=4)
    ) as client:
        result = await client.rerank("q", [f"d{i}" for i in range(10)] + ["d0"], top_k=3)
    span = only_rerank_span(spans)
    assert span.name == f"rerank {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "rerank",
        "gen_ai.provider.name": "deepinfra",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": MODEL,
        "server.address": "reranker.test",
        "server.port": 80,
        "gen_ai.usage.input_tokens": result.usage.input_tokens,
        "rerank_async.documents": 11,
        "rerank_async.unique_documents": 10,
        "rerank_async.top_k": 3,
        "rerank_async.batches": result.usage.batches,
        "rerank_async.requests": fake.calls,
        "rerank_async.retries": 0,
        "rerank_async.hedges": 0,
        "rerank_async.outcome": "ok",
    }
    assert result.usage.batches == 3


async def test_retries_are_counted_in_the_span(
    spans: InMemorySpanExporter, mock_api: respx.MockRouter
) -> None:
    fake = FakeReranker(script=[httpx.Response(503, json={"error": "busy"})])
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client(batch_size=8) as client:
        await client.rerank("q", ["a", "b", "c"])
    attributes = only_rerank_span(spans).attributes or {}
    assert attributes["rerank_async.retries"] == 1
    assert attributes["rerank_async.requests"] == 2


async def test_a_failed_call_is_an_error_span(
    spans: InMemorySpanExporter, mock_api: respx.MockRouter
) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(401, json={"error": "bad key"}))
    async with make_client() as client:
        with pytest.raises(AuthenticationError):
            await client.rerank("q", ["a"])
        with pytest.raises(ValueError, match="query"):
            await client.rerank(" ", ["a"])
    failed = [s for s in spans.get_finished_spans() if s.name.startswith("rerank ")]
    assert [s.status.status_code for s in failed] == [StatusCode.ERROR, StatusCode.ERROR]
    assert [(s.attributes or {})["error.type"] for s in failed] == [
        "AuthenticationError",
        "ValueError",
    ]
    assert all((s.attributes or {})["rerank_async.outcome"] == "error" for s in failed)
    assert [e.name for e in failed[0].events] == ["exception"]


async def test_requests_run_inside_the_span_so_http_spans_nest_under_it(
    spans: InMemorySpanExporter, fake: FakeReranker
) -> None:
    # An HTTP instrumentation starts its span in the task that sends the request; that
    # task must see the rerank span as current (anyio tasks copy the caller's context).
    seen: list[int] = []

    def on_request(record: RequestRecord) -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request handler") as parent:
        async with make_client(
            batch_size=2, on_request=on_request, limits=Limits(min_batch_size=1)
        ) as client:
            await client.rerank("q", ["a", "b", "c", "d", "e"])
    span = only_rerank_span(spans)
    assert len(seen) == fake.calls > 1
    assert set(seen) == {span.context.span_id}
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id


def run_python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_without_a_provider_nothing_is_imported_or_emitted() -> None:
    code = f"""
        import asyncio, sys
        import httpx, respx
        from rerank_async import RerankClient

        async def main():
            with respx.mock:
                respx.post({URL!r}).mock(return_value=httpx.Response(200, json={{"scores": [0.5]}}))
                async with RerankClient(
                    base_url={URL.rsplit("/", 2)[0]!r}, model={MODEL!r}, http_client="httpx"
                ) as c:
                    await c.rerank("q", ["a"])

        asyncio.run(main())
        print("opentelemetry" in sys.modules)

        # The API imported, no provider set: still no span, and the call works.
        from opentelemetry import trace
        asyncio.run(main())
        print(type(trace.get_tracer_provider()).__name__)
        print(trace.get_current_span().is_recording())
    """
    assert run_python(code).splitlines() == ["False", "ProxyTracerProvider", "False"]
