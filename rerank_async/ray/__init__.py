"""Bulk reranking on Ray Data (the optional ``ray`` extra).

``rerank_dataset`` adds scores to a Ray ``Dataset`` on a pool of actors, each with one
``RerankClient`` that batches across rows, retries, and honours ``Retry-After``;
``RerankBatches`` is the callable class behind it, for your own ``map_batches`` call::

    import ray
    from rerank_async.ray import rerank_dataset

    ds = ray.data.read_parquet("s3://bucket/queries/")  # id, query, documents
    scored = rerank_dataset(ds, max_concurrency=32, actors=4, client_options={...})
    scored.write_parquet("s3://bucket/scored/")

The provider's totals (``max_concurrency``, and any other per-provider limit) are divided
across the actors, so that the pool together never exceeds them. ``import rerank_async``
never imports this package; importing it without Ray Data raises an `ImportError` that
names the extra to install. See ``docs/distributed.md``.
"""

from __future__ import annotations

try:
    import pyarrow  # noqa: F401
    import ray.data  # noqa: F401
except ImportError as _err:
    _msg = (
        "rerank_async.ray needs the optional Ray Data dependencies (ray[data], pyarrow): "
        "install rerank-async[ray], e.g. pip install 'rerank-async[ray]'"
    )
    raise ImportError(_msg, name=_err.name) from _err

from ._dataset import rerank_dataset
from ._limits import split_limits
from ._udf import Layout, OnError, RerankBatches

__all__ = ["Layout", "OnError", "RerankBatches", "rerank_dataset", "split_limits"]
