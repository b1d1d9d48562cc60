"""Request bodies as compact UTF-8 JSON, as fast as the platform allows.

A leaf: it imports nothing from the package. orjson where it is installed (a
dependency on CPython), pydantic_core's encoder otherwise (PyPy), both with
the standard library's as the fallback for text neither can encode.

Measured (docs/benchmarks.md, "Body encoding"): a 32-document body takes
8.3 µs with ``json.dumps``, 1.1 µs with ``pydantic_core.to_json`` and 0.3 µs
with orjson; a 2 MB body (1,000 documents of 2 KB) takes 5.2, 1.1 and 0.14 ms
of CPU, and up to 10, 7.9 and 1.8 ms on a busy machine. The large bodies are
what holds an event loop, hence orjson.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pydantic_core

__all__ = ["ENCODER", "dumps"]


def _pydantic_core_dumps(body: object) -> bytes:
    return pydantic_core.to_json(body)


def _fast_encoder() -> tuple[str, Callable[[object], bytes]]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - PyPy, where orjson is not installed
        return "pydantic_core", _pydantic_core_dumps
    return "orjson", orjson.dumps


# Which encoder this interpreter uses ("orjson" or "pydantic_core"), for benchmarks and bugs.
ENCODER, _encode = _fast_encoder()


def dumps(body: object) -> bytes:
    """``body`` as compact JSON in raw UTF-8 (no ``\\u`` escapes for non-ASCII text).

    Text with a lone surrogate (``"\\ud800"``, which has no UTF-8 form) is sent
    ``\\u``-escaped, as the standard library writes it, instead of failing.
    """
    try:
        return _encode(body)
    except (TypeError, ValueError):  # orjson.JSONEncodeError, PydanticSerializationError
        return json.dumps(body, separators=(",", ":")).encode()
