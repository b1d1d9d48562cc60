"""The probe's findings, each over a real loopback server: keys, URLs, sizes, deadlines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from urllib.parse import quote, unquote

import anyio
import pytest

from rerank_async import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeadlineExceededError,
    NotFoundError,
    RateLimitError,
    RerankClient,
    RerankError,
    ResponseTimeoutError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryPolicy,
    ServerError,
)

from .hostile import HostileServer

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("engine", ["httpx", "aiohttp"])
# Characters that JSON, URL and HTML encoders each spell differently.
CANARY = "sk-canary/9f+Qz=_x7&Kq<v>"
MODEL = "acme/reranker"


def client_for(
    server: HostileServer, behaviour: str, engine: str, **options: object
) -> RerankClient:
    options.setdefault("max_retries", 0)
    options.setdefault("retry", RetryPolicy(initial_delay=0.0))
    options.setdefault("model", MODEL)
    return RerankClient(
        base_url=server.base_url(behaviour),
        http_client=engine,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def requests_to(server: HostileServer, behaviour: str) -> int:
    return sum(1 for request in server.requests if request.path.startswith(f"/{behaviour}/"))


# -- 1. the key is checked before anything is sent ------------------------------------------


@ENGINES
@pytest.mark.parametrize(
    ("bad_key", "problem"),
    [
        (CANARY + "\n", "whitespace"),
        (" " + CANARY, "whitespace"),
        (CANARY[:5] + "\r\n" + CANARY[5:], "control character"),
        (CANARY[:5] + "\x00" + CANARY[5:], "control character"),
        (CANARY + "é", "non-ASCII"),
    ],
)
async def test_a_key_that_cannot_be_a_header_is_refused_without_echoing_it(
    server: HostileServer, engine: str, bad_key: str, problem: str
) -> None:
    before = requests_to(server, "ok")
    with pytest.raises(ValueError, match=problem) as caught:
        client_for(server, "ok", engine, api_key=bad_key, max_retries=4)
    assert CANARY[:8] not in str(caught.value)
    assert requests_to(server, "ok") == before


def test_a_key_from_the_environment_is_stripped_then_checked(
    server: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPINFRA_TOKEN", f"  {CANARY}\n")
    client = client_for(server, "ok", "httpx")
    assert client.provider.auth_headers(CANARY)  # stripped: accepted
    monkeypatch.setenv("DEEPINFRA_TOKEN", CANARY[:5] + "\x7f" + CANARY[5:])
    with pytest.raises(ValueError, match="DEEPINFRA_TOKEN has a control character") as caught:
        client_for(server, "ok", "httpx")
    assert CANARY[:8] not in str(caught.value)


# -- 2. URLs cannot be bent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "problem"),
    [("?tenant=a", "query string"), ("#frag", "fragment"), ("?", "query string")],
)
def test_a_base_url_with_a_query_or_fragment_is_refused(
    server: HostileServer, suffix: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        RerankClient(base_url=server.base_url("ok") + suffix, model=MODEL)


def test_credentials_in_the_base_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="credentials") as caught:
        RerankClient(base_url="http://user:hunter2@127.0.0.1:9/v1", model=MODEL)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "model", ["../../etc/passwd", "../_stats", "a/../../b", "./x", "a//b", "/abs", "x/.."]
)
def test_a_model_with_dot_or_empty_segments_is_refused(server: HostileServer, model: str) -> None:
    with pytest.raises(ValueError, match="path segment"):
        RerankClient(base_url=server.base_url("ok"), model=model)


@ENGINES
@pytest.mark.parametrize(
    "model", ["a?b=1", "a#b", "100%", "x/%2e%2e/%2e%2e/etc", "sp ace\\back", "naïve/ü"]
)
async def test_a_model_stays_inside_the_base_path(
    server: HostileServer, engine: str, model: str
) -> None:
    async with client_for(server, "ok", engine, model=model) as client:
        assert await client.score("q", ["a", "b"]) == [0.5, 0.5]
    seen = server.requests[-1].path
    # aiohttp (yarl) writes sub-delimiters such as "=" unencoded: the same path.
    assert unquote(seen) == "/ok/v1/" + model
    assert seen.count("/") == 3 + model.count("/")
    assert "?" not in seen
    assert "#" not in seen


# -- 3. the key appears nowhere the library hands out ----------------------------------------

# (behaviour, error class, client options): every error class a call can raise.
PROVOCATIONS: list[tuple[str, type[RerankError], dict[str, object]]] = [
    ("echo-400", BadRequestError, {}),
    ("echo-401", AuthenticationError, {}),
    ("echo-403", AuthenticationError, {}),
    ("echo-404", NotFoundError, {}),
    ("echo-418", APIStatusError, {}),
    ("echo-429", RateLimitError, {"max_retries": 1}),
    ("echo-500", ServerError, {"max_retries": 1}),
    ("echo-200", ResponseValidationError, {"max_retries": 1}),
    ("drop", APIConnectionError, {"max_retries": 1}),
    ("hang", DeadlineExceededError, {"timeout": 5.0, "total_timeout": 0.3}),
    ("trickle", ResponseTimeoutError, {"timeout": 0.3}),
    ("big", ResponseTooLargeError, {}),
]


def spellings(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), secret.replace("/", "\\/"), repr(secret)[1:-1]]


def everything_handed_out(error: BaseException) -> list[str]:
    texts = [str(error), repr(error), repr(error.args)]
    texts += [repr(value) for value in vars(error).values()]
    return texts


@ENGINES
@pytest.mark.parametrize(
    ("behaviour", "error_class", "options"), PROVOCATIONS, ids=[p[0] for p in PROVOCATIONS]
)
async def test_the_canary_key_appears_zero_times(
    server: HostileServer,
    engine: str,
    behaviour: str,
    error_class: type[RerankError],
    options: dict[str, object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rerank_async")
    async with client_for(server, behaviour, engine, api_key=CANARY, **options) as client:
        with anyio.fail_after(10), pytest.raises(error_class) as caught:
            await client.rerank("q", ["a", "b"])
    error = caught.value
    assert type(error) is error_class
    seen = server.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {CANARY}"  # the key did go out
    texts = everything_handed_out(error)
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    texts.append(repr(client))
    found = [(form, text) for text in texts for form in spellings(CANARY) if form in text]
    assert found == []
    if behaviour.startswith("echo-") and behaviour != "echo-200":
        assert isinstance(error, APIStatusError)
        assert "***" in repr(error.body)
        assert error.request_id == "***"
    if options.get("max_retries") == 1:
        assert any("retrying" in record.getMessage() for record in caplog.records)


# -- 4. responses are bounded -------------------------------------------------------------------


@ENGINES
@pytest.mark.parametrize("behaviour", ["big", "gzip-bomb"])
async def test_an_oversized_body_is_refused_and_not_retried(
    server: HostileServer, engine: str, behaviour: str
) -> None:
    before = requests_to(server, behaviour)
    async with client_for(server, behaviour, engine, max_retries=4) as client:
        with anyio.fail_after(20), pytest.raises(ResponseTooLargeError) as caught:
            await client.score("q", ["a", "b"])
    assert caught.value.limit < 2 * 1024 * 1024
    assert caught.value.status_code == 200
    assert requests_to(server, behaviour) == before + 1  # never retried


@ENGINES
@pytest.mark.parametrize("behaviour", ["trickle", "endless"])
async def test_timeout_bounds_a_trickling_or_endless_body(
    server: HostileServer, engine: str, behaviour: str
) -> None:
    async with client_for(server, behaviour, engine, timeout=0.5) as client:
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(ResponseTimeoutError, match=r"timeout=0\.5 s"):
            await client.score("q", ["a", "b"])
        elapsed = time.monotonic() - started
    assert elapsed < 1.5


_RSS_PROBE = textwrap.dedent(
    """
    import asyncio, resource, sys
    from rerank_async import RerankClient, ResponseTooLargeError

    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def main(base, engine, hostile):
        async with RerankClient(base_url=base + "/ok/v1", model="m", http_client=engine) as c:
            for _ in range(3):
                await c.score("q", ["a", "b"])
        before = peak_kib()
        async with RerankClient(
            base_url=base + "/" + hostile + "/v1", model="m", http_client=engine, max_retries=0
        ) as c:
            try:
                await c.score("q", ["a", "b"])
            except ResponseTooLargeError:
                pass
            else:
                raise SystemExit("no ResponseTooLargeError")
        print(peak_kib() - before)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@ENGINES
