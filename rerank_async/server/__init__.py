"""The local DeepInfra-compatible reranker server (the optional ``server`` extra).

For demos, benchmarks and integration tests: it answers DeepInfra's reranker API with a
deterministic lexical scorer and can inject latency, queueing and faults on demand::

    from rerank_async.server import ServerConfig, running_server

    with running_server(ServerConfig(latency_ms=20, capacity=4)) as srv:
        ...  # point a client at srv.base_url

``import rerank_async`` never imports this package; importing it without starlette and
uvicorn raises an `ImportError` that names the extra to install. See ``docs/server.md``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as _err:
    _msg = (
        "rerank_async.server needs the optional server dependencies (starlette, uvicorn): "
        "install rerank-async[server], e.g. pip install 'rerank-async[server]'"
    )
    raise ImportError(_msg, name=_err.name) from _err

from ._app import create_app
from ._config import ServerConfig
from ._runner import RunningServer, running_server, serve
from ._stats import ServerStats

__all__ = [
    "RunningServer",
    "ServerConfig",
    "ServerStats",
    "create_app",
    "running_server",
    "serve",
]
