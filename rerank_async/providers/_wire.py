"""Generic wire helpers every provider may use: strict score types, JSON, URLs, logistic.

A leaf of ``providers/``: it imports nothing from the package.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Final, TypeVar
from urllib.parse import quote

import pydantic_core
from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict, ValidationError

__all__ = [
    "ENCODER",
    "RESPONSE_MODEL_CONFIG",
    "FiniteScore",
    "StrictIndex",
    "check_unique_keys",
    "describe_validation_error",
    "dumps",
    "join_url",
    "logistic",
    "model_path",
    "parse_json",
]

# Strict: "0.5" or true is not a score. AllowInfNan(False): NaN and Infinity
# would silently corrupt a ranking. A JSON integer (0, 1) is still a number.
FiniteScore = Annotated[float, Strict(), AllowInfNan(False)]
# Strict: 1.0, "1" and true are not indices.
StrictIndex = Annotated[int, Strict()]

ModelT = TypeVar("ModelT", bound=BaseModel)

# Every response model's config. Unknown fields are ignored. Only keys go through
# pydantic-core's JSON string cache: by default it also keeps values up to 64 characters,
# and a response's values (a request id per answer) are nearly all unique, so the cache
# filled with them, about 1.3 MB per process over the first 30,000 answers, which a
# 10-minute soak read as RSS growing by about 70 bytes per request (benchmarks/soak.py).
RESPONSE_MODEL_CONFIG: Final = ConfigDict(extra="ignore", cache_strings="keys")


def _pydantic_core_dumps(body: object) -> bytes:
    return pydantic_core.to_json(body)


def _fast_encoder() -> tuple[str, Callable[[object], bytes]]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - PyPy, where orjson is not installed
        return "pydantic_core", _pydantic_core_dumps
    return "orjson", orjson.dumps


# Request bodies go through orjson where it is installed (a dependency on CPython),
# pydantic_core's encoder otherwise (PyPy). Measured (docs/benchmarks.md, "Body
# encoding"): a 32-document body takes 8.3 us with json.dumps, 1.1 us with
# pydantic_core and 0.3 us with orjson; a 2 MB body (1,000 documents of 2 KB) 5.2,
# 1.1 and 0.14 ms of CPU, and up to 10, 7.9 and 1.8 ms when the machine is busy.
# Large bodies hold the event loop, hence orjson. ENCODER names the one in use.
ENCODER, _encode = _fast_encoder()


def dumps(body: object) -> bytes:
    """Compact JSON in raw UTF-8 (no escapes for non-ASCII text).

    Text with a lone surrogate (which has no UTF-8 form) is sent escaped, as
    the standard library writes it, instead of failing.
    """
    try:
        return _encode(body)
    except (TypeError, ValueError):  # orjson.JSONEncodeError, PydanticSerializationError
        return json.dumps(body, separators=(",", ":")).encode()


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (the service's root, trailing slash or not) followed by ``path``."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


# RFC 3986 unreserved characters are never encoded by quote(); nothing else is
# kept as it is, so no character of a model can end a segment or the path.
_SAFE_IN_SEGMENT: Final = ""


def model_path(model: str, *, keep_slashes: bool) -> str:
    """``model`` as URL path segment(s), percent-encoded; never a way out of the base path.

    Args:
        model: The model name, e.g. ``cross-encoder/ms-marco-MiniLM-L-12-v2``.
        keep_slashes: Keep ``/`` as a segment separator (providers whose model
            ids contain it, such as DeepInfra's ``org/name``); otherwise it is
            encoded as ``%2F`` into one segment.

    Raises:
        ValueError: A segment is empty, ``.`` or ``..`` (which would move the
            request up the path), naming the model.
    """
    segments = model.split("/") if keep_slashes else [model]
    for segment in segments:
        if segment in ("", ".", ".."):
            what = "an empty path segment" if not segment else f"a {segment!r} path segment"
            raise ValueError(
                f"model {model!r} has {what}; it would change the request's path, not name a model"
            )
    return "/".join(quote(segment, safe=_SAFE_IN_SEGMENT) for segment in segments)


def logistic(x: float) -> float:
    """The sigmoid ``1 / (1 + e**-x)``, without overflow for any finite ``x``.

    ``math.exp`` is only ever called on a non-positive number, so it cannot
    overflow; very negative logits give 0.0 and very positive ones 1.0.
    """
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def parse_json(model: type[ModelT], content: bytes) -> ModelT:
    """Validate a response body; ``ValueError`` naming the first problem if it does not fit.

    A key repeated in one object is a problem too (see ``check_unique_keys``).
    """
    try:
        parsed = model.model_validate_json(content)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from error
    check_unique_keys(content)
    return parsed


# A key followed by its colon; without backslashes, every '"' delimits a string, so this
# finds every key, plus any string value that starts with ':' (counted alike on both sides).
_KEY_END: Final = re.compile(rb'"\s*:')
# Up to this many strings in a body, first try whether all of them differ.
_FEW_STRINGS: Final = 64


def check_unique_keys(content: bytes) -> None:
    """Raise ``ValueError`` if an object of the JSON ``content`` repeats a key.

    Parsers disagree on ``{"scores": [...], "scores": [...]}``: orjson and pydantic keep
    the last copy, others the first, so a body that two parsers (a proxy, a cache, this
    client) would read differently is refused (RFC 8259 section 4: names "SHOULD be
    unique"). Each step is exact or hands over to the next; the costs are for a
    64-document answer (``benchmarks/bench_duplicate_keys.py``):

    - no backslash, and no text appears twice among the strings: no key can repeat
      (DeepInfra's shape: 2.1 us, where the whole decode takes 8);
    - no backslash: the keys counted in the text equal those in the compact re-encoding
      of the parsed body, where a repeated key has collapsed into one (a list of result
      objects, Cohere's shape: about 28 us, where the decode took 34 without it);
    - otherwise, or on a mismatch, the standard library's parser names the repeated key.
    """
    if b"\\" not in content:
        # Splitting costs about 1 us for every 25 strings: worth it only for a few.
        if content.count(b'"') <= 2 * _FEW_STRINGS:
            strings = content.split(b'"')[1::2]
            if len(set(strings)) == len(strings):
                return
        try:
            if len(_KEY_END.findall(content)) == _reencoded(content).count(b'":'):
                return
        except ValueError:  # NaN or Infinity, which pydantic reads and orjson refuses
            pass
    json.loads(content, object_pairs_hook=_unique_pairs)


def _reencoded_with_json(content: bytes) -> bytes:
    return json.dumps(json.loads(content), separators=(",", ":")).encode()


def _fast_reencoder() -> Callable[[bytes], bytes]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - PyPy, where orjson is not installed
        return _reencoded_with_json

    def reencoded(content: bytes) -> bytes:
        return orjson.dumps(orjson.loads(content))

    return reencoded


# Compact JSON of the parsed body: orjson (3x faster) where installed.
_reencoded: Final = _fast_reencoder()


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice in one object of the body")
            seen.add(key)
    return result


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first problem, e.g. ``results.3.index: Input should be ...``."""
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{more}"
