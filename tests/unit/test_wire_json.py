"""Request-body encoding: compact UTF-8 JSON from either fast encoder, with a safe fallback."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_async.providers import _wire as _json
from rerank_async.providers._wire import dumps


@pytest.fixture(params=["fast", "pydantic_core"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with the interpreter's encoder and with the pydantic_core one."""
    if request.param == "pydantic_core":
        monkeypatch.setattr(_json, "_encode", _json._pydantic_core_dumps)
    return str(request.param)


@pytest.mark.usefixtures("encoder")
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"query": "q", "documents": ["a", "b"]}, b'{"query":"q","documents":["a","b"]}'),
        ({"query": "café", "documents": []}, '{"query":"café","documents":[]}'.encode()),
        ({"queries": ["q"] * 2, "top_n": 2}, b'{"queries":["q","q"],"top_n":2}'),
        ({"q": 'quote " and \\ backslash'}, b'{"q":"quote \\" and \\\\ backslash"}'),
    ],
)
def test_compact_raw_utf8(body: object, expected: bytes) -> None:
    assert dumps(body) == expected


@pytest.mark.usefixtures("encoder")
def test_a_lone_surrogate_is_sent_escaped_instead_of_failing() -> None:
    encoded = dumps({"documents": ["x\ud800y"]})
    assert encoded == b'{"documents":["x\\ud800y"]}'
    assert json.loads(encoded) == {"documents": ["x\ud800y"]}


@pytest.mark.usefixtures("encoder")
@given(st.lists(st.text(), max_size=20), st.text())
def test_round_trips_any_text(documents: list[str], query: str) -> None:
    body = {"query": query, "documents": documents}
    assert json.loads(dumps(body)) == body


def test_the_encoder_is_named() -> None:
    assert _json.ENCODER in ("orjson", "pydantic_core")
