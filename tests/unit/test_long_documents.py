"""LongDocuments: the pure windowing and merge, and "truncate" / "chunk" through a client."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

import rerank_async
from rerank_async import APIConnectionError, Limits, LongDocuments, PartialScores, RerankClient
from rerank_async._long_documents import window_spans, windows
from rerank_async.providers import CohereProvider, JinaProvider
from tests.conftest import SleepRecorder, make_client, pointwise_score


def estimate(text: str) -> int:
    """Every provider's default estimate: about 4 characters per token."""
    return len(text) // 4 + 1


def words_of(count: int) -> str:
    return " ".join(f"word{i}" for i in range(count))


# -- the option ------------------------------------------------------------------------------


def test_long_documents_is_public_and_frozen() -> None:
    assert "LongDocuments" in rerank_async.__all__
    option = LongDocuments(max_tokens=512, mode="chunk", overlap_tokens=32)
    with pytest.raises(AttributeError):
        option.max_tokens = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens must be >= 1"),
        ({"max_tokens": 10, "overlap_tokens": 10}, ValueError, "must be less than max_tokens"),
        ({"max_tokens": 10, "overlap_tokens": -1}, ValueError, "overlap_tokens must be >= 0"),
        ({"max_tokens": 10, "mode": "summarize"}, ValueError, "mode must be 'truncate' or 'chunk'"),
        ({"max_tokens": 1.5}, TypeError, "max_tokens must be an int"),
        ({"max_tokens": True}, TypeError, "max_tokens must be an int"),
    ],
)
def test_bad_options_are_refused(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        LongDocuments(**options)


def test_long_documents_must_be_the_option_object() -> None:
    with pytest.raises(TypeError, match="long_documents must be a LongDocuments"):
        RerankClient(long_documents={"max_tokens": 5})  # type: ignore[arg-type]


def test_max_tokens_defaults_to_the_providers_per_document_cap() -> None:
    client = RerankClient(provider="dashscope", long_documents=LongDocuments(mode="chunk"))
    assert client.options.long_documents == LongDocuments(mode="chunk")
    with pytest.raises(ValueError, match="needs max_tokens"):
        RerankClient(provider="jina", model="m", long_documents=LongDocuments(mode="chunk"))


# -- windows ---------------------------------------------------------------------------------


def test_a_short_text_is_its_own_window() -> None:
    assert windows("a short text", max_tokens=10, overlap_tokens=2, estimate=estimate) == [
        "a short text"
    ]


def test_6000_words_at_512_tokens_overlap_and_cover() -> None:
    text = words_of(6000)
    found = windows(text, max_tokens=512, overlap_tokens=64, estimate=estimate)
    assert len(found) >= 4
    assert all(estimate(window) <= 512 for window in found)
    assert found[0].startswith("word0 ")
    assert found[-1].endswith(" word5999")
    # In order, each one overlapping the next, and every word whole in some window.
    for current, following in itertools.pairwise(found):
        assert following.split()[0] in current.split()
    assert set().union(*(window.split() for window in found)) == set(text.split())


def test_a_word_longer_than_the_limit_is_cut_inside() -> None:
    text = "a " + "x" * 100 + " b"
    found = windows(text, max_tokens=10, overlap_tokens=0, estimate=estimate)
    assert all(estimate(window) <= 10 for window in found)
    assert "".join(found).replace(" ", "") == text.replace(" ", "")


@given(
    st.lists(st.text(alphabet="abc", min_size=1, max_size=30), min_size=1, max_size=80),
    st.integers(min_value=2, max_value=40),
    st.integers(min_value=0, max_value=39),
)
def test_windows_cover_every_character_in_order(
    words: list[str], max_tokens: int, overlap: int
) -> None:
    text = " ".join(words)
    overlap = min(overlap, max_tokens - 1)
    spans = window_spans(text, max_tokens=max_tokens, overlap_tokens=overlap, estimate=estimate)
    if estimate(text) <= max_tokens:
        assert spans == [(0, len(text))]
        return
    assert all(estimate(text[start:end]) <= max_tokens for start, end in spans)
    starts = [start for start, _ in spans]
    assert starts == sorted(set(starts))  # strictly increasing: every window moves on
    assert spans[0][0] == 0
    assert spans[-1][1] == len(text)
    # No gap between neighbours: each starts at or before the previous one's end (+ spaces).
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert text[end:start].strip() == "" if start >= end else True
    covered = [False] * len(text)
    for start, end in spans:
        covered[start:end] = [True] * (end - start)
    assert all(covered[i] for i, char in enumerate(text) if char != " ")


# -- through a client ------------------------------------------------------------------------

JINA_URL = "https://api.jina.ai/v1/rerank"


class RelevanceFake:
    """A Cohere-shaped service scoring pointwise, answering best first; keeps each body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        scores = [pointwise_score(body["query"], d) for d in body["documents"]]
        ranked = sorted(enumerate(scores), key=lambda pair: -pair[1])
        return httpx.Response(
            200, json={"results": [{"index": i, "relevance_score": s} for i, s in ranked]}
        )

    @property
    def sent(self) -> list[str]:
        return [document for body in self.bodies for document in body["documents"]]


def jina_client(**options: Any) -> RerankClient:
    return make_client(
        provider=JinaProvider(), base_url="https://api.jina.ai", model="jina-reranker-v2", **options
    )


async def test_chunk_mode_scores_windows_and_keeps_the_best(mock_api: respx.MockRouter) -> None:
    fake = RelevanceFake()
    mock_api.post(JINA_URL).mock(side_effect=fake)
    long_text = words_of(6000)
    documents = ["short one", long_text, "short two"]
    async with jina_client(long_documents=LongDocuments(max_tokens=512, mode="chunk")) as client:
        result = await client.rerank("query", documents)
    sent_windows = [text for text in fake.sent if text not in ("short one", "short two")]
    assert len(sent_windows) >= 4
    assert set().union(*(w.split() for w in sent_windows)) == set(long_text.split())
    assert all(estimate(window) <= 512 for window in sent_windows)
    assert len(result.scores) == 3
    assert result.scores[1] == max(pointwise_score("query", w) for w in sent_windows)
    assert result.scores[0] == pointwise_score("query", "short one")
    assert result.scores[2] == pointwise_score("query", "short two")
    assert result.usage.documents == 3
    assert result.results[0].document in documents


async def test_truncate_mode_cuts_by_the_estimate(mock_api: respx.MockRouter) -> None:
    fake = RelevanceFake()
    mock_api.post(JINA_URL).mock(side_effect=fake)
    long_text = words_of(3000)
    async with jina_client(long_documents=LongDocuments(max_tokens=100)) as client:
        result = await client.rerank("query", ["tiny", long_text])
    assert fake.sent[0] == "tiny"
    assert long_text.startswith(fake.sent[1])
    assert estimate(fake.sent[1]) <= 100 < estimate(long_text)
    assert result.scores == [pointwise_score("query", t) for t in fake.sent]
    assert result.results[0].document in ("tiny", long_text)


async def test_cohere_v2_truncates_natively(mock_api: respx.MockRouter) -> None:
    fake = RelevanceFake()
    mock_api.post("https://api.cohere.com/v2/rerank").mock(side_effect=fake)
    long_text = words_of(3000)
    async with make_client(
        provider="cohere",
        base_url="https://api.cohere.com",
        model="rerank-v3.5",
        long_documents=LongDocuments(max_tokens=300),
    ) as client:
        assert isinstance(client.provider, CohereProvider)
        assert client.provider.max_tokens_per_doc == 300
        await client.score("query", [long_text])
    assert fake.bodies[0]["max_tokens_per_doc"] == 300
    assert fake.sent == [long_text]  # the service cuts it, by its own tokenizer


async def test_a_failed_window_leaves_its_document_unscored_and_resume_fills_it(
    mock_api: respx.MockRouter,
) -> None:
    fake = RelevanceFake()
    failing = {"on": True}

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if failing["on"] and any(d.startswith("word") for d in body["documents"]):
            raise httpx.ConnectError("refused")
        return fake(request)

    mock_api.post(JINA_URL).mock(side_effect=answer)
    documents = ["short one", words_of(2000), "short two"]
    options = LongDocuments(max_tokens=128, mode="chunk")
    # The failures pause the client (a connection error backs the whole client off):
    # the recorder takes those waits instead of real sleeps.
    async with jina_client(
        long_documents=options,
        batch_size=2,
        max_retries=0,
        sleep=SleepRecorder(),
        limits=Limits(min_batch_size=1),
    ) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.rerank("query", documents)
        partial = caught.value.partial
        assert isinstance(partial, PartialScores)
        assert len(partial.scores) == 3
        assert partial.scores[1] is None
        failing["on"] = False
        resumed = await client.rerank("query", documents, resume=partial)
        plain = await client.rerank("query", documents)
    assert resumed.scores == plain.scores


async def test_a_repetitive_document_sends_every_window(mock_api: respx.MockRouter) -> None:
    fake = RelevanceFake()
    mock_api.post(JINA_URL).mock(side_effect=fake)
    repetitive = " ".join(["lorem"] * 6000)
    options = LongDocuments(max_tokens=512, mode="chunk")
    async with jina_client(long_documents=options) as client:
        result = await client.rerank("query", [repetitive, "short", "short"])
        plain = await client.rerank("query", ["short", "short"])
    expected = windows(repetitive, max_tokens=512, overlap_tokens=64, estimate=estimate)
    assert len(expected) >= 4
    assert len(set(expected)) < len(expected)  # identical windows, each sent all the same
    first_call = fake.bodies[: len(fake.bodies) - 1]
    assert [d for body in first_call for d in body["documents"]] == [*expected, "short", "short"]
    assert result.scores[0] == max(pointwise_score("query", w) for w in expected)
    # Without long documents in the call, identical documents are still sent once.
    assert fake.bodies[-1]["documents"] == ["short"]
    assert plain.usage.unique_documents == 1
