"""A key repeated in one object of a response body is refused, whichever path finds it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_async.providers._wire import check_unique_keys


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        (b'{"scores":[0.1,0.2],"scores":[0.9,0.8]}', "scores"),  # the probe's body
        (b'{"scores" : [1], "scores" : [2]}', "scores"),  # spaced
        (b'{"a":{"x":1,"x":2}}', "x"),  # nested
        (b'{"r":[{"i":0,"s":2},{"i":1,"s":2,"s":3}]}', "s"),  # in one of many results
        (b'{"a\\u0062":1,"ab":2}', "ab"),  # spelled two ways
        (b'{"a\\/b":1,"a/b":2}', "a/b"),
        (b'{"":1,"":2}', ""),
    ],
)
def test_a_repeated_key_is_named(body: bytes, repeated: str) -> None:
    with pytest.raises(ValueError, match=f"the key {repeated!r} appears twice"):
        check_unique_keys(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"scores":[0.1,0.2],"input_tokens":4,"request_id":"scores"}',  # a value, not a key
        b'{"r":[{"i":0,"s":2},{"i":1,"s":2}]}',  # the same keys in different objects
        b'{"a":":b","c":1}',  # a value that starts with ':'
        b'{"a":"x\\"y","b":{"a":1}}',
        b'{"a":NaN,"b":[Infinity]}',  # read by pydantic, refused by orjson
        b"[]",
        b"{}",
    ],
)
def test_unique_keys_pass(body: bytes) -> None:
    check_unique_keys(body)


def _has_repeat(pairs: list[tuple[str, object]]) -> dict[str, object]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise KeyError
    return dict(pairs)


keys = st.sampled_from(["a", "b", "scores", ":x", "a/b", 'q"', "é", ""])
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | keys
)
json_text = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: json.dumps(items))
        | st.lists(st.tuples(keys, children), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{json.dumps(k)}:{_as_json(v)}" for k, v in pairs) + "}"
        )
    ),
    max_leaves=12,
)


def _as_json(value: object) -> str:
    """A child is either JSON text already (a container) or a plain value."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        return value
    return json.dumps(value)


@given(json_text)
def test_agrees_with_a_strict_parser(text: object) -> None:
    document = _as_json(text)
    try:
        json.loads(document, object_pairs_hook=_has_repeat)
        repeated = False
    except KeyError:
        repeated = True
    if repeated:
        with pytest.raises(ValueError, match="appears twice"):
            check_unique_keys(document.encode())
    else:
        check_unique_keys(document.encode())
