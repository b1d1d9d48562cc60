"""Small public pieces: sentinels, provider options, error-body fallbacks."""

from __future__ import annotations

import pytest

from rerank_async import NOT_GIVEN, DeepInfraProvider, RerankClient
from rerank_async.providers import resolve_provider
from rerank_async.providers._base import error_message_from_body


def test_not_given_repr() -> None:
    assert repr(NOT_GIVEN) == "NOT_GIVEN"


def test_provider_is_exposed_and_resolvable() -> None:
    provider = DeepInfraProvider(body_form="queries")
    assert RerankClient(provider=provider).provider is provider
    assert isinstance(resolve_provider("DeepInfra"), DeepInfraProvider)
    assert repr(provider) == "DeepInfraProvider(body_form='queries', queries_layout='repeat')"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"body_form": "list"}, "body_form must be"),
        ({"queries_layout": "x"}, "queries_layout must be"),
    ],
)
def test_deepinfra_options_are_checked(options: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DeepInfraProvider(**options)  # type: ignore[arg-type]


def test_model_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="model must be a str"):
        RerankClient(model=123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", None),
        (b"   ", None),
        (b'{"unexpected": 1}', '{"unexpected": 1}'),
        (b'{"error": ""}', '{"error": ""}'),
        (b'{"error": {"code": 7}}', '{"error": {"code": 7}}'),
        (b"[]", "[]"),
        (b'{"message": "plain"}', "plain"),
        (b'{"detail": [{"msg": "a"}, {"msg": "b"}]}', "a; b"),
        (
            b'{"detail": [{"loc": ["body", "query"], "msg": "field required"}]}',
            "body.query: field required",
        ),
        ("bad gateway \u2014 upstream".encode(), "bad gateway \u2014 upstream"),
    ],
)
def test_error_message_from_body(content: bytes, message: str | None) -> None:
    assert error_message_from_body(content) == message
