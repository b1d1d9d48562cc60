"""The local server's lexical scorer: ordering, range, determinism, pointwise-ness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.server._scoring import (
    COVERAGE_WEIGHT,
    DENSITY_WEIGHT,
    count_tokens,
    prepare_query,
    score,
    score_pairs,
    stem,
    tokenize,
)

FRANCE_Q = "What is the capital of France?"
PARIS = "Paris is the capital and most populous city of France."
BERLIN = "Berlin is the capital of Germany."
FOX = "The quick brown fox jumps over the lazy dog."


@pytest.mark.parametrize(
    ("query", "better", "worse"),
    [
        (FRANCE_Q, PARIS, BERLIN),
        (FRANCE_Q, BERLIN, FOX),
        (FRANCE_Q, "France's capital is Paris.", "Germany's capital is Berlin."),
        # Inflections match through the stemmer.
        ("ranking documents", "A document ranker ranked the documents.", "Cats sleep a lot."),
        ("capital cities", "Capital city of Italy: Rome.", "Rivers of Italy."),
        # Longer (rarer-looking) terms weigh more than short ones.
        ("populous city", "The most populous region.", "A city."),
        # With equal coverage, a denser (shorter) document wins.
        (
            "neural reranker",
            "A neural reranker.",
            "A neural reranker, among many other words here.",
        ),
    ],
)
def test_orders_better_document_first(query: str, better: str, worse: str) -> None:
    assert score(query, better) > score(query, worse)


def test_seed_example_values() -> None:
    # capital (weight 7) and france (weight 6): Paris covers both, Berlin only "capital".
    paris_density = 2 / 6  # paris capital most populous city france
    assert score(FRANCE_Q, PARIS) == pytest.approx(
        COVERAGE_WEIGHT * 1.0 + DENSITY_WEIGHT * paris_density
    )
    assert score(FRANCE_Q, BERLIN) == pytest.approx(
        COVERAGE_WEIGHT * 7 / 13 + DENSITY_WEIGHT * 1 / 3
    )


@pytest.mark.parametrize(
    ("query", "document"),
    [
        (FRANCE_Q, FOX),
        (FRANCE_Q, ""),
        ("", PARIS),
        ("", ""),
        ("?!", "..."),
        (FRANCE_Q, "The of is what."),  # stopwords only never match a content query
    ],
)
def test_unrelated_or_empty_scores_zero(query: str, document: str) -> None:
    assert score(query, document) == 0.0


@pytest.mark.parametrize(
    ("query", "document", "expected"),
    [
        ("paris", "paris", 1.0),
        ("Paris", "PARIS!!!", 1.0),
        ("what is it", "it is what it is", 1.0),  # all-stopword query falls back to all tokens
    ],
)
def test_exact_match_scores_one(query: str, document: str, expected: float) -> None:
    assert score(query, document) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("cities", "city"),
        ("classes", "class"),
        ("boxes", "box"),
        ("capitals", "capital"),
        ("class", "class"),
        ("corpus", "corpus"),
        ("paris", "paris"),
        ("ranking", "rank"),
        ("ranked", "rank"),
        ("bed", "bed"),
        ("sing", "sing"),
        ("is", "is"),
        ("models", "model"),
        ("gpus", "gpus"),  # conservative: "-us" words keep their s
    ],
)
def test_stem(token: str, expected: str) -> None:
    assert stem(token) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the capital of France?", ["capital", "france"]),
        ("GPU-bound re_ranking, 2024!", ["gpu", "bound", "re", "rank", "2024"]),
        ("Ünïcode Straße", ["ünïcode", "straße"]),
        ("", []),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_prepare_query_weights_are_clipped_lengths() -> None:
    terms = prepare_query("a supercalifragilistic cat")
    assert dict(terms.weights) == {"supercalifragilistic": 10, "cat": 3}
    assert terms.total_weight == 13.0


def test_deterministic_and_pointwise() -> None:
    docs = [PARIS, BERLIN, FOX, "", "France", "capital " * 50]
    alone = [score(FRANCE_Q, d) for d in docs]
    assert score_pairs([FRANCE_Q], docs) == alone
    assert score_pairs([FRANCE_Q], docs[::-1]) == alone[::-1]
    assert score_pairs([FRANCE_Q] * len(docs), docs) == alone
    assert score_pairs([FRANCE_Q], docs) == score_pairs([FRANCE_Q], docs)


def test_score_pairs_one_query_per_document() -> None:
    queries = ["capital of France", "capital of Germany"]
    assert score_pairs(queries, [PARIS, BERLIN]) == [
        score(q, d) for q, d in zip(queries, [PARIS, BERLIN], strict=True)
    ]
    assert score_pairs([], []) == []
    assert score_pairs(["q"], []) == []


@pytest.mark.parametrize(("n_queries", "n_docs"), [(2, 3), (0, 1), (3, 2)])
def test_score_pairs_rejects_mismatched_queries(n_queries: int, n_docs: int) -> None:
    with pytest.raises(ValueError, match="queries"):
        score_pairs(["q"] * n_queries, ["d"] * n_docs)


@pytest.mark.parametrize(
    ("text", "expected"), [("", 0), ("one", 1), ("  two\twords\n", 2), ("a, b. c", 3)]
)
def test_count_tokens(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


@given(st.text(max_size=60), st.lists(st.text(max_size=80), max_size=6))
def test_scores_in_unit_interval_and_pointwise(query: str, documents: list[str]) -> None:
    scores = score_pairs([query], documents)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == [score(query, d) for d in documents]
