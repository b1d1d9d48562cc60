"""`rerank_dataset`: scores added to a Ray ``Dataset`` in one call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import ray.data

from .._checks import is_int, is_number
from .._client import ClientArguments
from ._udf import Layout, OnError, RerankBatches, make_spec

__all__ = ["rerank_dataset"]

# Rows per batch when none is given: with one row per query, enough queries that an
# actor's four batches in flight keep its share of the provider's slots busy; with one row
# per pair, enough pairs that a typical query's candidates fall into one batch.
DEFAULT_QUERY_ROWS: Final = 32
DEFAULT_PAIR_ROWS: Final = 4096
# CPUs each actor reserves: the work is waiting on HTTP, and an actor that reserved a whole
# CPU would starve the read and write tasks of a small cluster (on 2 CPUs, 2 actors of
# 1 CPU each deadlock the pipeline: no CPU is left to read the input).
DEFAULT_ACTOR_CPUS: Final = 0.25


def rerank_dataset(
    dataset: ray.data.Dataset,
    *,
    max_concurrency: int,
    actors: int = 1,
    provider_limits: Mapping[str, int | float] | None = None,
    client_options: ClientArguments | None = None,
    layout: Layout = "query",
    query_column: str = "query",
    documents_column: str = "documents",
    document_column: str = "document",
    scores_column: str | None = None,
    error_column: str = "error",
    error_type_column: str = "error_type",
    on_error: OnError = "record",
    batch_size: int | None = None,
    num_cpus: float = DEFAULT_ACTOR_CPUS,
    rebalance: bool = True,
) -> ray.data.Dataset:
    """Rerank every row of ``dataset`` on a pool of ``actors`` actors; lazy, like Ray Data.

    The provider's totals (``max_concurrency``, ``provider_limits``) are divided across
    the actors, so that the pool together never exceeds them. Every other argument is
    `RerankBatches`'s. The result is the input with a scores column and two error columns
    added; nothing runs until you consume it (``write_parquet``, ``iter_batches``, ...).

    Args:
        dataset: The rows to score.
        max_concurrency: The provider's total of requests in flight.
        actors: Actors in the (fixed-size) pool; each runs one client.
        provider_limits: Other per-provider totals by ``Limits`` field name
            (``max_requests_per_minute``, ``max_tokens_per_minute``).
        client_options: Other ``RerankClient`` keyword arguments.
        layout: ``"query"`` or ``"pair"``; see `RerankBatches`.
        query_column: See `RerankBatches`.
        documents_column: See `RerankBatches`.
        document_column: See `RerankBatches`.
        scores_column: See `RerankBatches`.
        error_column: See `RerankBatches`.
        error_type_column: See `RerankBatches`.
        on_error: ``"record"`` (default) or ``"raise"``.
        batch_size: Rows per batch (default 32 with ``layout="query"``, 4,096 with
            ``"pair"``). With ``"pair"``, only the pairs of a query inside one batch
            share requests.
        num_cpus: CPUs each actor reserves (default 0.25: the actors wait on HTTP).
        rebalance: Cut the input into blocks of ``batch_size`` rows first (streaming,
            no shuffle). Ray hands an actor whole blocks, so without this a dataset of
            one large block (one JSONL file, one ``from_arrow`` table) keeps one actor busy
            and the others idle.

    Returns:
        The scored dataset.

    Raises:
        TypeError, ValueError: An option is wrong; raised here, before anything runs.
    """
    # The same checks the actors run, here first, so a mistake fails on the driver.
    spec = make_spec(
        max_concurrency=max_concurrency,
        actors=actors,
        provider_limits=provider_limits,
        client_options=client_options,
        layout=layout,
        query_column=query_column,
        documents_column=documents_column,
        document_column=document_column,
        scores_column=scores_column,
        error_column=error_column,
        error_type_column=error_type_column,
        on_error=on_error,
    )
    if batch_size is None:
        batch_size = DEFAULT_QUERY_ROWS if layout == "query" else DEFAULT_PAIR_ROWS
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not is_number(num_cpus) or num_cpus <= 0:
        raise ValueError(f"num_cpus must be a positive number, got {num_cpus!r}")
    _check_client_options(spec.client_options)
    if rebalance:
        dataset = dataset.repartition(target_num_rows_per_block=batch_size)
    return dataset.map_batches(
        RerankBatches,
        fn_constructor_kwargs={
            "max_concurrency": max_concurrency,
            "actors": actors,
            "provider_limits": dict(provider_limits or {}),
            "client_options": dict(client_options or {}),
            "layout": layout,
            "query_column": query_column,
            "documents_column": documents_column,
            "document_column": document_column,
            "scores_column": spec.scores_column,
            "error_column": error_column,
            "error_type_column": error_type_column,
            "on_error": on_error,
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=num_cpus,
    )


def _check_client_options(options: ClientArguments) -> None:
    # RerankClient validates every option in its constructor, and building one opens no
    # connection; so build one here, on the driver, and let it go unused.
    from .._client import RerankClient

    RerankClient(**options)
