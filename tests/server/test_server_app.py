"""The local reranker server: config, fault plans, the ASGI app, and the real server on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import random
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Message

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

import rerank_async.server
from rerank_async.server import ServerConfig, create_app, running_server
from rerank_async.server._dialects import parse_body
from rerank_async.server._faults import Fault, FaultInjector, Malformation
from rerank_async.server._http import InvalidBodyError
from rerank_async.server._scoring import score_pairs

MODEL = "cross-encoder/ms-marco-MiniLM-L-12-v2"
URL = f"/v1/inference/{MODEL}"
QUERY = "What is the capital of France?"
DOCS = [
    "Paris is the capital and most populous city of France.",
    "Berlin is the capital of Germany.",
]


@contextlib.asynccontextmanager
async def client_for(config: ServerConfig | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


# --- package surface ---------------------------------------------------------------------


def test_all_is_sorted_and_resolves() -> None:
    names = rerank_async.server.__all__
    assert names == sorted(names)
    assert set(names) == {
        "RunningServer",
        "ServerConfig",
        "ServerStats",
        "create_app",
        "running_server",
        "serve",
    }
    for name in names:
        assert getattr(rerank_async.server, name) is not None


def test_missing_extra_raises_helpful_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("rerank_async.server")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ImportError, match=r"rerank-async\[server\]"):
        importlib.import_module("rerank_async.server")


# --- ServerConfig ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"latency_ms": -1}, "latency_ms"),
        ({"per_doc_latency_ms": float("nan")}, "per_doc_latency_ms"),
        ({"jitter_ms": -0.5}, "jitter_ms"),
        ({"tail_probability": 1.5}, "tail_probability"),
        ({"tail_multiplier": 0.5}, "tail_multiplier"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": 1.5}, "capacity"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"error_503_rate": -0.1}, "error_503_rate"),
        ({"error_429_rate": 2}, "error_429_rate"),
        ({"retry_after_s": -1}, "retry_after_s"),
        ({"retry_after_s": float("inf")}, "retry_after_s"),
        ({"drop_rate": float("inf")}, "drop_rate"),
        ({"malformed_rate": "0.5"}, "malformed_rate"),
        ({"seed": "1"}, "seed"),
        ({"seed": False}, "seed"),
        ({"api_key": ""}, "api_key"),
        ({"known_models": "one/model"}, "known_models"),
        ({"known_models": [1, 2]}, "known_models"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ServerConfig(**kwargs)


def test_config_defaults_are_all_off_and_frozen() -> None:
    cfg = ServerConfig()
    assert cfg.latency_ms == cfg.error_503_rate == cfg.drop_rate == cfg.malformed_rate == 0.0
    assert cfg.capacity is None
    assert cfg.max_batch_size is None
    assert cfg.api_key is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.latency_ms = 1.0  # type: ignore[misc]


def test_config_accepts_edges_and_normalizes_models() -> None:
    cfg = ServerConfig(
        known_models=["a/b", "c/d"],  # type: ignore[arg-type]
        capacity=1,
        max_batch_size=1,
        error_503_rate=1,
        retry_after_s=0,
        tail_multiplier=1,
        seed=0,
    )
    assert cfg.known_models == frozenset({"a/b", "c/d"})


def test_every_field_has_help_for_the_cli() -> None:
    helps = ServerConfig.field_help()
    assert list(helps) == [f.name for f in dataclasses.fields(ServerConfig)]
    assert all(helps.values())


# --- FaultInjector -----------------------------------------------------------------------


def plans(config: ServerConfig, n: int = 200, docs: int = 3) -> list[Any]:
    injector = FaultInjector(config)
    return [injector.plan(docs) for _ in range(n)]


def test_default_plan_is_no_fault_no_delay() -> None:
    assert {(p.fault, p.delay_s, p.tail) for p in plans(ServerConfig())} == {(Fault.NONE, 0, False)}


@pytest.mark.parametrize(
    ("kwargs", "docs", "delay_s"),
    [
        ({"latency_ms": 10}, 5, 0.010),
        ({"latency_ms": 10, "per_doc_latency_ms": 2}, 5, 0.020),
        ({"per_doc_latency_ms": 2}, 0, 0.0),
        ({"latency_ms": 10, "tail_probability": 1, "tail_multiplier": 3}, 1, 0.030),
    ],
)
def test_plan_delay(kwargs: dict[str, Any], docs: int, delay_s: float) -> None:
    plan = FaultInjector(ServerConfig(**kwargs)).plan(docs)
    assert plan.delay_s == pytest.approx(delay_s)


def test_jitter_stays_in_bounds_and_clamps_at_zero() -> None:
    delays = [p.delay_s for p in plans(ServerConfig(latency_ms=10, jitter_ms=5, seed=1))]
    assert all(0.005 <= d <= 0.015 for d in delays)
    assert len(set(delays)) > 100
    clamped = [p.delay_s for p in plans(ServerConfig(latency_ms=1, jitter_ms=5, seed=1))]
    assert min(clamped) == 0.0
    assert max(clamped) <= 0.006


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        (
            {"error_503_rate": 1, "error_429_rate": 1, "drop_rate": 1, "malformed_rate": 1},
            Fault.ERROR_503,
        ),
        ({"error_429_rate": 1, "drop_rate": 1, "malformed_rate": 1}, Fault.ERROR_429),
        ({"drop_rate": 1, "malformed_rate": 1}, Fault.DROP),
        ({"malformed_rate": 1}, Fault.MALFORMED),
    ],
)
def test_faults_are_checked_in_a_fixed_order(rates: dict[str, Any], expected: Fault) -> None:
    assert {p.fault for p in plans(ServerConfig(**rates), n=20)} == {expected}


@pytest.mark.parametrize(
    "knob", ["error_503_rate", "error_429_rate", "drop_rate", "malformed_rate"]
)
def test_rates_are_probabilities(knob: str) -> None:
    kwargs: dict[str, Any] = {"seed": 3, knob: 0.25}
    hits = sum(p.fault is not Fault.NONE for p in plans(ServerConfig(**kwargs), n=4000))
    assert 800 < hits < 1200


def test_same_seed_same_plans() -> None:
    cfg = ServerConfig(seed=42, jitter_ms=5, latency_ms=5, error_503_rate=0.3, drop_rate=0.3)
    assert plans(cfg) == plans(cfg)
    injector = FaultInjector(cfg, rng=random.Random(42))
    assert [injector.plan(3) for _ in range(200)] == plans(cfg)


def test_turning_on_a_fault_does_not_shift_the_others() -> None:
    # Every plan takes six draws, so the 503 decisions and delays for a seed stay put.
    base = plans(ServerConfig(seed=7, jitter_ms=5, latency_ms=5, error_503_rate=0.3))
    more = plans(ServerConfig(seed=7, jitter_ms=5, latency_ms=5, error_503_rate=0.3, drop_rate=0.5))
    assert [p.delay_s for p in base] == [p.delay_s for p in more]
    assert [p.fault is Fault.ERROR_503 for p in base] == [p.fault is Fault.ERROR_503 for p in more]
    assert any(p.fault is Fault.DROP for p in more)


def test_malformations_take_turns() -> None:
    kinds = [p.malformation for p in plans(ServerConfig(malformed_rate=1), n=4)]
    assert kinds == [
        Malformation.TRUNCATED_JSON,
        Malformation.WRONG_COUNT,
        Malformation.MISSING_SCORES,
        Malformation.TRUNCATED_JSON,
    ]


# --- body validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "queries", "documents"),
    [
        ({"query": "q", "documents": ["a", "b"]}, ["q"], ["a", "b"]),
        ({"queries": ["q"], "documents": ["a", "b"]}, ["q"], ["a", "b"]),
        ({"queries": ["q1", "q2"], "documents": ["a", "b"]}, ["q1", "q2"], ["a", "b"]),
        ({"query": "q", "queries": None, "documents": []}, ["q"], []),
        ({"query": "q", "documents": ["a"], "instruction": "x", "top_n": 3}, ["q"], ["a"]),
    ],
)
def test_parse_body_accepts(body: object, queries: list[str], documents: list[str]) -> None:
    assert parse_body(json.dumps(body).encode()) == (queries, documents)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{not json", "Invalid JSON"),
        (b"\xff\xfe\x00", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"query": "q"}', "Field required: documents"),
        (b'{"query": "q", "documents": "a"}', "documents must be a list of strings"),
        (b'{"query": "q", "documents": ["a", 3]}', "documents[1] is int"),
        (b'{"documents": ["a"]}', "Field required: query"),
        (b'{"query": 1, "documents": ["a"]}', "query must be a string"),
        (b'{"query": "q", "queries": ["q"], "documents": ["a"]}', "not both"),
        (b'{"queries": "q", "documents": ["a"]}', "queries must be a list of strings"),
        (b'{"queries": [null], "documents": ["a"]}', "queries[0] is NoneType"),
        (b'{"queries": ["a", "b"], "documents": ["a", "b", "c"]}', "queries has length 2"),
        (b'{"queries": [], "documents": ["a"]}', "queries has length 0"),
    ],
)
def test_parse_body_rejects_naming_the_problem(raw: bytes, detail: str) -> None:
    with pytest.raises(InvalidBodyError, match=detail.replace("[", r"\[").replace("]", r"\]")):
        parse_body(raw)


# --- the app over ASGI -------------------------------------------------------------------


async def test_single_query_form() -> None:
    async with client_for() as client:
        response = await client.post(URL, json={"query": QUERY, "documents": DOCS})
    assert response.status_code == 200
    body = response.json()
    assert body["scores"] == score_pairs([QUERY], DOCS)
    assert body["scores"][0] > body["scores"][1]
    # 6 query words per pair, 10 + 6 document words.
    assert body["input_tokens"] == 6 * 2 + 10 + 6
    assert len(body["request_id"]) == 32
    assert response.headers["x-request-id"] == body["request_id"]
    status = body["inference_status"]
    assert status["status"] == "succeeded"
    assert status["cost"] == 0.0
    assert status["tokens_input"] == body["input_tokens"]
    assert isinstance(status["runtime_ms"], int)


@pytest.mark.parametrize(
    "queries", [[QUERY], ["capital of Germany", "capital of France"]], ids=["one", "per-doc"]
)
async def test_queries_form(queries: list[str]) -> None:
    async with client_for() as client:
        response = await client.post(URL, json={"queries": queries, "documents": DOCS})
    assert response.status_code == 200
    assert response.json()["scores"] == score_pairs(queries, DOCS)


async def test_scores_are_pointwise_over_http() -> None:
    async with client_for() as client:
        together = await client.post(URL, json={"query": QUERY, "documents": DOCS})
        alone = [await client.post(URL, json={"query": QUERY, "documents": [d]}) for d in DOCS]
    assert together.json()["scores"] == [r.json()["scores"][0] for r in alone]


async def test_empty_documents() -> None:
    async with client_for() as client:
        response = await client.post(URL, json={"query": QUERY, "documents": []})
    assert response.status_code == 200
    assert response.json()["scores"] == []
    assert response.json()["input_tokens"] == 0


async def test_invalid_body_is_422_with_detail() -> None:
    async with client_for() as client:
        response = await client.post(
            URL, content=b"{oops", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("Invalid JSON body")
    assert "x-request-id" in response.headers


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("GET", "/nope", 404, {"detail": "Not Found"}),
        ("POST", "/v1/nope", 404, {"detail": "Not Found"}),
        ("GET", URL, 405, {"detail": "Method Not Allowed"}),
        ("GET", "/healthz", 200, {"status": "ok"}),
    ],
)
async def test_routing(method: str, path: str, status: int, body: object) -> None:
    async with client_for() as client:
        response = await client.request(method, path)
    assert response.status_code == status
    assert response.json() == body


@pytest.mark.parametrize(
    ("model", "status"),
    [("Qwen/Qwen3-Reranker-4B", 200), (MODEL, 200), ("Qwen/Qwen3-Reranker-8B", 404), ("", 404)],
)
async def test_known_models(model: str, status: int) -> None:
    cfg = ServerConfig(known_models=frozenset({"Qwen/Qwen3-Reranker-4B", MODEL}))
    async with client_for(cfg) as client:
        response = await client.post(
            f"/v1/inference/{model}", json={"query": "q", "documents": ["d"]}
        )
    assert response.status_code == status
    if status == 404:
        assert response.json() == {"error": {"message": f"Model not found: {model}"}}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer sk-wrong-secret"}, 401),
        ({"authorization": "Basic sk-test"}, 401),
        ({"authorization": "sk-test"}, 401),
        ({"authorization": "Bearer sk-test"}, 200),
        ({"authorization": "bearer sk-test"}, 200),
    ],
)
async def test_auth(headers: dict[str, str], status: int) -> None:
    async with client_for(ServerConfig(api_key="sk-test")) as client:
        response = await client.post(URL, json={"query": "q", "documents": ["d"]}, headers=headers)
        health = await client.get("/healthz")
    assert response.status_code == status
    assert health.status_code == 200
    if status == 401:
        assert response.json() == {"error": {"message": "Invalid API key"}}
        assert "sk-" not in response.text


async def test_batch_too_large_is_413() -> None:
    async with client_for(ServerConfig(max_batch_size=2)) as client:
        ok = await client.post(URL, json={"query": "q", "documents": ["a", "b"]})
        too_big = await client.post(URL, json={"query": "q", "documents": ["a", "b", "c"]})
    assert ok.status_code == 200
    assert too_big.status_code == 413
    assert too_big.json() == {"error": {"message": "batch size 3 > maximum allowed batch size 2"}}


async def test_503() -> None:
    async with client_for(ServerConfig(error_503_rate=1, retry_after_s=3)) as client:
        response = await client.post(URL, json={"query": "q", "documents": ["d"]})
    assert response.status_code == 503
    assert "message" in response.json()["error"]
    assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    ("retry_after_s", "header"), [(None, None), (0, "0"), (1.2, "2"), (3, "3")]
)
async def test_429_with_retry_after(retry_after_s: float | None, header: str | None) -> None:
    cfg = ServerConfig(error_429_rate=1, retry_after_s=retry_after_s)
    async with client_for(cfg) as client:
        response = await client.post(URL, json={"query": "q", "documents": ["d"]})
    assert response.status_code == 429
    assert response.headers.get("retry-after") == header
    assert "message" in response.json()["error"]


async def test_malformed_bodies_take_turns() -> None:
    async with client_for(ServerConfig(malformed_rate=1)) as client:
        responses = [
            await client.post(URL, json={"query": QUERY, "documents": DOCS}) for _ in range(3)
        ]
        stats = (await client.get("/stats")).json()
    assert [r.status_code for r in responses] == [200, 200, 200]
    with pytest.raises(json.JSONDecodeError):
        json.loads(responses[0].content)
    assert len(responses[1].json()["scores"]) == len(DOCS) - 1
    assert "scores" not in responses[2].json()
    assert stats["malformed"] == 3
    assert stats["status_counts"] == {"200": 3}


async def test_drop_sends_headers_then_an_incomplete_body() -> None:
    # httpx.ASGITransport insists on complete responses, so drive the ASGI app directly.
    app = create_app(ServerConfig(drop_rate=1))
    body = json.dumps({"query": QUERY, "documents": DOCS}).encode()
    messages: list[Message] = []
    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return requests.pop() if requests else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
    }
    await app(scope, receive, send)
    start, chunk = messages
    assert start["type"] == "http.response.start"
    declared = int(dict(start["headers"])[b"content-length"])
    assert chunk["more_body"] is True
    assert 0 < len(chunk["body"]) < declared

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        stats = (await client.get("/stats")).json()
    assert stats["dropped"] == 1
    assert stats["status_counts"] == {}


async def test_stats_and_reset() -> None:
    async with client_for() as client:
        await client.post(URL, json={"query": "q", "documents": ["a", "b"]})
        await client.post(URL, json={"query": "q", "documents": ["a", "b", "c"]})
        await client.post(URL, content=b"nope")
        await client.get("/nope")
        stats = (await client.get("/stats")).json()
        reset = (await client.post("/stats/reset")).json()
        after = (await client.get("/stats")).json()
    assert stats == {
        "requests": 3,
        "documents": 5,
        "in_flight": 0,
        "max_in_flight": 1,
        "processing": 0,
        "max_processing": 1,
        "status_counts": {"200": 2, "422": 1},
        "dropped": 0,
        "malformed": 0,
        "refusals": {},
        "first_request_s": stats["first_request_s"],
        "last_request_s": stats["last_request_s"],
    }
    assert stats["first_request_s"] <= stats["last_request_s"]
    zero: dict[str, object] = {k: ({} if k in ("status_counts", "refusals") else 0) for k in stats}
    zero["first_request_s"] = zero["last_request_s"] = None
    assert reset == after == zero


async def test_capacity_queues_requests_and_in_flight_counts_the_queue() -> None:
    cfg = ServerConfig(latency_ms=20, capacity=2)
    async with client_for(cfg) as client:
        statuses: list[int] = []

        async def one() -> None:
            response = await client.post(URL, json={"query": "q", "documents": ["d"]})
            statuses.append(response.status_code)

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(one)
        elapsed = time.perf_counter() - started
        stats = (await client.get("/stats")).json()
    assert statuses == [200] * 6
    assert stats["max_in_flight"] == 6
    assert stats["max_processing"] == 2
    assert elapsed >= 3 * 0.020 * 0.95  # three waves of two


async def test_latency_and_in_flight_during_a_request() -> None:
    async with client_for(ServerConfig(latency_ms=30)) as client:
        during: dict[str, Any] = {}
        result: dict[str, Any] = {}

        async def slow() -> None:
            response = await client.post(URL, json={"query": "q", "documents": ["d"]})
            result.update(response.json())

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            await anyio.sleep(0.01)
            during.update((await client.get("/stats")).json())
        elapsed = time.perf_counter() - started
    assert during["in_flight"] == during["processing"] == 1
    assert elapsed >= 0.03 * 0.95
    assert result["inference_status"]["runtime_ms"] >= 28


# --- the real server on loopback ---------------------------------------------------------


@pytest.mark.integration
async def test_loopback_roundtrip_and_stats_helpers() -> None:
    cfg = ServerConfig(api_key="sk-test", known_models=frozenset({"Qwen/Qwen3-Reranker-4B"}))
    with running_server(cfg) as srv:
        assert srv.port != 0
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.base_url == srv.url + "/v1/inference"
        async with httpx.AsyncClient(
            base_url=srv.base_url, headers={"authorization": "Bearer sk-test"}
        ) as client:
            response = await client.post(
                "/Qwen/Qwen3-Reranker-4B", json={"queries": [QUERY], "documents": DOCS}
            )
            unknown = await client.post("/nope/nope", json={"query": "q", "documents": []})
        assert response.status_code == 200
        assert response.json()["scores"] == score_pairs([QUERY], DOCS)
        assert unknown.status_code == 404
        stats = srv.stats()
        assert stats["requests"] == 2
        assert stats["status_counts"] == {"200": 1, "404": 1}
        srv.reset_stats()
        assert srv.stats()["requests"] == 0


@pytest.mark.integration
async def test_loopback_dropped_connection_is_a_transport_error() -> None:
    # capacity=1 also checks the limiter works in the server's own thread and loop.
    with running_server(ServerConfig(drop_rate=1, capacity=1)) as srv:
        async with httpx.AsyncClient(base_url=srv.base_url) as client:
            with pytest.raises(httpx.TransportError) as exc_info:
                await client.post(f"/{MODEL}", json={"query": QUERY, "documents": DOCS})
        assert isinstance(exc_info.value, httpx.RemoteProtocolError)
        stats = srv.stats()
    assert stats["dropped"] == 1
    assert stats["max_processing"] == 1
    assert stats["status_counts"] == {}


async def raw_post(port: int, path: str, body: bytes) -> int:
    """One HTTP/1.1 request on its own connection, over bare sockets; returns the status.

    httpx spends a lot of CPU managing hundreds of pooled connections, so the backlog test
    speaks HTTP itself to stay fast.
    """
    head = (
        f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    data = b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(head.encode() + body)
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                data += await stream.receive()
    return int(data.split(b" ", 2)[1])


@pytest.mark.integration
async def test_loopback_500_concurrent_connections() -> None:
    n = 500
    body = json.dumps({"query": "q", "documents": ["q"]}).encode()
    statuses: list[int] = []
    with running_server(ServerConfig(latency_ms=1000)) as srv:

        async def one() -> None:
            statuses.append(await raw_post(srv.port, f"/v1/inference/{MODEL}", body))

        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
        stats = srv.stats()
    assert statuses == [200] * n
    # All were held by the server at once: no connection limit, and the backlog took them
    # (each is held for 1 s, ample time for all 500 to connect even on a busy machine).
    assert stats["max_in_flight"] == n


@pytest.mark.integration
def test_running_server_shuts_down_cleanly() -> None:
    baseline = threading.active_count()
    # The client keeps its keep-alive connection open across the server's shutdown.
    with httpx.Client() as client:
        with running_server() as srv:
            assert threading.active_count() == baseline + 1
            assert client.get(srv.url + "/healthz").json() == {"status": "ok"}
            port = srv.port
            stopping = time.perf_counter()
        assert time.perf_counter() - stopping < 1.0
    assert threading.active_count() == baseline
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
