"""Failures: typed errors, retries, Retry-After, batch splits, bad bodies, deadlines, cancels."""

from __future__ import annotations

import asyncio
import logging

import anyio
import httpx
import pytest
import respx

from rerank_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Limits,
    NotFoundError,
    RateLimitError,
    RequestRecord,
    RerankError,
    ResponseValidationError,
    RetryPolicy,
    ServerError,
)
from tests.conftest import URL, FakeReranker, SleepRecorder, make_client, pointwise_score

QUERY = "q"
DOCS = [f"doc {i}" for i in range(12)]


def expected(documents: list[str]) -> list[float]:
    return [pointwise_score(QUERY, d) for d in documents]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (422, BadRequestError),
        (501, ServerError),
        (418, APIStatusError),
    ],
)
async def test_non_retryable_status_raises_typed_error_at_once(
    mock_api: respx.MockRouter, status: int, error_type: type[APIStatusError]
) -> None:
    route = mock_api.post(URL).mock(
        return_value=httpx.Response(
            status, json={"detail": "nope"}, headers={"x-request-id": "r-9"}
        )
    )
    async with make_client(batch_size=12, max_retries=5) as client:
        with pytest.raises(error_type) as caught:
            await client.rerank(QUERY, DOCS)
    assert type(caught.value) is error_type
    assert route.call_count == 1
    error = caught.value
    assert error.status_code == status
    assert error.server_message == "nope"
    assert error.request_id == "r-9"
    assert error.document_range == (0, 12)
    assert f"HTTP {status}: nope" in str(error)
    assert URL in str(error)
    assert "documents 0..11" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        {"error": "model is overloaded"},
        {"error": {"message": "model is overloaded"}},
        {"detail": "model is overloaded"},
        {"detail": [{"loc": ["body", "documents"], "msg": "model is overloaded"}]},
        "model is overloaded",
    ],
)
async def test_error_message_from_every_body_form(mock_api: respx.MockRouter, body: object) -> None:
    response = (
        httpx.Response(400, text=body) if isinstance(body, str) else httpx.Response(400, json=body)
    )
    mock_api.post(URL).mock(return_value=response)
    async with make_client() as client:
        with pytest.raises(BadRequestError, match="model is overloaded"):
            await client.rerank(QUERY, ["a"])


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 529])
async def test_retryable_status_is_retried_then_succeeds(
    mock_api: respx.MockRouter, status: int
) -> None:
    fake = FakeReranker(script=[httpx.Response(status), httpx.Response(status)])
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client(batch_size=12) as client:
        result = await client.rerank(QUERY, DOCS)
    assert result.scores == expected(DOCS)
    assert fake.calls == 3
    assert result.usage.retries == 2
    assert result.usage.requests == 3


@pytest.mark.parametrize(
    ("status", "error_type"), [(429, RateLimitError), (503, ServerError), (500, ServerError)]
)
async def test_retries_run_out_and_raise(
    mock_api: respx.MockRouter, status: int, error_type: type[APIStatusError]
) -> None:
    route = mock_api.post(URL).mock(return_value=httpx.Response(status))
    async with make_client(batch_size=12, max_retries=2) as client:
        with pytest.raises(error_type):
            await client.rerank(QUERY, DOCS)
    assert route.call_count == 3


async def test_only_the_failed_batch_is_retried(mock_api: respx.MockRouter) -> None:
    fake = FakeReranker()
    attempts: dict[str, int] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        first = request.content.decode()
        attempts[first] = attempts.get(first, 0) + 1
        if '"doc 4"' in first and attempts[first] == 1:
            return httpx.Response(503)
        return await fake(request)

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(batch_size=4, limits=Limits(min_batch_size=4)) as client:
        result = await client.rerank(QUERY, DOCS)
    assert result.scores == expected(DOCS)
    assert sorted(attempts.values()) == [1, 1, 2]
    assert result.usage.retries == 1


