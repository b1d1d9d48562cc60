"""`RerankBatches`: the callable class that ``Dataset.map_batches`` runs on each actor.

Ray Data runs an ``async def __call__`` on an event loop of the actor's own (a thread
it starts), up to four batches at a time per actor (``plan_udf_map_op.py``). The client
is therefore built on that loop, on first use, and shared by the batches in flight, so
they share one concurrency bound; it is closed from ``__del__``, which is the hook Ray
Data calls when an actor ends gracefully (``_MapWorker.__ray_shutdown__`` drops the UDF
to trigger it). A killed actor closes nothing: its sockets die with its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import pyarrow as pa

from .._checks import InvalidRecordError, record_documents, record_query, record_text
from .._client import ClientArguments, RerankClient
from .._many import RerankRequest
from .._options import Limits
from ._limits import split_limits

__all__ = ["INVALID_ROW", "Layout", "OnError", "RerankBatches", "RerankSpec"]

Layout: TypeAlias = Literal["query", "pair"]
OnError: TypeAlias = Literal["record", "raise"]

# error_type of a row whose query or documents are unusable (no request is sent for it).
INVALID_ROW: Final = "InvalidRow"
# Seconds the actor waits, at its end, for the client's connections to close.
_CLOSE_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True)
class RerankSpec:
    """Every option of `RerankBatches`, checked once (on the driver and on each actor).

    Attributes:
        client_options: ``RerankClient`` keyword arguments for one actor, its share of
            the provider's limits included.
        layout: ``"query"``: one row per query with a list of documents;
            ``"pair"``: one row per (query, document) pair.
        query_column: Column of query strings.
        documents_column: With ``layout="query"``, the column of document lists
            (strings, or structs with a string ``text``).
        document_column: With ``layout="pair"``, the column of document strings.
        scores_column: Output column: a list of scores in input order per row
            (``"query"``), or one score per row (``"pair"``).
        error_column: Output column: the error message of a row that failed, else null.
        error_type_column: Output column: the error's class name, else null.
        on_error: ``"record"``: a row that fails after retries gets null scores and its
            error in the error columns; ``"raise"``: the batch raises the error.
    """

    client_options: ClientArguments
    layout: Layout
    query_column: str
    documents_column: str
    document_column: str
    scores_column: str
    error_column: str
    error_type_column: str
    on_error: OnError

    @property
    def input_columns(self) -> tuple[str, str]:
        text = self.documents_column if self.layout == "query" else self.document_column
        return self.query_column, text

    @property
    def output_columns(self) -> tuple[str, str, str]:
        return self.scores_column, self.error_column, self.error_type_column


def make_spec(
    *,
    max_concurrency: int,
    actors: int,
    provider_limits: Mapping[str, int | float] | None,
    client_options: ClientArguments | None,
    layout: Layout,
    query_column: str,
    documents_column: str,
    document_column: str,
    scores_column: str | None,
    error_column: str,
    error_type_column: str,
    on_error: OnError,
) -> RerankSpec:
    """Check every option and divide the provider's limits; see `RerankBatches`.

    Raises:
        TypeError, ValueError: An option is wrong; the message names it.
    """
    if layout not in ("query", "pair"):
        raise ValueError(f"layout must be 'query' or 'pair', not {layout!r}")
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error must be 'record' or 'raise', not {on_error!r}")
    if scores_column is None:
        scores_column = "scores" if layout == "query" else "score"
    columns = {
        "query_column": query_column,
        "documents_column": documents_column,
        "document_column": document_column,
        "scores_column": scores_column,
        "error_column": error_column,
        "error_type_column": error_type_column,
    }
    for name, value in columns.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    outputs = [scores_column, error_column, error_type_column]
    if len(set(outputs)) != len(outputs):
        raise ValueError(
            "scores_column, error_column and error_type_column must differ, got "
            f"{scores_column!r}, {error_column!r}, {error_type_column!r}"
        )
    totals: dict[str, int | float] = {"max_concurrency": max_concurrency}
    totals.update(provider_limits or {})
    options = ClientArguments(**(client_options or {}))
    for name in totals:
        if name in options:
            raise ValueError(
                f"client_options must not set {name!r}: it is a provider total, divided "
                f"across the actors; pass it as {_where(name)} instead"
            )
    shares = split_limits(totals, actors)
    options["max_concurrency"] = int(shares.pop("max_concurrency"))
    if shares:  # the per-minute rates: each actor's Limits carry its share
        limits = options.get("limits") or Limits()
        options["limits"] = dataclasses.replace(limits, **shares)  # type: ignore[arg-type]
    return RerankSpec(
        client_options=options,
        layout=layout,
        query_column=query_column,
        documents_column=documents_column,
        document_column=document_column,
        scores_column=scores_column,
        error_column=error_column,
        error_type_column=error_type_column,
        on_error=on_error,
    )


def _where(name: str) -> str:
    return "max_concurrency=" if name == "max_concurrency" else f"provider_limits={{{name!r}: ...}}"


class RerankBatches:
    """Scores each batch of a Ray ``Dataset``: a callable class for ``map_batches``.

    Use it with ``batch_format="pyarrow"`` and an actor pool of exactly ``actors``
    actors (``compute=ray.data.ActorPoolStrategy(size=actors)``): the provider's limits
    are divided by ``actors``, so the pool never exceeds them. ``rerank_dataset`` wires
    this up for you.

    Each actor builds one ``RerankClient`` on its own event loop when its first batch
    arrives, and every batch of that actor shares it (and so its concurrency bound). The
    output batch is the input with three more columns (names configurable): scores,
    error, error type. With ``layout="pair"``, the pairs of one query inside a batch are
    sent together, as one rerank call.

    Args:
        max_concurrency: The provider's total: requests in flight, all actors together.
        actors: Actors in the pool.
        provider_limits: Other per-provider totals, by client option name; each is
            divided across the actors like ``max_concurrency``.
        client_options: Other ``RerankClient`` keyword arguments (``model``,
            ``base_url``, ``api_key``, ``batch_size``, ``max_retries``, ...).
        layout: ``"query"`` (one row per query, a list of documents) or ``"pair"``
            (one row per query-document pair).
        query_column: Column of queries.
        documents_column: Column of document lists (``layout="query"``); items are
            strings or structs with a string ``text``.
        document_column: Column of documents (``layout="pair"``).
        scores_column: Output column; default ``"scores"`` (query) / ``"score"`` (pair).
        error_column: Output column of error messages.
        error_type_column: Output column of error class names (``RateLimitError``,
            ``ServerError``, ..., or ``InvalidRow`` for a row with no usable query or
            documents).
        on_error: ``"record"`` (default) or ``"raise"``.

    Raises:
        TypeError, ValueError: An option is wrong (from the constructor), or a batch
            lacks an input column or already has an output column (from the call).
    """

    def __init__(
        self,
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
    ) -> None:
        self.spec = make_spec(
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
        self._client: RerankClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether `aclose` (or the actor's end) closed this UDF's client."""
        return self._closed

    async def __call__(self, batch: pa.Table) -> pa.Table:
        """Score one batch; returns it with the scores and error columns added."""
        spec = self.spec
        _check_columns(batch, spec)
        client = self._client_on_this_loop()
        queries = batch.column(spec.query_column).to_pylist()
        texts = batch.column(spec.input_columns[1]).to_pylist()
        rows_type = _QueryRows if spec.layout == "query" else _PairRows
        rows = rows_type(queries, texts, spec)
        await rows.score(client, raise_errors=spec.on_error == "raise")
        scores_type = pa.list_(pa.float64()) if spec.layout == "query" else pa.float64()
        return (
            batch.append_column(spec.scores_column, pa.array(rows.scores, type=scores_type))
            .append_column(spec.error_column, pa.array(rows.errors, type=pa.string()))
            .append_column(spec.error_type_column, pa.array(rows.error_types, type=pa.string()))
        )

    def _client_on_this_loop(self) -> RerankClient:
        if self._closed:
            raise RuntimeError("this RerankBatches is closed")
        if self._client is None:
            # No await between the check and the assignment: the batches running at once
            # on this loop all get this one client.
            self._client = RerankClient(**self.spec.client_options)
            self._loop = asyncio.get_running_loop()
        return self._client

    async def aclose(self) -> None:
        """Close the client (idempotent); the actor's end does this by itself."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def __del__(self) -> None:
        # Ray Data's teardown hook for a callable class (see the module docstring). The
        # client lives on the actor's asyncio loop, running in another thread: close it
        # there, and give up after a bound if that loop has stopped.
        # getattr: __del__ runs even when __init__ raised before setting them.
        client = getattr(self, "_client", None)
        loop = getattr(self, "_loop", None)
        if client is None or loop is None or self._closed:
            return
        self._closed = True
        self._client = None
        if loop.is_closed() or not loop.is_running():
            return
        with contextlib.suppress(Exception):
            future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            future.result(timeout=_CLOSE_TIMEOUT_S)


def _check_columns(batch: pa.Table, spec: RerankSpec) -> None:
    names = batch.schema.names
    for column in spec.input_columns:
        if column not in names:
            raise ValueError(
                f"the dataset has no column {column!r} (columns: {', '.join(names)}); "
                "name the right one with query_column=/documents_column=/document_column="
            )
    for column in spec.output_columns:
        if column in names:
            raise ValueError(
                f"the dataset already has a column {column!r}, which rerank writes; pick "
                "another name with scores_column=/error_column=/error_type_column="
            )


def _message(error: BaseException) -> str:
    return " ".join((str(error) or type(error).__name__).split())


class _Rows:
    """The output columns of one batch, filled row by row."""

    def __init__(self, size: int) -> None:
        self.scores: list[Any] = [None] * size
        self.errors: list[str | None] = [None] * size
        self.error_types: list[str | None] = [None] * size
        self.requests: list[RerankRequest] = []
        self.invalid: list[tuple[int, str]] = []

    def fail(self, rows: list[int], error_type: str, message: str) -> None:
        for row in rows:
            self.errors[row] = message
            self.error_types[row] = error_type

    def rows_of(self, request_id: int) -> list[int]:
        raise NotImplementedError

    def put(self, request_id: int, scores: list[float]) -> None:
        raise NotImplementedError

    async def score(self, client: RerankClient, *, raise_errors: bool) -> None:
        if raise_errors and self.invalid:
            row, message = self.invalid[0]
            raise ValueError(f"row {row} of the batch: {message}")
        for row, message in self.invalid:
            self.fail([row], INVALID_ROW, message)
        async with client.rerank_many(self.requests, fail_fast=raise_errors) as outcomes:
            async for outcome in outcomes:
                request_id = outcome.id
                assert isinstance(request_id, int)  # the ids given below
                if outcome.result is not None:
                    self.put(request_id, outcome.result.scores)
                else:
                    error = outcome.error if outcome.error is not None else RuntimeError()
                    self.fail(self.rows_of(request_id), type(error).__name__, _message(error))


class _QueryRows(_Rows):
    """One row per query: one request per row."""

    def __init__(self, queries: list[object], documents: list[object], spec: RerankSpec) -> None:
        super().__init__(len(queries))
        for row, (query, items) in enumerate(zip(queries, documents, strict=True)):
            try:
                text = record_query(query, name=spec.query_column)
                texts, _ = record_documents(items, name=spec.documents_column)
            except InvalidRecordError as error:
                self.invalid.append((row, str(error)))
                continue
            self.requests.append(RerankRequest(query=text, documents=texts, id=row))

    def rows_of(self, request_id: int) -> list[int]:
        return [request_id]

    def put(self, request_id: int, scores: list[float]) -> None:
        self.scores[request_id] = scores


class _PairRows(_Rows):
    """One row per pair: the pairs of one query in this batch share one request."""

    def __init__(self, queries: list[object], documents: list[object], spec: RerankSpec) -> None:
        super().__init__(len(queries))
        groups: dict[str, list[int]] = {}
        texts: dict[str, list[str]] = {}
        for row, (query, document) in enumerate(zip(queries, documents, strict=True)):
            try:
                query_text = record_query(query, name=spec.query_column)
                text = record_text(document, name=spec.document_column)
            except InvalidRecordError as error:
                self.invalid.append((row, str(error)))
                continue
            groups.setdefault(query_text, []).append(row)
            texts.setdefault(query_text, []).append(text)
        self._groups = list(groups.values())
        self.requests = [
            RerankRequest(query=query, documents=texts[query], id=number)
            for number, query in enumerate(groups)
        ]

    def rows_of(self, request_id: int) -> list[int]:
        return self._groups[request_id]

    def put(self, request_id: int, scores: list[float]) -> None:
        for row, score in zip(self._groups[request_id], scores, strict=True):
            self.scores[row] = score
