"""Formats with one query per document encode pairs of several queries in one request."""

from __future__ import annotations

import json

import pytest

from rerank_async.providers import DeepInfraProvider, Provider, resolve_provider
from rerank_async.providers.vllm import VLLMProvider

QWEN = "Qwen/Qwen3-Reranker-4B"


@pytest.mark.parametrize(
    ("provider", "model", "packs"),
    [
        (DeepInfraProvider(), QWEN, True),
        (DeepInfraProvider(), "cross-encoder/ms-marco-MiniLM-L-12-v2", False),
        (DeepInfraProvider(body_form="queries"), "any/model", True),
        (DeepInfraProvider(body_form="queries", queries_layout="single"), QWEN, False),
        (VLLMProvider(endpoint="score"), "BAAI/bge-reranker-v2-m3", True),
        (VLLMProvider(), "BAAI/bge-reranker-v2-m3", False),
        (resolve_provider("cohere"), "rerank-v3.5", False),
        (resolve_provider("tei"), "m", False),
    ],
)  # fmt: skip
def test_which_formats_pack(provider: Provider, model: str, packs: bool) -> None:
    assert provider.packs_pairs(model) is packs
    if not packs:
        with pytest.raises(NotImplementedError, match="one query per request"):
            provider.encode_pairs(model, ["q"], ["d"])


def test_deepinfra_pairs_body() -> None:
    body = DeepInfraProvider().encode_pairs(QWEN, ["q1", "q1", "q2"], ["a", "b", "c"])
    assert json.loads(body) == {"queries": ["q1", "q1", "q2"], "documents": ["a", "b", "c"]}


def test_vllm_score_pairs_body() -> None:
    body = VLLMProvider(endpoint="score").encode_pairs("m", ["q1", "q2"], ["a", "b"])
    assert json.loads(body) == {"model": "m", "text_1": ["q1", "q2"], "text_2": ["a", "b"]}
