"""Default values and environment-variable names, written once.

The defaults are tuned for DeepInfra's hosted rerankers; the README's
"Configuration" section explains each choice.
"""

from __future__ import annotations

from typing import Final

DEFAULT_MODEL: Final = "cross-encoder/ms-marco-MiniLM-L-12-v2"
DEEPINFRA_BASE_URL: Final = "https://api.deepinfra.com/v1/inference"

# 64 (query, document) pairs fill a cross-encoder's GPU batch well and keep one
# request's latency near 100 ms; larger requests mostly add queueing delay.
DEFAULT_BATCH_SIZE: Final = 64
# Below 8 documents a request's fixed cost (TLS, HTTP, routing, tokenizer
# start-up) outweighs what spreading a call over more requests saves.
DEFAULT_MIN_BATCH_SIZE: Final = 8
# Spreading a call over idle slots creates at most this many times the fewest
# requests: each request is one more chance for the call to fail, and a lone
# 145-document call spread into 18 requests of 8 failed 68% of the time at 25%
# faults with 1 retry (12 requests: see docs/security.md).
MAX_SPREAD_FACTOR: Final = 4
# DeepInfra allows 200 concurrent requests per model per account. One client
# takes 32 so that several workers or processes can share an account without
# tripping the limit (which DeepInfra answers with 429).
DEFAULT_MAX_CONCURRENCY: Final = 32
DEFAULT_MAX_RETRIES: Final = 4

# Seconds. Reading allows for a cold model scaling up; connecting does not.
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0

# Backoff, seconds: exponential with full jitter between 0 and
# min(RETRY_MAX_DELAY, RETRY_INITIAL_DELAY * 2**(attempt - 1)).
DEFAULT_RETRY_INITIAL_DELAY: Final = 0.5
DEFAULT_RETRY_MAX_DELAY: Final = 8.0
# A server's Retry-After is obeyed up to this many seconds, then capped.
DEFAULT_MAX_RETRY_AFTER: Final = 60.0

# Environment variables, read once when a client is created.
ENV_DEEPINFRA_TOKEN: Final = "DEEPINFRA_TOKEN"  # noqa: S105  # a variable name, not a secret
ENV_DEEPINFRA_API_KEY: Final = "DEEPINFRA_API_KEY"
ENV_BASE_URL: Final = "RERANK_ASYNC_BASE_URL"
ENV_MODEL: Final = "RERANK_ASYNC_MODEL"

# Other services' API-key variables, named as each service's own SDK or docs name them.
ENV_COHERE_API_KEY: Final = "CO_API_KEY"  # the Cohere SDK's variable, read first
ENV_COHERE_API_KEY_ALT: Final = "COHERE_API_KEY"
ENV_JINA_API_KEY: Final = "JINA_API_KEY"
ENV_VOYAGE_API_KEY: Final = "VOYAGE_API_KEY"
ENV_TOGETHER_API_KEY: Final = "TOGETHER_API_KEY"
ENV_MIXEDBREAD_API_KEY: Final = "MXBAI_API_KEY"
ENV_NVIDIA_API_KEY: Final = "NVIDIA_API_KEY"
ENV_PINECONE_API_KEY: Final = "PINECONE_API_KEY"
# Self-hosted servers: the variable each server itself reads its key from.
ENV_INFINITY_API_KEY: Final = "INFINITY_API_KEY"
ENV_VLLM_API_KEY: Final = "VLLM_API_KEY"

# Endpoint roots: hosted services' public APIs, and self-hosted servers' default ports.
COHERE_BASE_URL: Final = "https://api.cohere.com"
JINA_BASE_URL: Final = "https://api.jina.ai"
VOYAGE_BASE_URL: Final = "https://api.voyageai.com"
TOGETHER_BASE_URL: Final = "https://api.together.xyz"
MIXEDBREAD_BASE_URL: Final = "https://api.mixedbread.com"
NVIDIA_BASE_URL: Final = "https://ai.api.nvidia.com"
PINECONE_BASE_URL: Final = "https://api.pinecone.io"
TEI_BASE_URL: Final = "http://localhost:8080"
INFINITY_BASE_URL: Final = "http://localhost:7997"
VLLM_BASE_URL: Final = "http://localhost:8000"
# Pinecone requires a dated API version on every request; a version its docs name
# for the Inference API (not verified to be the newest).
DEFAULT_PINECONE_API_VERSION: Final = "2025-04"

LOGGER_NAME: Final = "rerank_async"
