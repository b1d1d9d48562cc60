"""The pure pieces behind docs/security.md: key checks, redaction, URLs, body limits, gaps."""

from __future__ import annotations

import gzip
import json
import zlib
from urllib.parse import quote, quote_plus, unquote

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rerank_async._checks import check_base_url, check_encodable, check_encodable_in_slices
from rerank_async._partial import PartialScores, missing_ranges
from rerank_async._secrets import Redactor, check_api_key
from rerank_async._transports.body import (
    BodyReader,
    BodyTooLarge,
    UnsupportedEncoding,
    response_size_limit,
)
from rerank_async.providers._wire import join_url, model_path

KEY = "sk-Ab/9+x=Q_y'z\"\\&<>"

# -- api_key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("sk-1\n", "leading or trailing whitespace"),
        ("\tsk-1", "leading or trailing whitespace"),
        ("sk\r\n-1", r"control character \(U\+000D\) at position 2"),
        ("sk\x00-1", r"control character \(U\+0000\) at position 2"),
        ("sk\x7f-1", r"control character \(U\+007F\)"),
        ("sk-é", r"non-ASCII character \(U\+00E9\) at position 3"),
        ("sk-\u2028x", r"non-ASCII character \(U\+2028\)"),
    ],
)
def test_bad_keys_are_named_by_their_problem_never_echoed(key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        check_api_key(key)
    if key.strip():
        assert key.strip() not in str(caught.value)


def test_a_good_key_is_returned_unchanged() -> None:
    assert check_api_key(KEY) == KEY
    assert check_api_key("a b", name="X") == "a b"  # inner spaces are legal in a header value


def test_the_name_says_where_the_key_came_from() -> None:
    with pytest.raises(ValueError, match=r"^CO_API_KEY has"):
        check_api_key("x\x01", name="CO_API_KEY")


# -- redaction ----------------------------------------------------------------------------------


def spelled(key: str) -> list[str]:
    return [
        key,
        json.dumps(key)[1:-1],
        json.dumps(key)[1:-1].replace("/", "\\/"),
        repr(key)[1:-1],
        repr(f"Bearer {key}".encode())[2:-1],
        quote(key, safe=""),
        quote_plus(key),
        quote(key, safe="").lower(),
    ]


@pytest.mark.parametrize("form", range(8))
def test_every_spelling_is_redacted_in_text_bytes_and_values(form: int) -> None:
    redactor = Redactor(KEY)
    text = f"before {spelled(KEY)[form]} after"
    assert redactor.text(text) == "before *** after" or "***" in redactor.text(text)
    assert KEY not in redactor.text(text)
    assert spelled(KEY)[form] not in redactor.text(text)
    assert spelled(KEY)[form].encode() not in redactor.content(text.encode())
    value = {"a": [text, {text: 1}], "n": 3}
    assert spelled(KEY)[form] not in repr(redactor.value(value))


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=40))
def test_any_printable_ascii_key_is_redacted_in_every_spelling(key: str) -> None:
    redactor = Redactor(key)
    for form in spelled(key):
        pieces = redactor.text(f"x{form}y").split("***")
        assert all(key not in piece and form not in piece for piece in pieces)


def test_no_key_means_no_change() -> None:
    redactor = Redactor(None)
    assert not redactor
    assert redactor.text("abc") == "abc"
    assert redactor.content(b"abc") == b"abc"
    body = {"a": 1}
    assert redactor.value(body) is body
    assert repr(redactor) == "Redactor(None)"
    assert KEY not in repr(Redactor(KEY))


# -- base_url and model paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://host/v1", "must start with http"),
        ("http://host/v1?tenant=a", "query string"),
        ("http://host/v1?", "query string"),
        ("http://host/v1#frag", "fragment"),
        ("http://host/v1#", "fragment"),
        ("http://user:secret@host/v1", "credentials"),
        ("http:///v1", "no host"),
        ("http://host:99999/v1", "not a valid URL"),
        ("http://host/v 1", "whitespace"),
        ("http://host/v1\n", "whitespace"),
    ],
)
def test_bad_base_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        check_base_url(url)
    assert "secret" not in str(caught.value)


