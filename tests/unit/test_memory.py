"""Decoding answers keeps nothing per answer (the cause of the soak's slow RSS growth)."""

from __future__ import annotations

import gc
import json
import tracemalloc
import uuid

import pytest

from rerank_async.providers import resolve_provider

ANSWERS = 40_000


@pytest.mark.parametrize("provider_name", ["deepinfra", "cohere"])
def test_unique_values_in_answers_are_not_kept(provider_name: str) -> None:
    """pydantic-core caches JSON strings up to 64 characters unless told keys only; a
    unique request id per answer kept about 1.3 MB per process that way."""
    provider = resolve_provider(provider_name)
    bodies = {
        "deepinfra": lambda rid: {"scores": [0.5, 0.25], "request_id": rid},
        "cohere": lambda rid: {
            "id": rid,
            "results": [{"index": 0, "relevance_score": 0.5}, {"index": 1, "relevance_score": 0.2}],
        },
    }
    make = bodies[provider_name]
    encoded = [json.dumps(make(uuid.uuid4().hex)).encode() for _ in range(ANSWERS)]
    tracemalloc.start()
    try:
        for body in encoded[:1000]:  # warm up: pydantic's own lazily built state
            provider.decode_response(body, 2)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for body in encoded[1000:]:
            provider.decode_response(body, 2)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"{grown} bytes kept after {ANSWERS} answers"