@pytest.mark.parametrize("behaviour", ["big", "gzip-bomb"])
def test_an_oversized_body_costs_less_than_30_mb(
    server: HostileServer, engine: str, behaviour: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, server.url, engine, behaviour],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert completed.returncode == 0, completed.stderr
    grown_kib = int(completed.stdout.strip())
    assert grown_kib < 30 * 1024


@ENGINES
async def test_an_encoding_the_client_cannot_cap_is_refused(
    server: HostileServer, engine: str
) -> None:
    async with client_for(server, "brotli", engine, timeout=None) as client:
        with pytest.raises(ResponseValidationError, match="unsupported Content-Encoding 'br'"):
            await client.score("q", ["a", "b"])
    assert server.requests[-1].headers["accept-encoding"] == "gzip, deflate"


@ENGINES
async def test_a_corrupt_error_body_still_gives_the_status_error(
    server: HostileServer, engine: str
) -> None:
    async with client_for(server, "corrupt-gzip-503", engine) as client:
        with pytest.raises(ServerError, match="HTTP 503") as caught:
            await client.score("q", ["a", "b"])
    assert caught.value.body == ""


_SPAN_PROBE = textwrap.dedent(
    """
    import asyncio, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from rerank_async import RerankClient, RerankError

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    async def main(url, key, engine):
        for behaviour in ("echo-401", "echo-500", "echo-200", "big"):
            async with RerankClient(
                base_url=f"{url}/{behaviour}/v1", model="m", api_key=key, http_client=engine,
                max_retries=0,
            ) as client:
                try:
                    await client.rerank("q", ["a", "b"])
                except RerankError:
                    pass
                else:
                    raise SystemExit(f"{behaviour}: no error")
        spans = exporter.get_finished_spans()
        assert len(spans) == 4, len(spans)
        for span in spans:
            print(span.to_json())

    asyncio.run(main(*sys.argv[1:]))
    """
)


