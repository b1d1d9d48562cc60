"""What the index-based wire formats share.

Most reranking services answer a batch with a list of ``{index, score}``
pairs sorted by relevance, not a list of scores in input order. This module
maps those pairs back into input order and checks them (every index of the
batch exactly once, every score a finite number), parses "too many documents"
messages, and holds ``RelevanceResultsProvider`` for the most common shape::

    request:  {"model", "query", "documents": [str, ...], "top_n": n, ...}
    response: {"results": [{"index": int, "relevance_score": float}, ...],
               "id"?, "usage"?: {"prompt_tokens"?, "total_tokens"?}}

which Cohere, Jina, Together, Infinity and vLLM's ``/rerank`` all speak.

A provider declares its answer's shape (``ResponseShape``: the response model,
the field holding the results, the field holding each score) and inherits the
one ``decode_response``; the generic pieces (JSON, URLs, score types) live in
the ``_wire`` leaf.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from pydantic import BaseModel

# pydantic validates TypedDicts (plain dicts, about 2.5x faster than a model per
# item) only from typing_extensions before Python 3.12; pydantic itself depends on it.
from typing_extensions import TypedDict

from ._base import BatchScores, Provider
from ._wire import (
    RESPONSE_MODEL_CONFIG,
    FiniteScore,
    StrictIndex,
    dumps,
    join_url,
    logistic,
    parse_json,
)

__all__ = [
    "HostedRelevanceProvider",
    "IndexedProvider",
    "RelevanceResponse",
    "RelevanceResult",
    "RelevanceResultsProvider",
    "ResponseShape",
    "ScoreResult",
    "TokenUsage",
    "document_limit_in",
    "scores_in_input_order",
]

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

    model_config = RESPONSE_MODEL_CONFIG

    prompt_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def input_tokens(self) -> int | None:
        """Prompt tokens when given, else the total (rerankers generate nothing)."""
        return self.prompt_tokens if self.prompt_tokens is not None else self.total_tokens


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


@dataclass(frozen=True, slots=True)
class ResponseShape:
    """Where an index-based answer keeps its scores, declared once per provider.

    Attributes:
        model: The pydantic model of the whole body. A ``usage: TokenUsage``
            field gives the token count, an ``id: str`` field the request id.
        results: The model's field with the ``{index, <score>}`` items.
        score: Each item's score key (``relevance_score``, ``score``, ``logit``).
        label: The field's name in error messages, when it differs (a bare
            array is ``body``).
        index: Each item's position key (``index``; Vertex's ``id``, validated
            into the position it stands for).
    """

    model: type[BaseModel]
    results: str
    score: str
    label: str | None = None
    index: str = "index"


class IndexedProvider(Provider):
    """A provider whose service answers with ``{index, score}`` pairs.

    Adds to ``Provider``: ``"... at most N documents"``-style answers count as
    "batch too large" (and N as the size to retry with), an opt-in sigmoid
    for services that return raw logits, and a ``repr`` of the options.
    """

    # Map scores through 1/(1+e^-x); only providers whose scores are logits offer it.
    sigmoid: bool = False
    # Where the scores sit in a 2xx answer; see ResponseShape.
    response_shape: ClassVar[ResponseShape]

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
        return [logistic(score) for score in scores] if self.sigmoid else scores

    def shape_of_response(self) -> ResponseShape:
        """The answer's shape; a provider whose shape depends on its options overrides this."""
        return self.response_shape

    def decode_response(self, content: bytes, n_documents: int) -> BatchScores:
        shape = self.shape_of_response()
        parsed = parse_json(shape.model, content)
        items: Iterable[Any] = getattr(parsed, shape.results)
        score, index = shape.score, shape.index
        scores = scores_in_input_order(
            ((item[index], item[score]) for item in items),
            n_documents,
            field=shape.label or shape.results,
        )
        usage = getattr(parsed, "usage", None)
        request_id = getattr(parsed, "id", None)
        return BatchScores(
            scores=self.finish(scores),
            input_tokens=usage.input_tokens if isinstance(usage, TokenUsage) else None,
            request_id=request_id if isinstance(request_id, str) else None,
        )


class RelevanceResponse(BaseModel):
    """``{"results": [...], "id"?, "usage"?}``; other fields are ignored."""

    model_config = RESPONSE_MODEL_CONFIG

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
    response_shape = ResponseShape(RelevanceResponse, "results", "relevance_score")
    # The body field an instruction goes in (Contextual's "instruction", DashScope's
    # "instruct", Fireworks' "task"); None: the service has none.
    instruction_field: ClassVar[str | None] = None

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, self.path)

    def extra_fields(self) -> dict[str, object]:
        """Service-specific body fields added after the common ones."""
        return {}

    def request_body(self, model: str, query: str, documents: Sequence[str]) -> dict[str, object]:
        """The body for one batch, before encoding."""
        body: dict[str, object] = {
            "model": model,
            "query": query,
            "documents": documents,
            "top_n": len(documents),
        }
        body.update(self.extra_fields())
        return body

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(self.request_body(model, query, documents))

    def accepts_instruction(self, model: str) -> bool:
        return self.instruction_field is not None

    def encode_instructed(
        self, model: str, query: str, documents: Sequence[str], instruction: str
    ) -> bytes:
        field = self.instruction_field
        if field is None or not self.accepts_instruction(model):
            return super().encode_instructed(model, query, documents, instruction)
        body = self.request_body(model, query, documents)
        body[field] = instruction
        return dumps(body)


class HostedRelevanceProvider(RelevanceResultsProvider):
    """A hosted ``POST /v1/rerank`` of the relevance shape that can echo documents (Jina, Together).

    Neither documents a per-request cap: 100 documents keep one request (and a
    retry) small while a call still needs few requests. Both rate-limit per key,
    so 8 in flight avoid needless 429s. Documents are never echoed back.
    """

    path = "/v1/rerank"
    default_batch_size = 100
    default_max_concurrency = 8

    def extra_fields(self) -> dict[str, object]:
        return {"return_documents": False}
