"""Observation as a transport wrapper: every HTTP attempt reported to ``on_request``."""

from __future__ import annotations

import time
from collections.abc import Callable

from .._exceptions import RerankError
from .._models import RequestRecord
from ..providers import BatchScores
from .base import BatchRequest, BatchSender

__all__ = ["ObservedTransport"]


class ObservedTransport:
    """Sends through ``inner`` and reports each attempt, success or failure.

    Args:
        inner: The sender that does the work.
        model: The model name each record carries.
        on_request: Called once per attempt with its ``RequestRecord``.
    """

    def __init__(
        self, inner: BatchSender, *, model: str, on_request: Callable[[RequestRecord], None]
    ) -> None:
        self._inner = inner
        self._model = model
        self._on_request = on_request

    async def send(self, batch: BatchRequest) -> BatchScores:
        started = time.perf_counter()
        try:
            result = await self._inner.send(batch)
        except RerankError as error:
            self._on_request(
                self._record(batch, started, getattr(error, "status_code", None), error=error)
            )
            raise
        self._on_request(self._record(batch, started, 200, result=result))
        return result

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _record(
        self,
        batch: BatchRequest,
        started: float,
        status_code: int | None,
        *,
        result: BatchScores | None = None,
        error: RerankError | None = None,
    ) -> RequestRecord:
        return RequestRecord(
            model=self._model,
            document_range=batch.document_range,
            documents=batch.n_documents,
            elapsed_s=time.perf_counter() - started,
            status_code=status_code,
            error=type(error).__name__ if error is not None else None,
            server_runtime_ms=result.runtime_ms if result is not None else None,
            input_tokens=result.input_tokens if result is not None else None,
        )