async def test_retry_after_is_honoured(mock_api: respx.MockRouter) -> None:
    sleep = SleepRecorder()
    fake = FakeReranker(
        script=[
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(503, headers={"retry-after-ms": "250"}),
            httpx.Response(429, headers={"Retry-After": "3600"}),
        ]
    )
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client(
        sleep=sleep, retry=RetryPolicy(initial_delay=100.0, max_retry_after=30.0)
    ) as client:
        scores = await client.score(QUERY, ["a"])
    assert scores == expected(["a"])
    assert sleep.delays == [2.0, 0.25, 30.0]  # the last one capped


async def test_429_without_retry_after_backs_off_with_jitter(mock_api: respx.MockRouter) -> None:
    # DeepInfra answers 429 while a model scales up, usually without Retry-After.
    sleep = SleepRecorder()
    fake = FakeReranker(script=[httpx.Response(429)] * 4)
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client(
        sleep=sleep, max_retries=4, retry=RetryPolicy(initial_delay=0.5, max_delay=1.5)
    ) as client:
        await client.score(QUERY, ["a"])
    ceilings = [0.5, 1.0, 1.5, 1.5]
    assert len(sleep.delays) == 4
    assert all(0 <= d <= c for d, c in zip(sleep.delays, ceilings, strict=True))


async def test_connection_errors_are_retried_and_reported(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(side_effect=httpx.ConnectError("connection refused"))
    async with make_client(max_retries=2) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.rerank(QUERY, ["a"])
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "connection refused" in str(caught.value)
    assert mock_api.calls.call_count == 3


async def test_dropped_connection_then_success(mock_api: respx.MockRouter) -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    fake = FakeReranker(script=[drop])
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client() as client:
        result = await client.rerank(QUERY, ["a", "b"])
    assert result.scores == expected(["a", "b"])
    assert result.usage.retries == 1


async def test_request_timeout_is_typed(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(side_effect=httpx.ReadTimeout("read timed out"))
    async with make_client(max_retries=1) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.rerank(QUERY, ["a"])
    assert caught.value.documents_scored is None
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert mock_api.calls.call_count == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"<html>oops</html>", "Invalid JSON"),
        (b'{"scores": [0.1, 0.2', "Invalid JSON"),
        (b'{"result": []}', "scores: Field required"),
        (b'{"scores": [0.1]}', "expected 2 scores, got 1"),
        (b'{"scores": [0.1, 0.2, 0.3]}', "expected 2 scores, got 3"),
        (b'{"scores": [0.1, NaN]}', "scores.1"),
        (b'{"scores": [0.1, Infinity]}', "scores.1"),
        (b'{"scores": [0.1, "0.2"]}', "scores.1"),
        (b'{"scores": [0.1, true]}', "scores.1"),
        (b'{"scores": [0.1, null]}', "scores.1"),
        (b'{"scores": null}', "scores"),
    ],
)
async def test_malformed_success_body(
    mock_api: respx.MockRouter, content: bytes, reason: str
) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(200, content=content))
    async with make_client(max_retries=1) as client:
        with pytest.raises(ResponseValidationError) as caught:
            await client.rerank(QUERY, ["a", "b"])
    assert reason in str(caught.value)
    assert "documents 0..1" in str(caught.value)
    assert mock_api.calls.call_count == 2  # a truncated body is worth one more try


async def test_malformed_body_then_good_body(mock_api: respx.MockRouter) -> None:
    fake = FakeReranker(script=[httpx.Response(200, content=b'{"scores": [0.5]}')])
    mock_api.post(URL).mock(side_effect=fake)
    async with make_client() as client:
        assert await client.score(QUERY, ["a", "b"]) == expected(["a", "b"])


def too_large_over(limit: int, status: int = 413, message: str | None = None) -> FakeReranker:
    fake = FakeReranker()
    original = fake.__call__

    async def handler(request: httpx.Request) -> httpx.Response:
        n = request.content.count(b'"doc ')
        if n > limit:
            fake.bodies.append({"documents": [None] * n, "rejected": True})
            text = message or f"batch of {n} documents is too large"
            return httpx.Response(status, json={"error": {"message": text}})
        return await original(request)

    fake.handler = handler  # type: ignore[attr-defined]
    return fake