@ENGINES
def test_the_canary_key_appears_zero_times_in_trace_spans(
    server: HostileServer, engine: str
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    completed = subprocess.run(
        [sys.executable, "-c", _SPAN_PROBE, server.url, CANARY, engine],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    exported = completed.stdout
    assert '"exception.message"' in exported  # the errors were recorded
    assert [form for form in spellings(CANARY) if form in exported] == []


# -- bodies and redirects (docs/lifecycle.md) -----------------------------------------------


@ENGINES
async def test_a_body_with_a_duplicate_key_is_refused(engine: str, server: HostileServer) -> None:
    async with client_for(server, "duplicate-keys", engine, api_key=CANARY) as client:
        with pytest.raises(ResponseValidationError, match="'scores' appears twice"):
            await client.score("q", ["a", "b"])


@ENGINES
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_names_its_location_and_is_not_followed(
    engine: str, status: int, server: HostileServer
) -> None:
    behaviour = f"redirect-{status}"
    before, sent = requests_to(server, "ok"), requests_to(server, behaviour)
    async with client_for(server, behaviour, engine, api_key=CANARY) as client:
        with pytest.raises(APIStatusError) as raised:
            await client.score("q", ["a", "b"])
    message = str(raised.value)
    assert raised.value.status_code == status
    assert f"{server.url}/ok/v1/{MODEL}" in message
    assert "redirects are not followed" in message
    assert CANARY not in message
    assert requests_to(server, "ok") == before  # the key was sent nowhere else
    assert requests_to(server, behaviour) == sent + 1
