"""Shared by the framework-adapter tests: a loopback server and a thread-pool tripwire."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from rerank_async.server import RunningServer, ServerConfig, running_server

# Haystack sends usage telemetry to PostHog unless this is off; it is read when haystack is
# first imported, which happens after conftest files are loaded. Tests talk to loopback only.
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

QUERY = "solar battery storage for the home grid"
WORDS = ["solar", "battery", "storage", "home", "grid", "panel", "roof", "energy", "coffee",
         "marathon", "volcano", "city"]  # fmt: skip


def corpus(n: int, seed: int = 3) -> list[str]:
    """``n`` distinct texts over a small vocabulary, so that scores spread and tie rarely."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=6)) + f" #{i}" for i in range(n)]


@pytest.fixture(scope="module")
def local_server() -> Iterator[RunningServer]:
    """A fault-free server with a little latency, so that batches overlap in flight."""
    with running_server(ServerConfig(seed=1, latency_ms=5)) as running:
        yield running


class ForbiddenExecutor(ThreadPoolExecutor):
    """A default executor that fails whatever is submitted to it (and records it).

    ``asyncio.to_thread``, ``loop.run_in_executor(None, ...)`` and LangChain's
    ``run_in_executor`` all use the loop's default executor: the frameworks' thread-pool
    fallbacks for components without a native async path.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted.append(getattr(fn, "__qualname__", repr(fn)))
        raise AssertionError(f"the thread pool was used: {fn!r}")


@pytest.fixture
async def no_thread_pool() -> AsyncIterator[ForbiddenExecutor]:
    """Install ``ForbiddenExecutor`` as the test loop's default executor for one test.

    Afterwards it asserts that nothing was submitted (a failure inside a framework
    might have been caught and turned into something else).
    """
    loop = asyncio.get_running_loop()
    executor = ForbiddenExecutor()
    loop.set_default_executor(executor)
    yield executor
    executor.shutdown(wait=False)
    assert executor.submitted == []
