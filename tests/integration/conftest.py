"""A real local reranker server on loopback, shared by the integration tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.server import RunningServer, ServerConfig, running_server


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    """A fault-free server; tests reset its stats before use."""
    with running_server(ServerConfig(seed=1)) as running:
        yield running
