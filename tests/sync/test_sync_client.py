"""SyncRerankClient against the real local server: same results, its own thread, Jupyter."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rerank_async import (
    AuthenticationError,
    ClientArguments,
    Limits,
    RerankClient,
    RerankRequest,
    SyncRerankClient,
)
from rerank_async.server import RunningServer, ServerConfig, running_server

pytestmark = pytest.mark.integration

QUERY = "solar battery storage"
DOCS = [f"solar {'battery ' * (i % 5)}storage item {i}" for i in range(50)] + ["coffee"] * 3


@pytest.fixture(scope="module")
def sync_server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=2, latency_ms=10)) as running:
        yield running


def new_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t not in before and t.is_alive()}


async def test_same_results_as_the_async_client(sync_server: RunningServer) -> None:
    # Also the Jupyter case: this test's body runs inside a running event loop, and the
    # sync client is called from it directly (it blocks this loop's thread meanwhile).
    options = {"base_url": sync_server.base_url, "batch_size": 8, "max_concurrency": 4}
    async with RerankClient(**options) as async_client:  # type: ignore[arg-type]
        expected = await async_client.rerank(QUERY, DOCS, top_k=5)
    asyncio.get_running_loop()  # still inside it
    with SyncRerankClient(**options) as client:  # type: ignore[arg-type]
        result = client.rerank(QUERY, DOCS, top_k=5)
        scores = client.score(QUERY, DOCS)
    assert result.scores == expected.scores == scores
    assert result.results == expected.results
    assert result.usage == expected.usage
    assert result.usage.unique_documents == 51


def test_rerank_many_as_a_sync_iterator(sync_server: RunningServer) -> None:
    requests = [RerankRequest(QUERY, DOCS[i : i + 5], id=f"q{i}", top_k=2) for i in range(20)]
    with SyncRerankClient(base_url=sync_server.base_url, max_concurrency=4) as client:
        with client.rerank_many(requests) as outcomes:
            got = {outcome.id: outcome for outcome in outcomes}
        direct = {r.id: client.rerank(r.query, r.documents, top_k=2) for r in requests}
    assert set(got) == set(direct)
    for request_id, outcome in got.items():
        assert outcome.ok
        assert outcome.result is not None
        assert outcome.result.scores == direct[request_id].scores


def test_leaving_rerank_many_early_cancels_the_rest(sync_server: RunningServer) -> None:
    requests = ((QUERY, DOCS) for _ in range(1000))
    with SyncRerankClient(base_url=sync_server.base_url, max_concurrency=2) as client:
        sync_server.reset_stats()
        with client.rerank_many(requests, max_pending=2) as outcomes:
            first = next(iter(outcomes))
        assert first.ok
        # Bounded input read and cancellation on exit: far fewer than 1000 requests ran.
        assert sync_server.stats()["requests"] < 100
        assert client.rerank(QUERY, ["solar"]).scores[0] > 0  # still usable


def test_errors_are_the_async_clients_errors(sync_server: RunningServer) -> None:
    with running_server(ServerConfig(api_key="right")) as locked:
        with SyncRerankClient(base_url=locked.base_url, api_key="wrong", max_retries=0) as client:
            with pytest.raises(AuthenticationError):
                client.rerank(QUERY, DOCS)
            with pytest.raises(ValueError, match="top_k"):
                client.rerank(QUERY, DOCS, top_k=0)


def test_closing_stops_the_thread_and_later_calls_fail(sync_server: RunningServer) -> None:
    before = set(threading.enumerate())
    client = SyncRerankClient(base_url=sync_server.base_url)
    started = new_threads(before)
    assert len(started) == 1
    assert client.rerank(QUERY, DOCS[:3]).scores
    client.close()
    client.close()  # idempotent
    (thread,) = started
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.rerank(QUERY, DOCS)
    with pytest.raises(RuntimeError, match="closed"):
        client.rerank_many([(QUERY, DOCS)]).__enter__()

    before = set(threading.enumerate())
    with SyncRerankClient(base_url=sync_server.base_url) as scoped:
        (thread,) = new_threads(before)
        scoped.score(QUERY, DOCS[:2])
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_bad_options_raise_and_leave_no_thread() -> None:
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="batch_size"):
        SyncRerankClient(batch_size=0)
    for thread in new_threads(before):
        thread.join(timeout=5)
    assert not new_threads(before)


def test_threads_share_one_bound(sync_server: RunningServer) -> None:
    with SyncRerankClient(
        base_url=sync_server.base_url,
        batch_size=4,
        max_concurrency=3,
        limits=Limits(min_batch_size=4),
    ) as client:
        sync_server.reset_stats()
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = list(pool.map(lambda _: client.rerank(QUERY, DOCS[:40]), range(6)))
    stats = sync_server.stats()
    assert stats["requests"] == 6 * 10
    assert stats["max_in_flight"] <= 3
    assert all(r.scores == results[0].scores for r in results)


def test_same_options_and_properties_as_rerank_client() -> None:
    # The option list is written once, in RerankClient's signature; the sync client takes
    # **Unpack[ClientArguments], whose keys must be exactly those parameters.
    async_params = set(inspect.signature(RerankClient.__init__).parameters) - {"self"}
    assert set(ClientArguments.__annotations__) == async_params
    sync_params = inspect.signature(SyncRerankClient.__init__).parameters
    assert [p.kind for p in sync_params.values()][1:] == [inspect.Parameter.VAR_KEYWORD]
    with pytest.raises(TypeError, match="makes its own connections"):
        SyncRerankClient(http_client=httpx.AsyncClient())
    with SyncRerankClient(model="acme/m", base_url="http://127.0.0.1:9/v1", batch_size=7) as c:
        twin = RerankClient(model="acme/m", base_url="http://127.0.0.1:9/v1", batch_size=7)
        assert c.options == twin.options
        assert (c.model, c.provider.name, c.batch_limit) == ("acme/m", "deepinfra", 7)
        assert repr(c) == "Sync" + repr(twin)
        assert not c.is_closed


def test_a_client_left_open_does_not_keep_the_interpreter_alive(
    sync_server: RunningServer,
) -> None:
    code = (
        "from rerank_async import SyncRerankClient; "
        f"c = SyncRerankClient(base_url={sync_server.base_url!r}); "
        "print(c.score('solar', ['solar panel'])[0] > 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "True"
