"""The local server's pointwise lexical scorer: pure functions, no dependencies.

A stand-in for a cross-encoder, not a model of one. It is deterministic and *pointwise*:
``score(query, document)`` depends on that pair alone, never on the other documents of the
request, so a client may split, reorder or retry batches and still get identical scores.
The formula is documented, term by term, in ``docs/server.md``.

Pipeline for a text: lowercase, split on non-alphanumerics, drop a small stopword list,
strip a few English suffixes conservatively. Then, for query terms ``Q`` (distinct) and
document tokens ``D``:

    weight(t) = min(len(t), MAX_TERM_WEIGHT)
    coverage  = sum(weight(t) for t in Q if t in D) / sum(weight(t) for t in Q)
    density   = (tokens of D that are in Q) / len(D)
    score     = COVERAGE_WEIGHT * coverage + DENSITY_WEIGHT * density     # in [0, 1]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

__all__ = [
    "COVERAGE_WEIGHT",
    "DENSITY_WEIGHT",
    "MAX_TERM_WEIGHT",
    "STOPWORDS",
    "QueryTerms",
    "count_tokens",
    "prepare_query",
    "score",
    "score_document",
    "score_pairs",
    "stem",
    "tokenize",
]

COVERAGE_WEIGHT: Final = 0.98
DENSITY_WEIGHT: Final = 0.02
# Longer terms are usually rarer and carry more meaning ("populous" > "city" > "go"); the cap
# stops one long word from drowning out the rest of the query.
MAX_TERM_WEIGHT: Final = 10

# A short list on purpose: question words and glue. Words like "most" or "not" stay terms.
_STOPWORD_TEXT: Final = """
    a about an and are as at be been but by can could did do does for from had has have
    how i if in into is it its me my of on or our so than that the their them then there
    these they this those to was we were what when where which who whom why will with
    would you your
"""
STOPWORDS: Final[frozenset[str]] = frozenset(_STOPWORD_TEXT.split())

# `[^\W_]` is "a word character that is not an underscore": letters and digits, Unicode-aware.
_TOKEN_RE: Final = re.compile(r"[^\W_]+")


@lru_cache(maxsize=65536)
def stem(token: str) -> str:
    """Strip one common English suffix, conservatively.

    Only the suffixes ``ies``, ``es`` (after s/x/z/ch/sh), ``s``, ``ing`` and ``ed`` are
    stripped, and only from words long enough that a stem remains. The same function runs on
    queries and documents, so an imperfect stem still matches its own inflections.

    Args:
        token: A lowercase alphanumeric token.

    Returns:
        The stem.
    """
    n = len(token)
    if n > 4 and token.endswith("ies"):
        return token[:-3] + "y"  # cities -> city
    if n > 4 and token.endswith(("sses", "xes", "zes", "ches", "shes")):
        return token[:-2]  # classes -> class, boxes -> box
    if n > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]  # capitals -> capital; keeps "class", "corpus", "paris"
    if n > 5 and token.endswith("ing"):
        return token[:-3]  # ranking -> rank
    if n > 4 and token.endswith("ed"):
        return token[:-2]  # ranked -> rank
    return token


def tokenize(text: str, *, keep_stopwords: bool = False) -> list[str]:
    """Split a text into stemmed tokens, in order, repeats kept.

    Args:
        text: Any text.
        keep_stopwords: Keep the words of `STOPWORDS` too.

    Returns:
        Lowercase stems of the alphanumeric runs (minus stopwords, by default).
    """
    words = _TOKEN_RE.findall(text.lower())
    if keep_stopwords:
        return [stem(t) for t in words]
    return [stem(t) for t in words if t not in STOPWORDS]


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """A query tokenized once and reused for every document of a request.

    Attributes:
        weights: Distinct query stems and their weights.
        total_weight: Sum of the weights; ``0.0`` when the query has no terms.
        keep_stopwords: Whether the terms include stopwords (a query made only of them), in
            which case documents are tokenized with their stopwords too.
    """

    weights: Mapping[str, int]
    total_weight: float
    keep_stopwords: bool = False


@lru_cache(maxsize=1024)
def prepare_query(query: str) -> QueryTerms:
    """Tokenize a query into weighted distinct terms.

    A query made only of stopwords ("what is it?") falls back to all of its tokens, and its
    documents keep theirs, so it still matches something.

    Args:
        query: The query text.

    Returns:
        The query's terms; cached, so callers may call this once per pair.
    """
    terms = tokenize(query)
    keep_stopwords = not terms
    if keep_stopwords:
        terms = tokenize(query, keep_stopwords=True)
    weights = {t: min(len(t), MAX_TERM_WEIGHT) for t in terms}
    return QueryTerms(
        weights=weights,
        total_weight=float(sum(weights.values())),
        keep_stopwords=keep_stopwords,
    )


def score_document(terms: QueryTerms, document: str) -> float:
    """Score one document against a prepared query.

    Args:
        terms: The output of `prepare_query`.
        document: The document text.

    Returns:
        A relevance score in ``[0.0, 1.0]``; ``0.0`` when no query term occurs.
    """
    if terms.total_weight == 0.0:
        return 0.0
    weights = terms.weights
    doc_tokens = tokenize(document, keep_stopwords=terms.keep_stopwords)
    hits = [t for t in doc_tokens if t in weights]
    if not hits:
        return 0.0
    matched = sum(weights[t] for t in set(hits))
    coverage = matched / terms.total_weight
    density = len(hits) / len(doc_tokens)
    return min(1.0, COVERAGE_WEIGHT * coverage + DENSITY_WEIGHT * density)


def score(query: str, document: str) -> float:
    """Score one (query, document) pair.

    Args:
        query: The query text.
        document: The document text.

    Returns:
        A relevance score in ``[0.0, 1.0]``.
    """
    return score_document(prepare_query(query), document)


def score_pairs(queries: Sequence[str], documents: Sequence[str]) -> list[float]:
    """Score documents against one query (``len(queries) == 1``) or one query each.

    Args:
        queries: One query for all documents, or one per document.
        documents: The documents, in order.

    Returns:
        The scores, in document order.

    Raises:
        ValueError: If ``queries`` has neither 1 nor ``len(documents)`` entries.
    """
    if len(queries) == 1:
        terms = prepare_query(queries[0])
        return [score_document(terms, d) for d in documents]
    if len(queries) != len(documents):
        msg = f"queries has {len(queries)} entries; expected 1 or {len(documents)}"
        raise ValueError(msg)
    return [score_document(prepare_query(q), d) for q, d in zip(queries, documents, strict=True)]


def count_tokens(text: str) -> int:
    """Count whitespace-separated tokens, the server's ``input_tokens`` unit.

    Args:
        text: Any text.

    Returns:
        ``len(text.split())``.
    """
    return len(text.split())
