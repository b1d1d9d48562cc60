"""Score a Parquet dataset on Ray Data against the local reranker server.

Run it on any machine with ``pip install 'rerank-async[ray,server]'``::

    python examples/ray_bulk.py

It writes 500 queries of 40 candidates to a Parquet file, starts the local server (20 ms
per request, 8 at once, 5% 503s and 2% 429s), starts a local Ray cluster, scores the file
with 2 actors that share a total of 8 requests in flight, writes the scores to a Parquet
directory and prints the best document of the first queries. For a real provider, replace
``client_options`` (``provider=``, ``model=``, ``api_key=``) and point ``read_parquet`` and
``write_parquet`` at your storage (``s3://...``, ``gs://...``).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from rerank_async import RetryPolicy
from rerank_async.ray import rerank_dataset
from rerank_async.server import ServerConfig, running_server

WORDS = ["solar", "battery", "storage", "grid", "panel", "roof", "energy", "coffee", "city"]


def make_queries(path: Path, count: int, candidates: int) -> None:
    rng = random.Random(0)
    rows = [
        {
            "id": f"q{i}",
            "query": " ".join(rng.sample(WORDS, 3)),
            "documents": [" ".join(rng.choices(WORDS, k=6)) for _ in range(candidates)],
        }
        for i in range(count)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)


def main() -> None:
    faults = ServerConfig(latency_ms=20, capacity=8, error_503_rate=0.05, error_429_rate=0.02,
                          retry_after_s=1, seed=0)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, running_server(faults) as server:
        source, target = Path(tmp) / "queries.parquet", Path(tmp) / "scored"
        make_queries(source, 500, 40)
        ray.init(include_dashboard=False)  # or connect to a cluster: set RAY_ADDRESS
        try:
            scored = rerank_dataset(
                ray.data.read_parquet(str(source)),
                max_concurrency=8,  # the provider's total: 4 per actor
                actors=2,
                client_options={
                    "base_url": server.base_url,
                    "model": "cross-encoder/ms-marco-MiniLM-L-12-v2",
                    "api_key": "unused",
                    "batch_size": 20,
                    "retry": RetryPolicy(max_retry_after=0.5),
                },
            )
            scored.write_parquet(str(target))
        finally:
            ray.shutdown()
        table = pq.read_table(target).sort_by("id")
        failed = table.column("error_type").drop_null()
        print(f"scored {table.num_rows} queries, {len(failed)} failed")
        print(f"server: max {server.stats()['max_in_flight']} requests in flight (limit 8)")
        for row in table.slice(0, 3).to_pylist():
            best = max(range(len(row["scores"])), key=row["scores"].__getitem__)
            print(f"{row['id']}: {row['query']!r} -> {row['documents'][best]!r}")


if __name__ == "__main__":
    main()
