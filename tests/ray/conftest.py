"""One local Ray cluster for the whole session (starting one takes seconds), and data helpers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

WORDS = ["solar", "battery", "storage", "home", "grid", "panel", "roof", "energy", "coffee",
         "marathon", "volcano", "city"]  # fmt: skip
QUERIES = ["solar battery storage", "home energy grid", "coffee city marathon", "roof panel"]


def make_pairs(queries: int, per_query: int, *, seed: int) -> list[dict[str, Any]]:
    """``queries`` x ``per_query`` pair rows with a unique ``pair_id``, queries interleaved."""
    rng = random.Random(seed)
    rows = []
    for j in range(per_query):
        for q in range(queries):
            text = f"{' '.join(rng.choices(WORDS, k=5))} {q}-{j}"
            query = f"{QUERIES[q % len(QUERIES)]} {q}"
            rows.append({"pair_id": len(rows), "query": query, "document": text})
    return rows


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """``ray.init(num_cpus=2)`` once; shut down (every worker process with it) at the end."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()
