"""Cross-query packing for ``rerank_many``: the calls in flight share full requests.

With a wire format that carries one query per document (DeepInfra's
``{"queries", "documents"}`` form, vLLM's ``/score`` with two lists), the calls
of ``rerank_many`` hand their documents to one ``PairPool`` instead of sending
their own batches. The pool packs the pairs in arrival order (``_packing``),
keeps at most ``max_in_flight`` requests going, and writes each request's
scores back into the calls it carried. A request goes out short only when
every full one has been sent and the callers being admitted had a few turns
of the event loop to fill it.

Sending — the limiter, retries, encoding, errors — is the client's, through
``send``; the pool only decides what goes in each request.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import islice

import anyio

from .._batching import ScoreSlots
from .packing import PackedBatch, Packer, split_by_owner, split_packed, unpack

__all__ = ["PackedRequest", "PairPool", "PooledCall"]

# Loop turns a short request waits for callers being admitted to fill it. A finished
# call frees room in ``rerank_many``, whose next request reaches the pool a few turns
# later (the outcome is taken, the feeder wakes, the task starts).
_FILL_TURNS = 8


class PooledCall:
    """One call's share of the pool: its documents, their scores, and how it ended.

    Args:
        query: The call's query.
        unique: The documents to score (deduplicated).
        slots: Where the scores go; a fresh ``ScoreSlots`` when not given.

    Attributes:
        batches: Requests that carried some of the call's documents.
        requests: HTTP attempts of those requests, retries included.
        retries: Retries among them.
        input_tokens: The call's share of the tokens the server reported, by pairs.
    """

    __slots__ = (
        "batches",
        "deadline",
        "done",
        "error",
        "input_tokens",
        "query",
        "requests",
        "retries",
        "slots",
        "unique",
    )

    def __init__(self, query: str, unique: list[str], slots: ScoreSlots | None = None) -> None:
        self.query = query
        self.unique = unique
        self.slots = slots if slots is not None else ScoreSlots(len(unique))
        # The call's deadline on anyio's clock: its requests are not retried past it.
        self.deadline = math.inf
        self.done = anyio.Event()
        self.error: Exception | None = None
        self.batches = 0
        self.requests = 0
        self.retries = 0
        self.input_tokens: int | None = None

    @property
    def finished(self) -> bool:
        """Whether every score arrived or the call failed."""
        return self.done.is_set()

    def fail(self, error: Exception) -> None:
        if not self.finished:
            self.error = error
            self.done.set()


@dataclass(frozen=True, slots=True)
class PackedRequest:
    """One request of the pool, for the client to send.

    Attributes:
        batch: Which documents of which calls, in order.
        calls: Every call the batch's pieces name.
    """

    batch: PackedBatch
    calls: dict[int, PooledCall]

    @property
    def size(self) -> int:
        """Pairs in the request."""
        return self.batch.size

    def chars(self) -> int:
        """Characters of the request's documents."""
        return sum(
            sum(map(len, islice(self.calls[p.owner].unique, p.start, p.stop)))
            for p in self.batch.pieces
        )

    def pairs(self) -> tuple[list[str], list[str]]:
        """``(queries, documents)``, one query per document, in the request's order."""
        queries: list[str] = []
        documents: list[str] = []
        for piece in self.batch.pieces:
            call = self.calls[piece.owner]
            queries += [call.query] * piece.size
            documents += call.unique[piece.start : piece.stop]
        return queries, documents


@dataclass(frozen=True, slots=True)
class PoolScores:
    """What the client's ``send`` returns for a packed request.

    Attributes:
        scores: One score per pair, in the request's order.
        input_tokens: Tokens the server reported for the request, if it did.
        requests: HTTP attempts the send took (retries and hedges included).
        retries: Retries among them.
    """

    scores: list[float]
    input_tokens: int | None = None
    requests: int = 1
    retries: int = 0


# Sends one packed request and returns its scores in pair order, or raises.
SendPacked = Callable[[PackedRequest], Awaitable[PoolScores]]
# Given a send's error: the smaller size to resend the request in, or None.
SplitSize = Callable[[Exception, int], "int | None"]
# Given a send's error for good: whether it may belong to one query's documents alone.
QuerySpecific = Callable[[Exception], bool]


