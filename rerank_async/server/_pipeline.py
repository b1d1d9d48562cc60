"""One request pipeline for every dialect, written once.

An inference request goes through, in order: a stall in progress (``_stall``), the
provider-style limits
(``_limits``: an outage's 503, a concurrency cap's or rate limit's 429), auth
(401), the model named in the path (404), the body (the dialect's 400 or 422),
the model named in the body (404), batch size, the fault plan (503, 429 answered
at once), the capacity queue, the simulated latency, then a dropped connection, a
malformed 200 (truncated JSON, one score missing, or no scores), or the real
answer, held once more if a stall began meanwhile. Every dialect shares one set of
stats, one fault random stream and one capacity queue.
"""

from __future__ import annotations

import math
import secrets
import time
import uuid
from collections.abc import Collection

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._config import ServerConfig
from ._dialects import Dialect, ReplyContext, RerankCall
from ._faults import Fault, FaultInjector, FaultPlan, Malformation
from ._http import JSON_MEDIA_TYPE, DroppedResponse, InvalidBodyError, dumps
from ._limits import AdmissionControl, Refusal, retry_after_header
from ._scoring import score_pairs
from ._stall import Stall
from ._stats import StatsKeeper

__all__ = ["RerankService"]


def _is_known(model: str, known_models: Collection[str] | None) -> bool:
    return known_models is None or model in known_models


_REFUSAL_MESSAGES = {
    "max_in_flight": "Too many concurrent requests (simulated)",
    "rate_limit": "Rate limit exceeded (simulated)",
    "outage": "Service temporarily unavailable (simulated outage)",
}


def _refused(dialect: Dialect, refusal: Refusal) -> Response:
    headers: dict[str, str] = {}
    if refusal.retry_after_s is not None:
        headers["retry-after"] = retry_after_header(refusal.retry_after_s)
        headers["retry-after-ms"] = str(max(1, math.ceil(refusal.retry_after_s * 1000)))
    return dialect.error(refusal.status, _REFUSAL_MESSAGES[refusal.reason], headers)


class RerankService:
    """The endpoints, closing over one config, one fault injector and one set of stats."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.faults = FaultInjector(config)
        self.stats = StatsKeeper()
        self.admission = AdmissionControl(config)
        self.stats.refusals = self.admission.refusals
        self.stall = Stall(config)
        # Created on first use, inside the event loop that serves requests (running_server
        # builds the app in the caller's thread, which may be running a loop of its own).
        self._limiter: anyio.CapacityLimiter | None = None
        self._api_key = config.api_key.encode() if config.api_key is not None else None

    async def handle(self, request: Request, dialect: Dialect) -> Response:
        """One inference request in ``dialect``, counted in the stats."""
        started = time.perf_counter()
        stats = self.stats
        # Counted on entry, before any capacity wait: a client that overshoots its own
        # concurrency bound shows up in max_in_flight.
        stats.enter()
        try:
            self.stall.mark_request()
            await self._wait_out_stall()
            refusal = self.admission.admit()
            if refusal is not None:
                response = _refused(dialect, refusal)
            else:
                try:
                    response = await self._answer(request, dialect, uuid.uuid4().hex, started)
                finally:
                    self.admission.leave()
            # A frozen server sends nothing, whatever it had ready when the stall began.
            await self._wait_out_stall()
        finally:
            stats.in_flight -= 1
        if isinstance(response, DroppedResponse):
            stats.dropped += 1
        else:
            stats.count_status(response.status_code)
        return response

    async def _answer(
        self, request: Request, dialect: Dialect, request_id: str, started: float
    ) -> Response:
        cfg = self.config
        headers = {"x-request-id": request_id}
        if not self._authorized(request):
            return dialect.error(401, dialect.unauthorized_message, headers)
        path_model: str | None = None
        if dialect.model_in_path:
            path_model = request.path_params["model"]
            if not path_model or not _is_known(path_model, cfg.known_models):
                return dialect.model_not_found(path_model, headers)
        try:
            call = dialect.parse(await request.body(), path_model)
        except InvalidBodyError as err:
            return dialect.invalid_body(str(err), headers)
        body_model = call.model if path_model is None else None
        if body_model is not None and not _is_known(body_model, cfg.known_models):
            return dialect.model_not_found(body_model, headers)
        n = len(call.documents)
        self.stats.documents += n
        if cfg.max_batch_size is not None and n > cfg.max_batch_size:
            return dialect.too_large(n, cfg.max_batch_size, headers)

        poison = cfg.poison
        if poison is not None and any(poison in document for document in call.documents):
            return dialect.error(
                500, "Internal server error: the model failed on an input", headers
            )
        plan = self.faults.plan(n)
        if plan.fault is Fault.ERROR_503:
            return dialect.error(503, "Service temporarily unavailable (simulated)", headers)
        if plan.fault is Fault.ERROR_429:
            if cfg.retry_after_s is not None:
                headers["retry-after"] = str(math.ceil(cfg.retry_after_s))
            return dialect.error(429, "Rate limit exceeded (simulated)", headers)

        limiter = self._capacity_limiter()
        if limiter is None:
            scores = await self._score(call, plan)
        else:
            async with limiter:
                scores = await self._score(call, plan)
        return self._respond(dialect, call, scores, plan, headers, request_id, started)

    async def _wait_out_stall(self) -> None:
        # Checked again after each wait: a timer may fire a hair before its deadline.
        while self.stall.enabled:
            remaining = self.stall.remaining_s()
            if remaining <= 0.0:
                return
            await anyio.sleep(remaining)

    def _capacity_limiter(self) -> anyio.CapacityLimiter | None:
        """The capacity queue every route shares, or None when unlimited."""
        if self.config.capacity is None:
            return None
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.config.capacity)
        return self._limiter

    async def _score(self, call: RerankCall, plan: FaultPlan) -> list[float]:
        """The simulated work: hold a slot for the planned delay, then score."""
        stats = self.stats
        stats.start_processing()
        try:
            if plan.delay_s > 0.0:
                await anyio.sleep(plan.delay_s)
            return score_pairs(call.queries, call.documents)
        finally:
            stats.processing -= 1

    def _respond(
        self,
        dialect: Dialect,
        call: RerankCall,
        scores: list[float],
        plan: FaultPlan,
        headers: dict[str, str],
        request_id: str,
        started: float,
    ) -> Response:
        malformation = plan.malformation if plan.fault is Fault.MALFORMED else None
        reply = ReplyContext(
            request_id, started, one_missing=malformation is Malformation.WRONG_COUNT
        )
        payload = dialect.payload(call, scores, reply)
        if plan.fault is Fault.DROP:
            return DroppedResponse(dumps(payload), media_type=JSON_MEDIA_TYPE, headers=headers)
        if malformation is None:
            body = dumps(payload)
        else:
            self.stats.malformed += 1
            if malformation is Malformation.TRUNCATED_JSON:
                full = dumps(payload)
                body = full[: len(full) // 2]
            elif malformation is Malformation.MISSING_SCORES:
                body = dumps(dialect.without_scores(payload))
            else:
                body = dumps(payload)
        return Response(body, media_type=JSON_MEDIA_TYPE, headers=headers)

    def _authorized(self, request: Request) -> bool:
        if self._api_key is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant-time comparison; the presented key is never echoed back.
        return secrets.compare_digest(token.strip().encode(), self._api_key)

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.snapshot())

    async def reset_stats(self, request: Request) -> Response:
        self.stats.reset()
        self.admission.reset()
        self.stall.reset()
        self.stats.refusals = self.admission.refusals
        return JSONResponse(self.stats.snapshot())

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})
