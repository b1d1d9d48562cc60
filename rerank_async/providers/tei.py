"""Hugging Face Text Embeddings Inference (TEI), self-hosted.

``POST {base_url}/rerank``; a bearer token only when the server was started
with ``--api-key`` (https://huggingface.github.io/text-embeddings-inference/,
OpenAPI ``/rerank``):

- request: ``{"query", "texts": [str, ...], "truncate", "raw_scores",
  "return_text": false}`` (no model: a TEI server serves one);
- response: a bare array ``[{"index", "score", "text"?}, ...]`` sorted by
  relevance; mapped back to input order through ``index``.

Limits: at most ``--max-client-batch-size`` texts per request, 32 by default.
Over it TEI answers 422 ``{"error": "batch size 33 > maximum allowed batch
size 32", "error_type": "Validation"}``; the client then resends the batch in
pieces of the stated size and keeps that size for later calls.

Scores: with ``raw_scores=False`` (the default) TEI applies the model's
sigmoid, so scores are probabilities in [0, 1]; with ``raw_scores=True`` they
are raw logits, and ``sigmoid=True`` maps them through 1/(1+e^-x) here.

``truncate`` defaults to ``True`` here (TEI's own default is ``false``) so a
document longer than the model's context is cut rather than rejecting the
whole batch; a per-input token error is never taken for "batch too large".

Uncertain (not verified against a live server from here): the status TEI
uses for an over-long input with ``truncate=false`` (413 in some versions).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from pydantic import RootModel

from ._indexed import IndexedProvider, ResponseShape, ScoreResult
from ._wire import dumps, join_url

__all__ = ["TEIProvider"]

# Where the server listens by default; it takes no key.
TEI_BASE_URL: Final = "http://localhost:8080"

# "Input validation error: `inputs` must have less than 512 tokens. Given: 600":
# one text is too long, and smaller batches would not help.
_INPUT_TOO_LONG: Final = re.compile(
    r"less than \d+ tokens|\btokens\b.{0,40}\bgiven\b", re.IGNORECASE
)


class _TEIResponse(RootModel[list[ScoreResult]]):
    pass


class TEIProvider(IndexedProvider):
    """TEI's ``/rerank`` endpoint.

    Args:
        truncate: Cut texts longer than the model's context instead of failing.
        raw_scores: Ask for raw logits instead of sigmoid probabilities.
        sigmoid: Map raw logits through a sigmoid here; needs ``raw_scores``.

    Raises:
        ValueError: ``sigmoid=True`` without ``raw_scores=True`` (the scores
            would already be probabilities).
    """

    name = "tei"
    # TEI serves the one model it was started with and takes no model field; the
    # name only labels results and messages.
    default_model = "tei"
    default_base_url = TEI_BASE_URL
    # TEI's default --max-client-batch-size: one request over it is a 422.
    default_batch_size = 32
    # A self-hosted server batches concurrent requests itself (up to
    # --max-batch-tokens); 16 in flight keep it fed, more would only queue.
    default_max_concurrency = 16
    response_shape = ResponseShape(_TEIResponse, "root", "score", label="body")

    def __init__(
        self, *, truncate: bool = True, raw_scores: bool = False, sigmoid: bool = False
    ) -> None:
        if sigmoid and not raw_scores:
            raise ValueError(
                "sigmoid=True needs raw_scores=True: without it TEI already returns probabilities"
            )
        self.truncate = truncate
        self.raw_scores = raw_scores
        self.sigmoid = sigmoid

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, "/rerank")

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(
            {
                "query": query,
                "texts": documents,
                "truncate": self.truncate,
                "raw_scores": self.raw_scores,
                "return_text": False,
            }
        )

    def is_batch_too_large(self, status_code: int, message: str) -> bool:
        if _INPUT_TOO_LONG.search(message):
            return False
        return super().is_batch_too_large(status_code, message)
