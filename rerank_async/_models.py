"""The public result types of a rerank call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from pydantic import BaseModel, ConfigDict, PrivateAttr, computed_field

from ._batching import rank_indices

__all__ = [
    "ClientStatistics",
    "RankedDocument",
    "ReplicaStatistics",
    "RequestRecord",
    "RerankResult",
    "Usage",
]


class Usage(BaseModel):
    """What a call cost.

    Attributes:
        documents: Documents passed in.
        unique_documents: Distinct documents actually sent (duplicates are
            scored once).
        batches: Batches the documents were split into, splits after a
            "batch too large" answer included.
        requests: HTTP requests sent, retries included.
        retries: Requests that were retries of a failed one.
        hedges: Requests that were second copies of a slow one (``hedge_after``).
        input_tokens: Tokens the server reported, summed; ``None`` when it
            reported none.
        cache_hits: Texts whose score came from the client's ``ScoreCache``.
        cache_misses: Texts the cache lacked, sent to the server.
    """

    model_config = ConfigDict(frozen=True)

    documents: int = 0
    unique_documents: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    hedges: int = 0
    input_tokens: int | None = None
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP attempt, as reported to ``RerankClient(on_request=...)``.

    A plain dataclass, not a pydantic model: one is built per request on the
    hot path.

    Attributes:
        model: The model.
        document_range: ``(start, stop)`` of the call's documents it carried.
        documents: How many documents it carried.
        elapsed_s: Wall time of the attempt, seconds (after it got a slot).
        status_code: The HTTP status, or ``None`` when no response arrived.
        error: The error's class name when the attempt failed, else ``None``.
        server_runtime_ms: Inference time the server reported, when it did.
        input_tokens: Tokens the server reported, when it did.
    """

    model: str
    document_range: tuple[int, int]
    documents: int
    elapsed_s: float
    status_code: int | None
    error: str | None = None
    server_runtime_ms: float | None = None
    input_tokens: int | None = None

    @property
    def ok(self) -> bool:
        """Whether the attempt returned scores."""
        return self.error is None


class RankedDocument(BaseModel):
    """One document in ranked order."""

    model_config = ConfigDict(frozen=True)

    index: int
    """Position of the document in the call's ``documents``."""
    score: float
    document: str


class RerankResult(BaseModel):
    """Scores of one call, in input order, and the ranking they imply.

    Attributes:
        model: The model that scored the documents (a fallback's, when the call
            fell back: one call's scores always come from one model).
        provider: The wire format of the client that scored them (``"deepinfra"``).
        scores: One score per input document, ``scores[i]`` for ``documents[i]``.
        top_k: The cut applied to ``results``; ``None`` keeps every document.
        usage: Requests, retries and tokens the call took.
    """

    model_config = ConfigDict(frozen=True)

    model: str
    scores: list[float]
    top_k: int | None = None
    usage: Usage = Usage()
    provider: str | None = None
    _documents: Sequence[str] = PrivateAttr(default=())

    @classmethod
    def build(
        cls,
        *,
        model: str,
        documents: Sequence[str],
        scores: list[float],
        top_k: int | None,
        usage: Usage,
        provider: str | None = None,
    ) -> RerankResult:
        """Assemble a result from scores the client already checked."""
        result = cls(model=model, provider=provider, scores=scores, top_k=top_k, usage=usage)
        result._documents = documents
        return result

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern
    @cached_property
    def results(self) -> list[RankedDocument]:
        """Documents best first (ties: lower index first), cut to ``top_k``.

        Built on first access, so callers that only need ``scores`` pay nothing
        for ranking.
        """
        documents = self._documents
        return [
            RankedDocument(index=i, score=self.scores[i], document=documents[i])
            for i in rank_indices(self.scores, self.top_k)
        ]


@dataclass(frozen=True, slots=True)
class ReplicaStatistics:
    """One replica of a client's model (``base_url=[...]``), as ``statistics()`` sees it.

    Attributes:
        base_url: The replica's endpoint root.
        state: ``"healthy"``, ``"ejected"`` (failing; sent nothing until its
            cool-down ends) or ``"probing"`` (back from a cool-down, one request
            at a time until one succeeds).
        in_flight: Requests sent to it and not yet answered.
        concurrency_limit: Its own adaptive limit of requests in flight.
        requests: Requests sent to it.
        failures: Requests to it that failed (no answer, or a 5xx).
        ejections: Times it was ejected.
    """

    base_url: str
    state: str
    in_flight: int
    concurrency_limit: int
    requests: int
    failures: int
    ejections: int


@dataclass(frozen=True, slots=True)
class EndpointStatistics:
    """What the client has learnt about its endpoint from the answers (docs/planner.md).

    Attributes:
        fixed_s: Seconds one request takes whatever its size, without queueing.
        per_document_s: Seconds each document adds; ``None`` until two request
            sizes have been seen.
        tail_share: Share of answers slower than 1.5x that line (the tail).
        tail_ratio: How many times the line those slow answers took, on average.
        capacity: Requests in flight above which answers slow down (the server
            queues); ``None`` while no slowdown has been seen.
        samples: Answers learnt from.
    """

    fixed_s: float
    per_document_s: float | None
    tail_share: float
    tail_ratio: float
    capacity: int | None
    samples: int


# A frozen snapshot, like anyio's CapacityLimiterStatistics: read it, never reach past it.
@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """What a client is doing right now, across all its calls.

    Attributes:
        in_flight: HTTP attempts holding a concurrency slot (a slot freed by a
            fast overload answer counts until it is released).
        waiting: Attempts queued for a slot or held by the shared pause.
        outstanding_batches: Batches planned or running and not yet finished.
        batch_limit: Most documents per request now (``batch_size``, or less
            once a server said a batch was too large).
        max_concurrency: The ceiling of ``concurrency_limit``.
        concurrency_limit: Attempts allowed in flight now: the adaptive limit,
            or ``max_concurrency`` when ``adaptive_concurrency=False``.
        retry_budget_left: Retries the budget would grant now; ``None`` without one.
        paused_until: ``anyio.current_time()`` before which nothing is sent (a
            shared ``Retry-After`` or an outage pause), or ``None``.
        requests_this_minute: Requests counted by ``max_requests_per_minute`` in
            the current minute; ``None`` without that limit.
        tokens_this_minute: Tokens counted by ``max_tokens_per_minute`` (estimates
            corrected by reported usage); ``None`` without that limit.
        replicas: Each replica's state, with ``base_url=[...]``; empty for one URL.
        cache_hits: Texts this client found in its ``ScoreCache``.
        cache_misses: Texts it looked up there and sent.
        fallbacks: Calls this client handed to its ``fallback``.
        endpoint: The fitted model of the endpoint; ``None`` before any answer.
        outage_since: ``anyio.current_time()`` when the outage being waited out
            began (requests held, one probe at a time), or ``None``.
        outage_probes: Probes sent during outages since the client was made.
    """

    in_flight: int
    waiting: int
    outstanding_batches: int
    batch_limit: int
    max_concurrency: int
    concurrency_limit: int
    retry_budget_left: float | None = None
    paused_until: float | None = None
    requests_this_minute: int | None = None
    tokens_this_minute: int | None = None
    replicas: tuple[ReplicaStatistics, ...] = ()
    cache_hits: int = 0
    cache_misses: int = 0
    fallbacks: int = 0
    endpoint: EndpointStatistics | None = None
    outage_since: float | None = None
    outage_probes: int = 0
