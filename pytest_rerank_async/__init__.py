"""The pytest plugin of rerank-async: a local reranker server, with its fault knobs, for tests.

Installed with the package (a ``pytest11`` entry point), it adds:

- ``reranker_server``: starts the local reranker server on a free loopback port for one
  test and yields a ``RerankerServer`` (``base_url``, ``stats()``, ``reset_stats()``,
  ``client()``, ``sync_client()``);
- ``reranker_server_config``: the ``ServerConfig`` it starts with; override this fixture to
  change it for a module or a directory;
- the ``@pytest.mark.reranker_server(**fields)`` marker: ``ServerConfig`` fields for one
  test, applied on top of ``reranker_server_config``.

This module imports nothing but pytest: pytest loads every installed plugin at start-up,
so the server (starlette, uvicorn) and the client are imported only when a test asks for
the fixture. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rerank_async.server import ServerConfig

    from ._server import RerankerServer

__all__ = ["reranker_server", "reranker_server_config"]

MARKER = "reranker_server"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**fields): ServerConfig fields (latency_ms, error_503_rate, ...) for the "
        "reranker_server fixture of this test",
    )


@pytest.fixture
def reranker_server_config() -> ServerConfig | None:
    """The ``ServerConfig`` of ``reranker_server``; ``None`` for the defaults (no faults).

    Override it in a ``conftest.py`` or a test module to change every test's server there.
    """
    return None


@pytest.fixture
def reranker_server(
    request: pytest.FixtureRequest, reranker_server_config: ServerConfig | None
) -> Iterator[RerankerServer]:
    """The local reranker server on a free loopback port, for this test.

    Its settings are ``reranker_server_config`` with the fields of the test's
    ``@pytest.mark.reranker_server(...)`` on top. It is stopped, and the sync clients
    its ``sync_client()`` made are closed, when the test ends.
    """
    from ._server import start_server  # the server's dependencies, only when used

    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and marker.args:
        raise TypeError(
            f"@pytest.mark.{MARKER} takes ServerConfig fields as keywords, "
            f"not positional arguments: {marker.args!r}"
        )
    fields = dict(marker.kwargs) if marker is not None else {}
    with start_server(reranker_server_config, fields) as server:
        yield server