async def test_413_halves_the_batch_and_remembers(mock_api: respx.MockRouter) -> None:
    fake = too_large_over(5)
    mock_api.post(URL).mock(side_effect=fake.handler)  # type: ignore[attr-defined]
    documents = [f"doc {i}" for i in range(40)]
    async with make_client(batch_size=20, limits=Limits(min_batch_size=20)) as client:
        result = await client.rerank(QUERY, documents)
        assert result.scores == expected(documents)
        assert client.batch_limit <= 5
        rejected = sum(1 for body in fake.bodies if body.get("rejected"))
        assert rejected > 0
        fake.bodies.clear()
        again = await client.rerank(QUERY, documents)
    assert again.scores == expected(documents)
    assert not any(body.get("rejected") for body in fake.bodies)  # learned: no more 413s
    assert max(fake.batch_sizes) <= 5


async def test_tei_style_422_uses_the_stated_maximum(mock_api: respx.MockRouter) -> None:
    fake = too_large_over(3, status=422, message="batch size 12 > maximum allowed batch size 3")
    mock_api.post(URL).mock(side_effect=fake.handler)  # type: ignore[attr-defined]
    async with make_client(batch_size=12, limits=Limits(min_batch_size=12)) as client:
        result = await client.rerank(QUERY, DOCS)
        assert client.batch_limit == 3
    assert result.scores == expected(DOCS)
    accepted = [len(b["documents"]) for b in fake.bodies if not b.get("rejected")]
    assert accepted == [3, 3, 3, 3]


async def test_413_for_a_single_document_is_final(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(413, json={"error": "too large"}))
    async with make_client() as client:
        with pytest.raises(BadRequestError) as caught:
            await client.rerank(QUERY, ["a very long document"])
    assert caught.value.status_code == 413


async def test_plain_422_is_not_a_batch_signal(mock_api: respx.MockRouter) -> None:
    route = mock_api.post(URL).mock(
        return_value=httpx.Response(422, json={"detail": "query: field required"})
    )
    async with make_client(batch_size=12) as client:
        with pytest.raises(BadRequestError, match="query: field required"):
            await client.rerank(QUERY, DOCS)
    assert route.call_count == 1


async def test_one_failed_batch_cancels_the_others(mock_api: respx.MockRouter) -> None:
    completed: list[str] = []
    started = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if b'"doc 0"' in request.content:
            await started.wait()
            return httpx.Response(401, json={"error": "bad key"})
        started.set()
        await anyio.sleep_forever()  # cancelled long before
        completed.append("slow")
        return httpx.Response(200, json={"scores": [0.0] * 4})

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(batch_size=4, limits=Limits(min_batch_size=4)) as client:
        with anyio.fail_after(5), pytest.raises(AuthenticationError):
            await client.rerank(QUERY, DOCS)
    assert completed == []


async def test_total_timeout_reports_documents_scored(mock_api: respx.MockRouter) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if b'"doc 0"' not in request.content:
            await anyio.sleep_forever()
        return httpx.Response(200, json={"scores": [0.5] * 4})

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(
        batch_size=4, total_timeout=0.05, limits=Limits(min_batch_size=4)
    ) as client:
        with anyio.fail_after(5), pytest.raises(APITimeoutError) as caught:
            await client.rerank(QUERY, DOCS)
    assert caught.value.documents_scored == 4
    assert "total_timeout of 0.05 s passed with 4 of 12 documents scored" in str(caught.value)


async def test_per_call_total_timeout_overrides_client(mock_api: respx.MockRouter) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep_forever()
        return httpx.Response(200, json={"scores": [0.5]})

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client() as client:
        with anyio.fail_after(5), pytest.raises(APITimeoutError, match="0 of 1 documents"):
            await client.rerank(QUERY, ["a"], total_timeout=0.02)


