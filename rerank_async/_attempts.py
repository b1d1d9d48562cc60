"""One batch's attempts: admitted, retried on the one verdict, hedged, encoded once.

Plain calls (``_runner``) and packed requests (``_packed``) both send every batch
through ``BatchAttempts.send``; neither has a retry path of its own. The layers,
outermost first::

    send                 the retry loop; ``RetryDecision`` alone says retry or not
      _attempt_admitted  one slot of the client's flow control (``Admission``),
                         charged once; the answer or failure reported once
        _send_maybe_hedged   a second copy of a slow attempt, if configured
          sender.send        the transport chain (observation, engine)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable
from functools import partial
from typing import Final, Protocol

import anyio

from ._config import ClientOptions
from ._constants import LOGGER_NAME
from ._flow import Admission
from ._hedging import race_hedged
from ._options import RetryPolicy
from ._retry import RetryDecision, RetryEvent, call_with_retries
from ._transports import BatchRequest, BatchSender
from .providers import BatchScores

__all__ = ["AttemptCounters", "BatchAttempts", "LazyBatch"]

logger = logging.getLogger(LOGGER_NAME)

# Documents' characters above which a body waits for the encoding turn (about 0.1 ms
# of orjson, 0.5 ms of pydantic_core per MB, measured): smaller ones never wait.
LARGE_BODY_CHARS: Final = 256_000
# Copies of a slow batch ``hedge_after="auto"`` may send besides the first (each
# from the retry budget, on a free slot): the second covers a batch whose first copy
# landed in the slow tail too, which in benchmarks/bench_limits.py (web_tail, 200
# calls of 2 batches) happened to 2-3 calls a run, each held for the full 10x delay.
AUTO_MAX_HEDGES: Final = 2


class AttemptCounters(Hashable, Protocol):
    """Who a batch is sent for: its turn in the fair queue, and its counts.

    A call (``CallState``) or a packed request (``PackedCounters``).
    """

    requests: int
    retries: int
    hedges: int


class LazyBatch:
    """A batch whose body is encoded when its first attempt holds a slot, then kept.

    A 20,000-document call must not encode all its batches before the first one
    is sent: about 4.5 ms of JSON per MB would run in one turn of the loop.
    """

    __slots__ = ("_encode", "chars", "document_range", "encoded", "n_documents", "tokens")

    def __init__(
        self,
        *,
        encode: Callable[[], bytes],
        n_documents: int,
        document_range: tuple[int, int],
        chars: int,
        tokens: Callable[[], int],
    ) -> None:
        self._encode = encode
        self.n_documents = n_documents
        self.chars = chars
        self.document_range = document_range
        # The batch's token cost by the provider's estimate, computed only under a token limit.
        self.tokens = tokens
        self.encoded: BatchRequest | None = None

    def encode_now(self) -> BatchRequest:
        self.encoded = BatchRequest(
            body=self._encode(), n_documents=self.n_documents, document_range=self.document_range
        )
        return self.encoded


class BatchAttempts:
    """Sends batches: flow control, the retry verdict, hedging, the encoding turn.

    Args:
        options: The client's resolved options.
        sender: The transport chain every attempt goes through.
    """

    def __init__(self, options: ClientOptions, *, sender: BatchSender) -> None:
        self._options = options
        self._sender = sender
        # Every wait of the flow control sleeps as the retry policy does, so that a
        # test's set_retry_policy(RetryPolicy(sleep=...)) covers them too.
        self.admission = Admission(options.load_settings(), sleep=self._sleep)
        # Large bodies are encoded one per turn of the event loop (_encode_in_turn).
        self._encode_turn = anyio.Lock()

    @property
    def options(self) -> ClientOptions:
        """The options attempts are sent and retried with."""
        return self._options

    def use_sender(self, sender: BatchSender) -> None:
        """Send later attempts through ``sender`` (the chain with or without an observer)."""
        self._sender = sender

    def set_retry_policy(self, policy: RetryPolicy) -> None:
        """Retry later batches with ``policy``, its budget included."""
        self._options = dataclasses.replace(self._options, retry=policy)
        self.admission.set_retry_budget(policy.budget_ratio, policy.budget_per_second)
        self.admission.set_outage_patience(
            policy.outage_patience if self._options.max_retries > 0 else 0.0
        )

    async def _sleep(self, seconds: float) -> None:
        await self._options.retry.sleep(seconds)

    async def send(
        self, owner: AttemptCounters, batch: LazyBatch, *, deadline: float
    ) -> BatchScores:
        """The batch's scores, after as many attempts as the retry verdict allows.

        Args:
            owner: Who the batch is sent for (its turn in the fair queue, its counts).
            batch: What to send.
            deadline: ``anyio.current_time()`` value past which no retry starts.

        Raises:
            RerankError: The last attempt's error, or ``RetryBudgetExhaustedError``.
        """
        admission = self.admission
        options = self._options
        tokens = batch.tokens() if admission.counts_tokens else 0
        decide = RetryDecision(
            options.retry,
            options.max_retries,
            admission,
            deadline=deadline,
            clock=admission.clock,
        )
        return await call_with_retries(
            partial(self._attempt_admitted, owner, batch, tokens, decide, [0]),
            decide,
            sleep=self._sleep,
            on_retry=partial(self._log_retry, owner, batch),
        )

    async def _attempt_admitted(
        self,
        owner: AttemptCounters,
        batch: LazyBatch,
        tokens: int,
        decide: RetryDecision,
        attempts: list[int],
    ) -> BatchScores:
        attempts[0] += 1  # this batch's attempts so far: only its first earns retry budget
        admission = self.admission
        async with admission.admitted(
            owner,
            tokens=tokens,
            documents=batch.n_documents,
            first_attempt=attempts[0] == 1,
            pause_waited=decide.waited_until,
        ) as ticket:
            owner.requests += 1
            encoded = batch.encoded or await self._encode_in_turn(batch)
            try:
                result = await self._send_maybe_hedged(owner, encoded, tokens)
            except Exception as error:
                await admission.failed(
                    ticket, error, limit_reset_s=getattr(error, "limit_reset_s", None)
                )
                raise
            admission.answered(
                ticket,
                estimated_tokens=tokens,
                used_tokens=result.input_tokens,
                limit_reset_s=result.limit_reset_s,
            )
            return result

    async def _encode_in_turn(self, batch: LazyBatch) -> BatchRequest:
        """The batch's body, encoded now that its first attempt holds a slot.

        Encoded once and reused by every retry. Batches granted slots together
        would encode back to back in one turn of the event loop, so a large body
        takes the encoding turn: one per turn, and the loop runs between them.
        """
        if batch.chars < LARGE_BODY_CHARS:
            return batch.encode_now()
        async with self._encode_turn:
            encoded = batch.encode_now()
            await anyio.lowlevel.checkpoint()
        return encoded

    async def _send_maybe_hedged(
        self, owner: AttemptCounters, batch: BatchRequest, tokens: int
    ) -> BatchScores:
        configured = self._options.hedge_after
        if configured is None:
            return await self._sender.send(batch)
        max_hedges = 1
        hedge_after: float | Callable[[], float | None]
        if configured == "auto":
            hedge_after = self.admission.hedge_threshold  # read again as answers come
            max_hedges = AUTO_MAX_HEDGES
        else:
            hedge_after = configured

        def count_hedge() -> None:
            owner.requests += 1
            owner.hedges += 1

        return await race_hedged(
            partial(self._sender.send, batch),
            hedge_after=hedge_after,
            limiter=self.admission.hedge_slots(tokens),
            on_hedge=count_hedge,
            max_hedges=max_hedges,
        )

    def _log_retry(self, owner: AttemptCounters, batch: LazyBatch, event: RetryEvent) -> None:
        owner.retries += 1
        first, stop = batch.document_range
        logger.info(
            "retrying documents %d..%d of model %s in %.2f s (retry %d of %d) after %s: %s",
            first, stop - 1, self._options.model, event.delay, event.attempt,
            self._options.max_retries, type(event.error).__name__, event.error,
        )  # fmt: skip
