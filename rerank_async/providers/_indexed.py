"""What the index-based wire formats share.

Most reranking services answer a batch with a list of ``{index, score}``
pairs sorted by relevance, not a list of scores in input order. This module
maps those pairs back into input order and checks them (every index of the
batch exactly once, every score a finite number), and holds the pieces the
providers have in common: strict score types, compact JSON encoding, URL
joining, a numerically safe sigmoid, "too many documents" message parsing,
and ``RelevanceResultsProvider`` for the most common shape::

    request:  {"model", "query", "documents": [str, ...], "top_n": n, ...}
    response: {"results": [{"index": int, "relevance_score": float}, ...],
               "id"?, "usage"?: {"prompt_tokens"?, "total_tokens"?}}

which Cohere, Jina, Together, Infinity and vLLM's ``/rerank`` all speak.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Annotated, ClassVar, Final, TypeVar

from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict, ValidationError

# pydantic validates TypedDicts (plain dicts, about 2.5x faster than a model per
# item) only from typing_extensions before Python 3.12; pydantic itself depends on it.
from typing_extensions import TypedDict

from ._base import BatchScores, Provider

__all__ = [
    "FiniteScore",
    "IndexedProvider",
    "RelevanceResponse",
    "RelevanceResult",
    "RelevanceResultsProvider",
    "ScoreResult",
    "StrictIndex",
    "TokenUsage",
    "describe_validation_error",
    "document_limit_in",
    "dumps",
    "join_url",
    "parse_json",
    "scores_in_input_order",
    "sigmoid",
]

# Strict: "0.5" or true is not a score. AllowInfNan(False): NaN and Infinity
# would silently corrupt a ranking. A JSON integer (0, 1) is still a number.
FiniteScore = Annotated[float, Strict(), AllowInfNan(False)]
# Strict: 1.0, "1" and true are not indices.
StrictIndex = Annotated[int, Strict()]

ModelT = TypeVar("ModelT", bound=BaseModel)

# How many missing indices an error message lists before "and N more".
_LISTED_MISSING: Final = 10

# "List should have at most 2048 items after validation, not 2049" (pydantic v2,
# behind FastAPI servers such as Infinity), "at most 100 documents", "must not
# exceed 1000 items", "maximum of 1000 documents", "more than 1000 documents".
_LIMIT_PATTERNS: Final = (
    re.compile(r"should have at most (\d+) items", re.IGNORECASE),
    re.compile(
        r"(?:at most|no more than|up to|not exceed|maximum(?: allowed)?(?: of| is)?|more than)"
        r"\s+(\d+)\s+(?:documents|docs|passages|inputs|texts|items|records)\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"(?:documents|passages|inputs|texts)\b[^.]{0,60}?"
        r"(?:exceed(?:s|ed)?|greater than|more than|limit(?: of| is)?|maximum(?: of| is)?)"
        # A number of tokens or characters is a per-document limit: splitting won't help.
        r"\D{0,20}?(\d+)(?!\d|\s*(?:tokens?|characters?|chars|bytes)\b)",
        re.IGNORECASE,
    ),
)


class RelevanceResult(TypedDict):
    """One ``{"index", "relevance_score"}`` item; other keys (an echoed document) are ignored."""

    index: StrictIndex
    relevance_score: FiniteScore


class ScoreResult(TypedDict):
    """One ``{"index", "score"}`` item (TEI, Mixedbread, Pinecone, vLLM's ``/score``)."""

    index: StrictIndex
    score: FiniteScore


class TokenUsage(BaseModel):
    """The OpenAI-style ``usage`` object several services send."""

    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def input_tokens(self) -> int | None:
        """Prompt tokens when given, else the total (rerankers generate nothing)."""
        return self.prompt_tokens if self.prompt_tokens is not None else self.total_tokens


def dumps(body: object) -> bytes:
    """Compact, raw-UTF-8 JSON: smaller bodies, no per-character escaping."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (the service's root, trailing slash or not) followed by ``path``."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def sigmoid(x: float) -> float:
    """``1 / (1 + e**-x)`` without overflow for any finite ``x``.

    ``math.exp`` is only ever called on a non-positive number, so it cannot
    overflow; very negative logits give 0.0 and very positive ones 1.0.
    """
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def parse_json(model: type[ModelT], content: bytes) -> ModelT:
    """Validate a response body; ``ValueError`` naming the first problem if it does not fit."""
    try:
        return model.model_validate_json(content)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from error


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first problem, e.g. ``results.3.index: Input should be ...``."""
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{more}"


def scores_in_input_order(
    pairs: Iterable[tuple[int, float]], n_documents: int, *, field: str = "results"
) -> list[float]:
    """Put ``(index, score)`` pairs, in any order, back into the batch's order.

    Never trusts the server's order or count: every index must lie in
    ``0..n_documents-1`` and appear exactly once.

    Args:
        pairs: ``(index, score)`` per result, as the server listed them.
        n_documents: Documents in the batch.
        field: The response field the pairs came from, for messages.

    Returns:
        ``scores[i]`` for the batch's ``i``-th document.

    Raises:
        ValueError: An index is out of range, repeated or missing.
    """
    scores = [0.0] * n_documents
    # Where each index was first seen, so a repeat names both places.
    seen_at = [-1] * n_documents
    count = 0
    for position, (index, score) in enumerate(pairs):
        if not 0 <= index < n_documents:
            raise ValueError(
                f"{field}[{position}].index: {index} is out of range for a batch of "
                f"{n_documents} documents"
            )
        if seen_at[index] >= 0:
            raise ValueError(
                f"{field}[{position}].index: {index} appears twice "
                f"(also at {field}[{seen_at[index]}])"
            )
        seen_at[index] = position
        scores[index] = score
        count += 1
    if count < n_documents:
        # In range and never repeated, so fewer results than documents means gaps.
        missing = [index for index, at in enumerate(seen_at) if at < 0]
        listed = ", ".join(map(str, missing[:_LISTED_MISSING]))
        more = (
            f" and {len(missing) - _LISTED_MISSING} more" if len(missing) > _LISTED_MISSING else ""
        )
        raise ValueError(
            f"{field} has {count} entries for a batch of {n_documents} documents; "
            f"missing indices {listed}{more}"
        )
    return scores


def document_limit_in(message: str) -> int | None:
    """The most documents per request an error message states ("at most 100 documents": 100)."""
    for pattern in _LIMIT_PATTERNS:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None


class IndexedProvider(Provider):
    """A provider whose service answers with ``{index, score}`` pairs.

    Adds to ``Provider``: ``"... at most N documents"``-style answers count as
    "batch too large" (and N as the size to retry with), an opt-in sigmoid
    for services that return raw logits, and a ``repr`` of the options.
    """

    # Map scores through 1/(1+e^-x); only providers whose scores are logits offer it.
    sigmoid: bool = False

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({options})"

    def is_batch_too_large(self, status_code: int, message: str) -> bool:
        return super().is_batch_too_large(status_code, message) or (
            status_code in (400, 422) and document_limit_in(message) is not None
        )

    def max_batch_size_hint(self, message: str) -> int | None:
        hint = super().max_batch_size_hint(message)
        return hint if hint is not None else document_limit_in(message)

    def finish(self, scores: list[float]) -> list[float]:
        """Scores as the caller gets them: through the sigmoid when it is on."""
        return [sigmoid(score) for score in scores] if self.sigmoid else scores


class RelevanceResponse(BaseModel):
    """``{"results": [...], "id"?, "usage"?}``; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    results: list[RelevanceResult]
    id: str | None = None
    usage: TokenUsage | None = None


class RelevanceResultsProvider(IndexedProvider):
    """The ``results[{index, relevance_score}]`` shape (Cohere, Jina, Together, Infinity, vLLM).

    Subclasses set ``path`` and may add body fields in ``extra_fields``. The
    request asks for every result of the batch (``top_n`` = its size); the
    client applies ``top_k`` once, after merging the batches.
    """

    path: ClassVar[str]
    response_model: ClassVar[type[RelevanceResponse]] = RelevanceResponse

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, self.path)

    def extra_fields(self) -> dict[str, object]:
        """Service-specific body fields added after the common ones."""
        return {}

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        body: dict[str, object] = {
            "model": model,
            "query": query,
            "documents": documents,
            "top_n": len(documents),
        }
        body.update(self.extra_fields())
        return dumps(body)

    def decode_response(self, content: bytes, n_documents: int) -> BatchScores:
        parsed = parse_json(self.response_model, content)
        scores = scores_in_input_order(
            ((item["index"], item["relevance_score"]) for item in parsed.results), n_documents
        )
        return BatchScores(
            scores=self.finish(scores),
            input_tokens=self.input_tokens(parsed),
            request_id=parsed.id,
        )

    def input_tokens(self, parsed: RelevanceResponse) -> int | None:
        """Tokens the server counted for the batch, when it says."""
        return parsed.usage.input_tokens if parsed.usage is not None else None
