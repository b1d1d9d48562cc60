"""rerank_async: a fast, safe async client for reranker APIs.

Quickstart::

    from rerank_async import RerankClient

    async with RerankClient() as client:
        result = await client.rerank("What is the capital of France?", documents, top_k=5)
        for ranked in result.results:
            print(ranked.index, ranked.score, ranked.document)
"""

from __future__ import annotations

from ._client import NOT_GIVEN, ClientArguments, ClientOptions, NotGiven, RerankClient
from ._config import HttpEngine
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    DeadlineExceededError,
    NotFoundError,
    RateLimitError,
    RerankError,
    ResponseTimeoutError,
    ResponseTooLargeError,
    ResponseValidationError,
    RetryBudgetExhaustedError,
    ServerError,
)
from ._fleet import ScoreCache, ScoreCacheError
from ._long_documents import LongDocuments
from ._many import RerankOutcome, RerankRequest
from ._models import (
    ClientStatistics,
    EndpointStatistics,
    RankedDocument,
    ReplicaStatistics,
    RequestRecord,
    RerankResult,
    Usage,
)
from ._options import Limits, RetryPolicy
from ._partial import PartialScores
from ._retry import RETRYABLE_STATUS_CODES
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
    "ClientArguments",
    "ClientClosedError",
    "ClientOptions",
    "ClientStatistics",
    "DeadlineExceededError",
    "DeepInfraProvider",
    "EndpointStatistics",
    "HttpEngine",
    "Limits",
    "LongDocuments",
    "NotFoundError",
    "NotGiven",
    "PartialScores",
    "Provider",
    "RankedDocument",
    "RateLimitError",
    "ReplicaStatistics",
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
    "ScoreCache",
    "ScoreCacheError",
    "ServerError",
    "SyncRerankClient",
    "Usage",
    "__version__",
]
