"""A lone call is spread over idle slots, but never into many tiny requests; a resume is not."""

from __future__ import annotations

import httpx
import pytest
import respx

from rerank_async import PartialScores, ServerError

from ..conftest import URL, FakeReranker, make_client


async def test_a_lone_call_is_spread_at_most_four_times(fake: FakeReranker) -> None:
    async with make_client(batch_size=64, max_concurrency=32) as client:
        await client.rerank("q", [f"d{i}" for i in range(145)])
    assert len(fake.batch_sizes) == 12  # 3 needed, spread to 4 x 3 (was 18 of 8)
    assert sum(fake.batch_sizes) == 145


async def test_a_resume_sends_the_gaps_in_the_fewest_requests(fake: FakeReranker) -> None:
    documents = [f"d{i}" for i in range(145)]
    resume = PartialScores.from_scores([0.5] * 10 + [None] * 130 + [0.5] * 5)
    async with make_client(batch_size=64, max_concurrency=32) as client:
        result = await client.rerank("q", documents, resume=resume)
    assert fake.batch_sizes == [44, 43, 43]
    assert result.scores[:10] == [0.5] * 10
    assert [body["documents"][0] for body in fake.bodies] == ["d10", "d54", "d97"]


async def test_a_failed_resume_reports_in_the_callers_indices(
    mock_api: respx.MockRouter,
) -> None:
    mock_api.post(URL).mock(return_value=httpx.Response(500, json={"error": "down"}))
    resume = PartialScores.from_scores([0.5] * 10 + [None] * 5 + [0.5] * 5)
    async with make_client(max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            await client.rerank("q", [f"d{i}" for i in range(20)], resume=resume)
    assert caught.value.document_range == (10, 15)
    partial = caught.value.partial
    assert partial is not None
    assert partial.failed_ranges == ((10, 15),)
    assert partial.scores[:10] == (0.5,) * 10