class PairPool:
    """Packs the documents of concurrent calls into shared requests.

    A request that fails for good is split by query and each part resent alone, as
    a "too large" request is split by size, so that a failure one query's documents
    cause (a document the server cannot score) fails that query only.

    Use inside a task group that outlives every call::

        pool = PairPool(
            batch_size=32, max_in_flight=8, send=send, split_size=split, query_specific=qs
        )
        task_group.start_soon(pool.run)
        scores = await pool.score(call)   # from each call's task

    Args:
        batch_size: Pairs per request.
        max_in_flight: Requests sent at once (the client's ``max_concurrency``).
        send: Sends one request (limiter, retries and encoding included).
        split_size: Maps a failed send to the size to resend in, or ``None``.
        query_specific: Whether a failure for good may be one query's alone (not a
            refused key, say); only then is the request split by query.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        max_in_flight: int,
        send: SendPacked,
        split_size: SplitSize,
        query_specific: QuerySpecific,
    ) -> None:
        self._packer = Packer(batch_size)
        self._send = send
        self._split_size = split_size
        self._query_specific = query_specific
        self._calls: dict[int, PooledCall] = {}
        self._next_id = 0
        self._ready: deque[PackedBatch] = deque()
        self._work = anyio.Event()
        self._slots = anyio.Semaphore(max_in_flight)
        self.requests_sent = 0

    async def score(self, call: PooledCall) -> None:
        """Queue ``call``'s documents and wait until all are scored or the call failed.

        Raises:
            Exception: The error of a request that carried the call's documents.
        """
        if not call.unique:
            return
        owner = self._next_id
        self._next_id += 1
        self._calls[owner] = call
        self._ready.extend(self._packer.add(owner, len(call.unique)))
        self._work.set()
        try:
            await call.done.wait()
        finally:
            del self._calls[owner]
        if call.error is not None:
            raise call.error

    async def run(self) -> None:
        """Send requests as slots free up, until cancelled with the task group."""
        async with anyio.create_task_group() as senders:
            while True:
                await self._slots.acquire()
                batch = await self._next_batch()
                request = self._live(batch)
                if request is None:  # every call it carried has already failed
                    self._slots.release()
                    continue
                senders.start_soon(self._run_one, request)

    async def _next_batch(self) -> PackedBatch:
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._packer.open_size:
                for _ in range(_FILL_TURNS):
                    await anyio.lowlevel.checkpoint()
                    if self._ready:
                        return self._ready.popleft()
                short = self._packer.flush()
                if short is not None:
                    return short
                continue
            self._work = anyio.Event()
            await self._work.wait()

    def _live(self, batch: PackedBatch) -> PackedRequest | None:
        pieces = tuple(
            piece
            for piece in batch.pieces
            if piece.owner in self._calls and not self._calls[piece.owner].finished
        )
        if not pieces:
            return None
        calls = {piece.owner: self._calls[piece.owner] for piece in pieces}
        return PackedRequest(PackedBatch(pieces), calls)

    async def _run_one(self, request: PackedRequest) -> None:
        try:
            try:
                result = await self._send(request)
            except Exception as error:
                self._settle_failure(request, error)
                return
            self.requests_sent += result.requests
            for piece, scores in unpack(request.batch, result.scores):
                call = request.calls[piece.owner]
                call.batches += 1
                call.requests += result.requests
                call.retries += result.retries
                if result.input_tokens is not None:
                    share = result.input_tokens * piece.size // request.size
                    call.input_tokens = (call.input_tokens or 0) + share
                if call.finished:
                    continue
                call.slots.fill(piece.start, scores)
                if call.slots.filled == len(call.unique):
                    call.done.set()
        finally:
            self._slots.release()

    def _shrink(self, size: int) -> None:
        """From now on pack at most ``size`` pairs per request, queued ones included."""
        if size >= self._packer.batch_size:
            return
        ready = [part for batch in self._ready for part in split_packed(batch, size)]
        open_batch = self._packer.flush()
        self._packer = Packer(size)
        if open_batch is not None:
            for piece in open_batch.pieces:
                ready += self._packer.add(piece.owner, piece.stop, start=piece.start)
        self._ready = deque(ready)

    def _settle_failure(self, request: PackedRequest, error: Exception) -> None:
        size = self._split_size(error, request.size)
        if size is not None and 0 < size < request.size:
            self._shrink(size)
            # Resent first, in order, before anything queued after it.
            self._ready.extendleft(reversed(split_packed(request.batch, size)))
            self._work.set()
            return
        if len(request.calls) > 1 and self._query_specific(error):
            self._ready.extendleft(reversed(split_by_owner(request.batch)))
            self._work.set()
            return
        for call in request.calls.values():
            call.fail(error)
