"""`rerank_dataset` on a real local Ray cluster against the real local server, with faults."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from rerank_async import RetryPolicy
from rerank_async.ray import RerankBatches, rerank_dataset
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

from .conftest import make_pairs

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

TOTAL_CONCURRENCY = 6


@pytest.fixture(scope="module")
def faulty_server() -> Iterator[RunningServer]:
    config = ServerConfig(
        seed=11, latency_ms=3, error_503_rate=0.05, error_429_rate=0.03, retry_after_s=1,
        drop_rate=0.02,
    )  # fmt: skip
    with running_server(config) as running:
        yield running


def client_options(server: RunningServer) -> dict[str, Any]:
    return {"base_url": server.base_url, "model": "m", "api_key": "k", "batch_size": 64,
            "max_retries": 12, "retry": RetryPolicy(initial_delay=0.0, max_retry_after=0.05),
            "timeout": 20.0}  # fmt: skip


def blocks(rows: list[dict[str, Any]], count: int) -> Any:
    """A dataset of ``count`` blocks: Ray hands each actor whole blocks, so one is not enough."""
    import ray

    table = pa.Table.from_pylist(rows)
    size = -(-len(rows) // count)
    return ray.data.from_arrow([table.slice(start, size) for start in range(0, len(rows), size)])


def scored_rows(dataset: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        rows.extend(
            batch.select(["pair_id", "query", "document", "score", "error_type"]).to_pylist()
        )
    return rows


def test_20000_pairs_with_faults_are_each_scored_once_within_the_total_concurrency(
    faulty_server: RunningServer,
) -> None:
    pairs = make_pairs(200, 100, seed=1)
    faulty_server.reset_stats()
    dataset = blocks(pairs, 10)
    scored = rerank_dataset(
        dataset, max_concurrency=TOTAL_CONCURRENCY, actors=2, layout="pair",
        client_options=client_options(faulty_server), batch_size=2000,
    )  # fmt: skip
    rows = scored_rows(scored)

    assert sorted(row["pair_id"] for row in rows) == list(range(len(pairs)))  # each exactly once
    assert [row["error_type"] for row in rows if row["error_type"]] == []
    for row in rows:
        assert row["score"] == reference_score(row["query"], row["document"]), row["pair_id"]
    stats = faulty_server.stats()
    assert stats["max_in_flight"] <= TOTAL_CONCURRENCY
    assert stats["max_in_flight"] >= TOTAL_CONCURRENCY // 2  # both actors did run at once
    faults = stats["status_counts"].get("503", 0) + stats["status_counts"].get("429", 0)
    assert faults > 0  # the faults really happened
    assert stats["dropped"] > 0


class _DiesOnce(RerankBatches):
    """Kills its actor's process on the first batch holding row ``doomed_pair``, once."""

    def __init__(self, *, marker: str, doomed_pair: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marker = marker
        self.doomed_pair = doomed_pair

    async def __call__(self, batch: pa.Table) -> pa.Table:
        if self.doomed_pair in batch.column("pair_id").to_pylist():
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)  # the actor's process dies mid-job, its requests in flight
        return await super().__call__(batch)


def test_an_actor_killed_mid_job_still_gives_every_row_once(tmp_path: Path) -> None:
    import ray

    marker = tmp_path / "died"
    pairs = make_pairs(40, 50, seed=2)
    with running_server(ServerConfig(seed=12, latency_ms=5)) as server:
        scored = blocks(pairs, 10).map_batches(
            _DiesOnce,
            fn_constructor_kwargs={
                "marker": str(marker), "doomed_pair": 1234, "max_concurrency": 4, "actors": 2,
                "layout": "pair", "client_options": client_options(server),
            },
            batch_format="pyarrow", batch_size=200, num_cpus=0.25,
            compute=ray.data.ActorPoolStrategy(size=2),
        )  # fmt: skip
        rows = scored_rows(scored)
    assert marker.exists()  # the actor did die
    assert sorted(row["pair_id"] for row in rows) == list(range(len(pairs)))
    assert all(row["error_type"] is None for row in rows)
    for row in rows:
        assert row["score"] == reference_score(row["query"], row["document"])
