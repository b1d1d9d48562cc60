"""A client in a forked child returns or raises within 5 s, never hangs (docs/lifecycle.md).

A client that never sent from the parent works in the child (gunicorn's preload: a
module-level client, used only by the workers); one that did raises ClientClosedError
at once. Every child runs under a timeout and is killed past it, so no test can hang.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Callable

import pytest

from rerank_async import ClientClosedError, RerankClient, SyncRerankClient
from rerank_async.server import RunningServer
from rerank_async.server._scoring import score as reference_score

from ..conftest import ENGINES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only"),
    # Python 3.12+ warns about forking a process with threads (the server's is one).
    pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning"),
]

QUERY = "solar battery storage"
DOCUMENTS = [f"solar panel {i}" for i in range(8)]
EXPECTED = [reference_score(QUERY, d) for d in DOCUMENTS]
CHILD_BOUND_S = 5.0


def outcome_in_child(action: Callable[[], str]) -> tuple[str, float]:
    """Run ``action`` in an ``os.fork()`` child; its one-line answer and the time it took."""
    read_end, write_end = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: answer on the pipe, and never return into pytest
        os.close(read_end)
        try:
            answer = action()
        except BaseException as error:  # reported to the parent, whatever it is
            answer = f"{type(error).__name__}: {error}"
        os.write(write_end, answer.encode()[:4000])
        os._exit(0)
    os.close(write_end)
    while time.monotonic() - started < CHILD_BOUND_S + 5:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read_end)
        pytest.fail("the child hung")
    elapsed = time.monotonic() - started
    with os.fdopen(read_end, "rb") as answer:
        return answer.read().decode(), elapsed


def scores_or_error(client: RerankClient, runner: asyncio.Runner | None = None) -> str:
    """Score on ``runner``'s loop (a client stays on the loop it first sent from), or a new one."""
    call = asyncio.wait_for(client.score(QUERY, DOCUMENTS), CHILD_BOUND_S)
    scores = asyncio.run(call) if runner is None else runner.run(call)
    return "ok" if scores == EXPECTED else f"wrong scores {scores}"


@ENGINES
def test_a_client_used_in_the_parent_raises_at_once_in_a_fork(
    engine: str, server: RunningServer
) -> None:
    client = RerankClient(http_client=engine, base_url=server.base_url)  # type: ignore[arg-type]
    with asyncio.Runner() as runner:
        assert scores_or_error(client, runner) == "ok"  # connections kept alive in the parent

        def use_and_close() -> str:
            try:
                return scores_or_error(client)
            finally:
                asyncio.run(client.aclose())  # releases nothing of the parent's

        answer, elapsed = outcome_in_child(use_and_close)
        assert answer.startswith("ClientClosedError"), answer
        assert "fork" in answer
        assert "Create a client in each process" in answer
        assert elapsed < CHILD_BOUND_S
        assert scores_or_error(client, runner) == "ok"  # the parent's client is untouched
        runner.run(client.aclose())


@ENGINES
def test_a_client_never_used_in_the_parent_works_in_a_fork(
    engine: str, server: RunningServer
) -> None:
    client = RerankClient(http_client=engine, base_url=server.base_url)  # type: ignore[arg-type]

    def use_and_close() -> str:
        with asyncio.Runner() as runner:
            try:
                return scores_or_error(client, runner)
            finally:
                runner.run(client.aclose())

    answer, elapsed = outcome_in_child(use_and_close)
    assert answer == "ok"
    assert elapsed < CHILD_BOUND_S
    use_and_close()  # and in the parent, where it was never used either


@ENGINES
def test_a_sync_client_in_a_fork(engine: str, server: RunningServer) -> None:
    fresh = SyncRerankClient(http_client=engine, base_url=server.base_url)  # type: ignore[arg-type]
    used = SyncRerankClient(http_client=engine, base_url=server.base_url)  # type: ignore[arg-type]
    assert used.score(QUERY, DOCUMENTS) == EXPECTED

    def both() -> str:
        fresh_ok = fresh.score(QUERY, DOCUMENTS) == EXPECTED
        fresh.close()
        try:
            used.score(QUERY, DOCUMENTS)
        except ClientClosedError as error:
            used.close()  # releases nothing of the parent's, and returns at once
            return f"{fresh_ok} ClientClosedError {error}"
        return f"{fresh_ok} no error"

    answer, elapsed = outcome_in_child(both)
    assert answer.startswith("True ClientClosedError"), answer
    assert elapsed < CHILD_BOUND_S
    assert used.score(QUERY, DOCUMENTS) == EXPECTED
    fresh.close()
    used.close()


_SHARED: dict[str, RerankClient] = {}


def _worker(base_url: str, queue: multiprocessing.Queue[str]) -> None:
    try:
        queue.put(scores_or_error(_SHARED["client"]))
    except BaseException as error:  # reported to the parent, whatever it is
        queue.put(f"{type(error).__name__}: {error}")


@ENGINES
@pytest.mark.parametrize("used_in_parent", [False, True])
def test_multiprocessing_fork_start_method(
    engine: str, used_in_parent: bool, server: RunningServer
) -> None:
    client = _SHARED["client"] = RerankClient(
        http_client=engine,  # type: ignore[arg-type]
        base_url=server.base_url,
    )
    runner = asyncio.Runner()
    if used_in_parent:
        assert scores_or_error(client, runner) == "ok"
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = context.Queue()
    process = context.Process(target=_worker, args=(server.base_url, queue))
    started = time.monotonic()
    process.start()
    process.join(CHILD_BOUND_S + 5)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail("the child hung")
    answer = queue.get(timeout=1)
    assert time.monotonic() - started < CHILD_BOUND_S
    if used_in_parent:
        assert answer.startswith("ClientClosedError"), answer
    else:
        assert answer == "ok"
    runner.run(client.aclose())
    runner.close()
