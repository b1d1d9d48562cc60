"""The errors that ``RerankClient`` raises.

Every failure of a call surfaces as exactly one of these (never an
``ExceptionGroup``, a ``tenacity.RetryError`` or a raw ``httpx`` error)::

    RerankError                      .partial: the scores a failed call kept
    ├── APIConnectionError           no response; __cause__ is the engine's error
    │   └── APITimeoutError          one request timed out
    │       ├── ResponseTimeoutError the whole response took longer than timeout
    │       └── DeadlineExceededError the call's total_timeout passed (never retried)
    ├── APIStatusError               .status_code, .message, .request_id, .body
    │   ├── BadRequestError          400, 413, 422
    │   ├── AuthenticationError      401, 403
    │   ├── NotFoundError            404 (unknown model or wrong base URL)
    │   ├── RateLimitError           429
    │   └── ServerError              5xx
    ├── ResponseValidationError      2xx, but a body that does not fit
    │   └── ResponseTooLargeError    a body over the size limit, any status (never retried)
    ├── RetryBudgetExhaustedError    retryable, but the client's retry budget is spent
    └── ClientClosedError            the client was closed before or during the call,
                                     or is used in a process it was not made in (fork);
                                     also a RuntimeError

Invalid arguments raise ``TypeError`` or ``ValueError`` before any request.
``is_endpoint_wide(error)`` tells the failures that hold for every request to the
endpoint (401, 403, 404): no other batch of the call can escape them.
Every message names the endpoint, the model and the documents involved, and
none contains the API key (see docs/security.md).
"""

from __future__ import annotations

from ._partial import PartialScores

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "DeadlineExceededError",
    "NotFoundError",
    "RateLimitError",
    "RerankError",
    "ResponseTimeoutError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "is_endpoint_wide",
]


class RerankError(Exception):
    """Base class of every error a rerank call raises.

    Attributes:
        url: The endpoint, when a request was involved.
        model: The model name.
        document_range: ``(start, stop)`` indices of the call's documents that
            the failed request carried, when a single batch failed.
        partial: For an error a ``rerank`` call raises, the scores it had
            obtained (``None`` where missing) and the ranges that failed;
            ``None`` otherwise.
    """

    partial: PartialScores | None

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        model: str | None = None,
        document_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.model = model
        self.document_range = document_range
        self.partial = None


class APIConnectionError(RerankError):
    """No usable response arrived: refused, reset or dropped connection."""


class APITimeoutError(APIConnectionError):
    """A request timed out: connecting, or waiting for its answer.

    Retried like any dropped connection. The call's own deadline has a subclass
    of its own, ``DeadlineExceededError``, which is never retried.

    Attributes:
        documents_scored: ``None``; set by ``DeadlineExceededError``, where it counts.
    """

    documents_scored: int | None = None


class DeadlineExceededError(APITimeoutError):
    """The call's ``total_timeout`` passed before every document had its score.

    A deadline is the caller's: it is never retried, and ``rerank_many`` never
    resumes a request past it. ``partial`` holds what was scored in time.

    Attributes:
        documents_scored: How many documents had their score when it passed.
        total_timeout: The deadline, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        documents_scored: int,
        total_timeout: float,
        url: str | None = None,
        model: str | None = None,
    ) -> None:
        super().__init__(message, url=url, model=model)
        self.documents_scored: int | None = documents_scored
        self.total_timeout = total_timeout


class ResponseTimeoutError(APITimeoutError):
    """The response did not arrive complete within the request's ``timeout``.

    Raised for a body that trickles in or never ends: ``timeout`` bounds the
    whole attempt, from sending to the last byte, not only each wait for data.
    Retried like any timeout.

    Attributes:
        timeout: The seconds the attempt was allowed.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        url: str | None = None,
        model: str | None = None,
        document_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message, url=url, model=model, document_range=document_range)
        self.timeout = timeout


class APIStatusError(RerankError):
    """The server answered with a non-success status code.

    Attributes:
        status_code: The HTTP status.
        server_message: The server's own error message, as it sent it.
        request_id: The server's request id, when it sent one.
        body: The response body, decoded from JSON when possible.
        retry_after: Seconds the server asked us to wait, when it said so.
        limit_reset_s: Seconds until a rate limit the headers say is spent
            resets, when they say so.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        url: str | None = None,
        model: str | None = None,
        document_range: tuple[int, int] | None = None,
        server_message: str = "",
        request_id: str | None = None,
        body: object = None,
        retry_after: float | None = None,
        limit_reset_s: float | None = None,
    ) -> None:
        super().__init__(message, url=url, model=model, document_range=document_range)
        self.limit_reset_s = limit_reset_s
        self.status_code = status_code
        self.server_message = server_message
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400, 413 or 422: the server rejected the request as sent."""


class AuthenticationError(APIStatusError):
    """401 or 403: the API key is missing, wrong, or not allowed."""


class NotFoundError(APIStatusError):
    """404: usually an unknown model name or a wrong base URL."""


class RateLimitError(APIStatusError):
    """429: too many requests in flight, or the model is scaling up."""


class ServerError(APIStatusError):
    """5xx: the server failed."""


class ResponseValidationError(RerankError):
    """A 2xx response whose body is not what the wire format promises.

    Examples: not JSON, no ``scores``, the wrong number of scores, a
    non-numeric or non-finite score, a repeated or missing result index.
    """


class ResponseTooLargeError(ResponseValidationError):
    """A response body (after decompression, whatever its status) larger than the batch needs.

    Reading stops at the limit, so a huge body or a compression bomb costs at
    most the limit in memory. The limit scales with the batch (see
    ``docs/security.md``). The same request would get the same answer, so it
    is never retried.

    Attributes:
        limit: The most bytes accepted for this batch.
        status_code: The status of the oversized answer.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        status_code: int,
        url: str | None = None,
        model: str | None = None,
        document_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message, url=url, model=model, document_range=document_range)
        self.limit = limit
        self.status_code = status_code


class RetryBudgetExhaustedError(RerankError):
    """A batch failed in a retryable way, but the client's retry budget is spent.

    Retries across a client are capped at a share of its requests (see
    ``RetryPolicy.budget_ratio``), so that an outage does not multiply the load on a
    server that is already down. The batch fails at once instead of retrying;
    a bulk run records it as failed for ``--retry-failed`` to redo later.

    Attributes:
        last_error: The failure that would have been retried (also ``__cause__``).
    """

    def __init__(
        self,
        message: str,
        *,
        last_error: RerankError,
        url: str | None = None,
        model: str | None = None,
        document_range: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message, url=url, model=model, document_range=document_range)
        self.last_error = last_error


class ClientClosedError(RerankError, RuntimeError):
    """The client is closed: ``aclose()`` ran before or during this call, or it was made in
    another process (a fork) after sending from there.

    Closing fails every call still running or waiting on the client with this error,
    promptly (trio and anyio raise ``ClosedResourceError`` to a closed resource's waiters
    the same way); nothing is retried or hedged after close. Also a ``RuntimeError``, which
    is what a closed client raised before this class existed. Never retried.
    """


def is_endpoint_wide(error: BaseException) -> bool:
    """Whether ``error`` holds for every request to the endpoint, whatever it carries.

    A refused key or an unknown model: no other batch of the call can escape it,
    and splitting a request by query would only send it again.
    """
    return isinstance(error, AuthenticationError | NotFoundError)