def test_a_good_base_url_loses_its_trailing_slash() -> None:
    assert check_base_url("https://api.example.com/v1/") == "https://api.example.com/v1"
    assert check_base_url("http://[::1]:8080") == "http://[::1]:8080"
    assert join_url("http://h/v1/", "/rerank") == "http://h/v1/rerank"


@pytest.mark.parametrize(
    ("model", "keep", "path"),
    [
        ("cross-encoder/ms-marco-MiniLM-L-12-v2", True, "cross-encoder/ms-marco-MiniLM-L-12-v2"),
        ("org/name", False, "org%2Fname"),
        ("a?b#c%d", True, "a%3Fb%23c%25d"),
        ("x:y@z", True, "x%3Ay%40z"),
        ("..x/y..", True, "..x/y.."),
        ("naïve", True, "na%C3%AFve"),
        ("a\\..\\b", True, "a%5C..%5Cb"),
    ],
)
def test_model_paths(model: str, keep: bool, path: str) -> None:
    assert model_path(model, keep_slashes=keep) == path


@pytest.mark.parametrize("model", ["..", ".", "a/..", "../b", "a//b", "/a", "a/", ""])
def test_dot_and_empty_segments_are_refused(model: str) -> None:
    with pytest.raises(ValueError, match="path segment"):
        model_path(model, keep_slashes=True)


@given(st.text(min_size=1, max_size=30))
def test_no_model_leaves_the_base_path(model: str) -> None:
    base = "https://api.example.com/v1/inference"
    try:
        url = join_url(base, model_path(model, keep_slashes=True))
    except ValueError:
        return
    parsed = httpx.URL(url)  # httpx normalises dot segments, as a server would
    assert parsed.path.startswith("/v1/inference/")
    assert parsed.query == b""
    assert parsed.fragment == ""
    assert unquote(parsed.raw_path.decode()[len("/v1/inference/") :]) == model


# -- body limits ----------------------------------------------------------------------------------


def test_the_limit_scales_with_the_batch() -> None:
    small = response_size_limit(n_documents=2, request_bytes=100)
    assert 1 << 20 < small < 2 << 20
    big = response_size_limit(n_documents=1000, request_bytes=2_000_000)
    assert big == (1 << 20) + 1000 * 1024 + 4 * 2_000_000


def feed_all(reader: BodyReader, data: bytes, step: int = 1000) -> bytes:
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
    return reader.finish()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        (None, lambda data: data),
        ("identity", lambda data: data),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, as some servers send
        ("GZIP, identity", gzip.compress),
    ],
)
def test_bodies_decode_under_the_limit(encoding: str | None, encode: object) -> None:
    data = json.dumps({"scores": list(range(5000))}).encode()
    assert callable(encode)
    reader = BodyReader(len(data), encoding)
    assert feed_all(reader, encode(data)) == data
    assert reader.received == len(data)


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate"])
def test_one_byte_over_the_limit_is_refused(encoding: str | None) -> None:
    data = b"x" * 10_001
    raw = {None: data, "gzip": gzip.compress(data), "deflate": zlib.compress(data)}[encoding]
    reader = BodyReader(10_000, encoding)
    with pytest.raises(BodyTooLarge) as caught:
        feed_all(reader, raw)
    assert caught.value.limit == 10_000
    assert caught.value.received == 10_001


