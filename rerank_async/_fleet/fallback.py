"""``FallbackChain``: a call that fails for good on the primary, re-run whole elsewhere.

Scores of two models are not comparable, so a fallback never fills the gaps of a
failed call: it scores every document again, and the primary's partial scores
are dropped. The primary is skipped at once while it is known to be down (every
replica ejected: the circuit is open); it is probed again when a cool-down ends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio

from .._config import NOT_GIVEN, NotGiven
from .._constants import LOGGER_NAME
from .._exceptions import ClientClosedError, DeadlineExceededError, RerankError
from .._models import ClientStatistics, RerankResult

__all__ = ["FallbackChain", "FallbackClient", "is_down"]

logger = logging.getLogger(LOGGER_NAME)


class FallbackClient(Protocol):
    """What a fallback is: a client of another model or provider (a ``RerankClient``)."""

    @property
    def model(self) -> str: ...

    def statistics(self) -> ClientStatistics: ...

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None = None,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        instruction: str | NotGiven | None = NOT_GIVEN,
    ) -> RerankResult: ...


def is_down(statistics: ClientStatistics) -> bool:
    """Whether a client is known to be down: it has replicas and every one is ejected."""
    replicas = statistics.replicas
    return bool(replicas) and all(replica.state == "ejected" for replica in replicas)


class FallbackChain:
    """The clients a call falls back to, tried in order; the one place that decides to.

    Args:
        clients: The fallbacks, in the order to try them.
        primary_down: Whether the primary is known to be down now.
        wait_primary_down: Returns once the primary is down: a call under way on it
            is then stopped and handed over, rather than left to its retries.
    """

    def __init__(
        self,
        clients: Sequence[FallbackClient],
        *,
        primary_down: Callable[[], bool],
        wait_primary_down: Callable[[], Awaitable[None]],
    ) -> None:
        self._clients = tuple(clients)
        self._primary_down = primary_down
        self._wait_primary_down = wait_primary_down
        self.calls = 0

    @property
    def clients(self) -> tuple[FallbackClient, ...]:
        """The fallbacks, in order."""
        return self._clients

    async def rerank(
        self,
        primary: Callable[[], Awaitable[RerankResult]],
        query: str,
        documents: Sequence[str],
        *,
        top_k: int | None,
        total_timeout: float | NotGiven | None,
        instruction: str | NotGiven | None,
    ) -> RerankResult:
        """The primary's result, or the first fallback's that succeeds.

        Raises:
            DeadlineExceededError: The primary's deadline passed (no time is left to
                fall back in).
            ClientClosedError: The client was closed during the call: nothing starts
                after close, on a fallback either.
            RerankError: Every client failed: the primary's error (its ``partial`` is
                of the primary's model, fit for ``resume=``; a primary known to be
                down is tried last), each fallback's failure a note on it.
        """
        errors: list[RerankError] = []
        # Known to be down, or went down during the call: it is tried again last.
        down = self._primary_down()
        if not down:
            outcome = await self._primary_while_up(primary)
            if isinstance(outcome, RerankResult):
                return outcome
            if isinstance(outcome, DeadlineExceededError | ClientClosedError):
                raise outcome  # no time left, or closed: nothing may start after close
            if outcome is None:
                down = True
            else:
                errors.append(outcome)
        self.calls += 1
        if errors:
            logger.warning(
                "primary failed (%s); scoring the whole call with a fallback",
                type(errors[0]).__name__,
            )
        else:  # every call while it is down: not worth a warning each
            logger.info("primary is down; scoring the whole call with a fallback")
        for client in self._in_turn():
            try:
                return await client.rerank(
                    query, documents, top_k=top_k, total_timeout=total_timeout,
                    instruction=instruction,
                )  # fmt: skip
            except RerankError as error:
                errors.append(error)
        if down:
            # Everyone failed and the primary was down: its turn comes last.
            try:
                return await primary()
            except RerankError as error:
                errors.insert(0, error)
        raise _the_error(errors)

    async def _primary_while_up(
        self, primary: Callable[[], Awaitable[RerankResult]]
    ) -> RerankResult | RerankError | None:
        """The primary's result or error; ``None`` when it went down first (the call is
        cancelled: its retries would only wait for a cool-down)."""
        outcome: RerankResult | Exception | None = None
        async with anyio.create_task_group() as group:
            group.start_soon(self._cancel_when_down, group.cancel_scope)
            try:
                outcome = await primary()
            except Exception as error:  # raised below, outside the group (no ExceptionGroup)
                outcome = error
            group.cancel_scope.cancel()
        if isinstance(outcome, Exception) and not isinstance(outcome, RerankError):
            raise outcome
        return outcome

    async def _cancel_when_down(self, scope: anyio.CancelScope) -> None:
        await self._wait_primary_down()
        scope.cancel()

    def _in_turn(self) -> list[FallbackClient]:
        """The fallbacks not known to be down first, then those that are."""
        down = [is_down(client.statistics()) for client in self._clients]
        up = [client for client, off in zip(self._clients, down, strict=True) if not off]
        return up + [client for client, off in zip(self._clients, down, strict=True) if off]


def _the_error(errors: list[RerankError]) -> RerankError:
    """The primary's error, when every client failed; the fallbacks' become notes."""
    chosen = errors[0]
    for other in errors[1:]:
        chosen.add_note(f"fallback model {other.model!r} failed too: {type(other).__name__}")
    return chosen
