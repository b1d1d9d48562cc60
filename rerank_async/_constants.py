"""Provider-independent defaults and the client's own environment-variable names.

Each provider's endpoint root, key variables and default sizes live in its own
module under ``providers/``; the README's "Configuration" section explains each
choice.
"""

from __future__ import annotations

from typing import Final

# Below 8 documents a request's fixed cost (TLS, HTTP, routing, tokenizer
# start-up) outweighs what spreading a call over more requests saves.
DEFAULT_MIN_BATCH_SIZE: Final = 8
# Spreading a call over idle slots creates at most this many times the fewest
# requests: each request is one more chance for the call to fail, and a lone
# 145-document call spread into 18 requests of 8 failed 67-70% of the time at 25%
# faults with 1 retry (12 requests: see docs/security.md).
MAX_SPREAD_FACTOR: Final = 4
DEFAULT_MAX_RETRIES: Final = 4

# Seconds. Reading allows for a cold model scaling up; connecting does not.
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

# Backoff, seconds: exponential with full jitter between 0 and
# min(RETRY_MAX_DELAY, RETRY_INITIAL_DELAY * 2**(attempt - 1)). The first wait is
# short (it was 0.5 s): the retry budget, not the backoff, keeps retries from piling
# onto a struggling server, and a long first wait made one random 503 the slowest
# part of a whole call (docs/rate-limits.md).
DEFAULT_RETRY_INITIAL_DELAY: Final = 0.1
# Seconds a client waits out an endpoint that fails every request (RetryPolicy.outage_patience):
# a deploy or a failover usually takes seconds; a minute is long past one.
DEFAULT_OUTAGE_PATIENCE: Final = 60.0
DEFAULT_RETRY_MAX_DELAY: Final = 8.0
# Retries across a client: at most this share of its first attempts, plus this many
# per second (gRPC retryThrottling and Finagle retry budgets use 10-20%).
DEFAULT_RETRY_BUDGET_RATIO: Final = 0.2
DEFAULT_RETRY_BUDGET_PER_SECOND: Final = 2.0
# A server's Retry-After is obeyed up to this many seconds, then capped.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0

# Environment variables, read once when a client is created.
ENV_BASE_URL: Final = "RERANK_ASYNC_BASE_URL"
ENV_MODEL: Final = "RERANK_ASYNC_MODEL"

LOGGER_NAME: Final = "rerank_async"