def test_a_bomb_is_stopped_after_the_limit_not_after_inflating() -> None:
    bomb = gzip.compress(bytes(50_000_000))  # ~50 KB
    reader = BodyReader(1 << 20, "gzip")
    with pytest.raises(BodyTooLarge) as caught:
        reader.feed(bomb)  # one chunk: the cap holds inside it
    assert caught.value.received == (1 << 20) + 1


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip"])
def test_unsupported_encodings(encoding: str) -> None:
    with pytest.raises(UnsupportedEncoding, match="unsupported Content-Encoding"):
        BodyReader(100, encoding)


def test_corrupt_compressed_data_is_a_value_error() -> None:
    reader = BodyReader(100, "gzip")
    with pytest.raises(ValueError, match="corrupt"):
        reader.feed(b"not gzip at all")


def test_empty_chunks_are_ignored() -> None:
    reader = BodyReader(10)
    reader.feed(b"")
    assert reader.finish() == b""


# -- partial scores ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "ranges"),
    [
        ([], []),
        ([1.0, 2.0], []),
        ([None], [(0, 1)]),
        ([None, None, 1.0, None, 2.0, None, None], [(0, 2), (3, 4), (5, 7)]),
    ],
)
def test_missing_ranges(scores: list[float | None], ranges: list[tuple[int, int]]) -> None:
    assert missing_ranges(scores) == ranges


@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=False))))
def test_missing_ranges_cover_exactly_the_gaps(scores: list[float | None]) -> None:
    covered = [i for start, stop in missing_ranges(scores) for i in range(start, stop)]
    assert covered == [i for i, score in enumerate(scores) if score is None]


def test_partial_scores_fill_and_complete() -> None:
    partial = PartialScores.from_scores([0.1, None, None, 0.4])
    assert partial.failed_ranges == ((1, 3),)
    assert partial.documents_scored == 2
    assert partial.missing() == [1, 2]
    assert partial.complete() is None
    half = partial.filled([1, 2], [0.2, None])
    assert half.failed_ranges == ((2, 3),)
    done = half.filled([2], [0.3])
    assert done.complete() == [0.1, 0.2, 0.3, 0.4]
    with pytest.raises(ValueError, match="already has a score"):
        done.filled([0], [9.0])
    with pytest.raises(ValueError, match="2 positions for 1 scores"):
        partial.filled([1, 2], [0.2])


# -- lone surrogates -------------------------------------------------------------------------


def test_a_lone_surrogate_is_named_by_document_index() -> None:
    check_encodable("plain", name="query")
    check_encodable("naïve 中文 🙂", name="query")
    with pytest.raises(ValueError, match=r"query has a lone surrogate \(U\+D800\) at character 3"):
        check_encodable("abc\ud800", name="query")


async def test_the_sliced_check_names_the_index_and_yields() -> None:
    documents = ["ascii"] * 10 + ["é" * 100] * 10 + ["ok", "x\udfffy"]

    async def run(slice_characters: int) -> tuple[int, str]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await anyio.lowlevel.checkpoint()
                ticks += 1

        message = ""
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            await anyio.lowlevel.checkpoint()  # let the ticker start
            ticks = 0
            try:
                await check_encodable_in_slices(documents, slice_characters=slice_characters)
            except ValueError as error:
                message = str(error)
            group.cancel_scope.cancel()
        return ticks, message

    unsliced_ticks, message = await run(10_000)
    assert message.startswith("documents[21] has a lone surrogate (U+DFFF) at character 1")
    assert unsliced_ticks == 0  # never yielded: under one slice
    sliced_ticks, _ = await run(250)
    assert sliced_ticks >= 2  # 1,000 non-ASCII characters in slices of 250 gave the loop turns


def test_a_redactor_takes_several_secrets() -> None:
    """The key and a proxy's password (and its Proxy-Authorization token) together."""
    redactor = Redactor(KEY, "pr0xy/pw", None)
    text = f"key {KEY} password pr0xy%2Fpw and {json.dumps('pr0xy/pw')}"
    assert redactor.text(text) == 'key *** password *** and "***"'
    assert b"pr0xy/pw" not in redactor.content(text.encode())
