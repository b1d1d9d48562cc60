"""Type-checked, never run: the Ray Data API as users write it must pass ``mypy --strict``."""

from __future__ import annotations

import ray.data

from rerank_async.ray import Layout, OnError, RerankBatches, rerank_dataset, split_limits


def typical_use(dataset: ray.data.Dataset) -> ray.data.Dataset:
    layout: Layout = "pair"
    on_error: OnError = "record"
    shares: dict[str, int | float] = split_limits({"max_concurrency": 32}, 4)
    per_actor: int | float = shares["max_concurrency"]
    assert per_actor == 8
    return rerank_dataset(
        dataset,
        max_concurrency=32,
        actors=4,
        provider_limits={"max_requests_per_minute": 600},
        client_options={"model": "m", "base_url": "http://127.0.0.1:8080/v1/inference"},
        layout=layout,
        on_error=on_error,
        batch_size=4096,
        num_cpus=0.5,
    )


def own_map_batches(dataset: ray.data.Dataset) -> ray.data.Dataset:
    udf = RerankBatches(max_concurrency=8, actors=2, client_options={"model": "m"})
    closed: bool = udf.closed
    assert not closed
    return dataset.map_batches(
        RerankBatches,
        fn_constructor_kwargs={"max_concurrency": 8, "actors": 2},
        compute=ray.data.ActorPoolStrategy(size=2),
        batch_format="pyarrow",
    )
