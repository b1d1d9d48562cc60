"""rerank_async: a fast, safe async client for reranker APIs.

Quickstart::

    from rerank_async import RerankClient

    async with RerankClient() as client:
        result = await client.rerank("What is the capital of France?", documents, top_k=5)
        for ranked in result.results:
            print(ranked.index, ranked.score, ranked.document)
"""

from __future__ import annotations

from ._client import NOT_GIVEN, ClientOptions, NotGiven, RerankClient
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    NotFoundError,
    RateLimitError,
    RerankError,
    ResponseTimeoutError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
    ServerError,
)
from ._many import RerankOutcome, RerankRequest
from ._models import RankedDocument, RequestRecord, RerankResult, Usage
from ._partial import PartialScores
from ._retry import RETRYABLE_STATUS_CODES, RetryPolicy
from ._statistics import ClientStatistics
from ._sync import SyncRerankClient
from ._version import __version__
from .providers import BatchScores, DeepInfraProvider, Provider

__all__ = [
    "NOT_GIVEN",
    "RETRYABLE_STATUS_CODES",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchScores",
    "ClientClosedError",
    "ClientOptions",
    "ClientStatistics",
    "DeepInfraProvider",
    "NotFoundError",
    "NotGiven",
    "PartialScores",
    "Provider",
    "RankedDocument",
    "RateLimitError",
    "RequestRecord",
    "RerankClient",
    "RerankError",
    "RerankOutcome",
    "RerankRequest",
    "RerankResult",
    "ResponseTimeoutError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryBudgetExhaustedError",
    "RetryPolicy",
    "ServerError",
    "SyncRerankClient",
    "Usage",
    "__version__",
]