async def test_cancelling_the_caller_cancels_requests_and_keeps_client_usable(
    mock_api: respx.MockRouter,
) -> None:
    in_flight = 0
    entered = anyio.Event()
    slow = True

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight
        in_flight += 1
        entered.set()
        try:
            if slow:
                await anyio.sleep_forever()
            return httpx.Response(200, json={"scores": [0.5] * request.content.count(b'"doc ')})
        finally:
            in_flight -= 1

    mock_api.post(URL).mock(side_effect=handler)
    tasks_before = len(asyncio.all_tasks())
    async with make_client(batch_size=4, limits=Limits(min_batch_size=4)) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.rerank, QUERY, DOCS)
            await entered.wait()
            tg.cancel_scope.cancel()
        assert in_flight == 0
        assert client.statistics().outstanding_batches == 0
        assert client.statistics().in_flight == 0
        assert len(asyncio.all_tasks()) == tasks_before
        slow = False
        assert await client.score(QUERY, ["doc 1"]) == [0.5]


async def test_nothing_but_rerank_errors_escape(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(503))
    async with make_client(batch_size=1, max_retries=0, limits=Limits(min_batch_size=1)) as client:
        with pytest.raises(RerankError) as caught:
            await client.rerank(QUERY, DOCS)
    assert not isinstance(caught.value, BaseExceptionGroup)


async def test_api_key_never_leaks(
    mock_api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-live-SUPERSECRET"
    echo = {"error": {"message": f"key Bearer {key} is not valid"}}
    fake = FakeReranker(script=[httpx.Response(503), httpx.Response(401, json=echo)])
    mock_api.post(URL).mock(side_effect=fake)
    caplog.set_level(logging.DEBUG, logger="rerank_async")
    client = make_client(api_key=key)
    assert key not in repr(client)
    with pytest.raises(AuthenticationError) as caught:
        await client.rerank(QUERY, ["a"])
    await client.aclose()
    assert key not in str(caught.value)
    assert key not in repr(caught.value)
    assert "***" in str(caught.value)
    assert key not in caplog.text
    assert "retrying documents 0..0" in caplog.text


async def test_missing_key_is_explained(mock_api: respx.MockRouter) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(401, json={"error": "unauthorized"}))
    async with make_client() as client:
        with pytest.raises(AuthenticationError, match="set DEEPINFRA_TOKEN or DEEPINFRA_API_KEY"):
            await client.rerank(QUERY, ["a"])


async def test_logging_records(fake: FakeReranker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="rerank_async")
    async with make_client(batch_size=2, limits=Limits(min_batch_size=2)) as client:
        await client.rerank(QUERY, ["a", "b", "c", "d"])
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 2
    assert all("-> 200 in" in r.getMessage() for r in debug)


async def test_deadline_counts_duplicates_as_scored(mock_api: respx.MockRouter) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if b'"a"' not in request.content:
            await anyio.sleep_forever()
        return httpx.Response(200, json={"scores": [0.5]})

    mock_api.post(URL).mock(side_effect=handler)
    async with make_client(batch_size=1, limits=Limits(min_batch_size=1)) as client:
        with anyio.fail_after(5), pytest.raises(APITimeoutError) as caught:
            await client.rerank(QUERY, ["a", "b", "a", "a"], total_timeout=0.05)
    assert caught.value.documents_scored == 3  # "a" appears three times


async def test_on_request_reports_every_attempt(mock_api: respx.MockRouter) -> None:
    fake = FakeReranker(script=[httpx.Response(503)])
    mock_api.post(URL).mock(side_effect=fake)
    records: list[RequestRecord] = []
    async with make_client(
        on_request=records.append, batch_size=4, limits=Limits(min_batch_size=4)
    ) as client:
        await client.rerank(QUERY, DOCS[:4])
    failed, ok = records
    assert (failed.status_code, failed.error, failed.ok) == (503, "ServerError", False)
    assert (ok.status_code, ok.error, ok.ok) == (200, None, True)
    assert ok.documents == 4
    assert ok.document_range == (0, 4)
    assert ok.server_runtime_ms == 5
    assert ok.input_tokens == 12
    assert ok.elapsed_s >= 0
