"""Argument checks shared by option resolution and each call; raised before any request.

A leaf: it imports nothing from the package (only anyio), so every layer may use it.

Texts that cannot be sent: a Python ``str`` may hold a lone surrogate
(U+D800..U+DFFF, e.g. from ``os.fsdecode`` or a broken JSON decoder); no UTF-8
body can carry it, and encoding a whole batch would fail with a position inside
the batch's JSON. ``check_encodable`` finds it before any request, by document
index. Checking costs nothing for ASCII texts (``str.isascii`` reads a flag).
Other texts are encoded to UTF-16, the cheapest strict codec that rejects
surrogates (about 0.15 ns per character for Latin-1 text and 0.5 ns for other
scripts, against 1.4 ns for UTF-8; measured on the 2-core machine). A large
call checks in slices and yields to the event loop between them, so the check
never holds the loop for more than about 2.5 ms (1 M characters of CJK text).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

import anyio.lowlevel

__all__ = [
    "check_base_url",
    "check_encodable",
    "check_encodable_in_slices",
    "check_int",
    "check_seconds",
    "checked_documents",
    "checked_query",
    "non_empty",
]


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``; the error names ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_seconds(name: str, value: object, *, allow_zero: bool) -> float:
    """``value`` as a finite, non-negative (or positive) number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound} seconds, got {value}")
    return float(value)


def non_empty(name: str, value: object) -> str:
    """``value`` as a str that is not blank."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty")
    return value


def checked_query(query: object) -> str:
    """A query must be a non-blank str."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, not {type(query).__name__}")
    if not query.strip():
        raise ValueError("query must not be empty or blank")
    return query


def checked_documents(documents: object) -> list[str]:
    """A call's documents as a list of str; a lone str is refused, not split into letters."""
    if isinstance(documents, str | bytes):
        raise TypeError(
            f"documents must be a sequence of str, not a single {type(documents).__name__}; "
            "wrap one document in a list"
        )
    if not isinstance(documents, Sequence):
        raise TypeError(f"documents must be a sequence of str, not {type(documents).__name__}")
    checked = list(documents)
    if set(map(type, checked)) <= {str}:  # C speed: 0.6 ms for 20,000 documents, no loop
        return checked
    for index, document in enumerate(checked):
        if not isinstance(document, str):
            raise TypeError(f"documents[{index}] must be a str, not {type(document).__name__}")
    return checked


# A query string or a fragment in base_url would swallow the path the provider
# appends (the model ends up in "?tenant=a/model", or after "#" where it is never
# sent); credentials in it would be printed in every error message, since each
# names its endpoint.
def check_base_url(base_url: str, *, name: str = "base_url") -> str:
    """``base_url`` without a trailing slash, once it is an ``http(s)://`` root for a path.

    Raises:
        ValueError: Not http(s), no host, credentials in it, a query string or
            a fragment. The message names the problem; it never repeats
            credentials.
    """
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"{name} must start with http:// or https://, got {base_url!r}")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018  # parses the port, raising on a bad one
    except ValueError as error:
        raise ValueError(f"{name} is not a valid URL: {error}") from None
    if "@" in parts.netloc:
        raise ValueError(
            f"{name} must not contain credentials (user:password@); they would appear in "
            "every error message. Pass api_key=, or an http_client with auth="
        )
    if not parts.hostname:
        raise ValueError(f"{name} has no host: {base_url!r}")
    if parts.query or base_url.endswith("?"):
        raise ValueError(
            f"{name} must not have a query string ({parts.query!r}): the endpoint path goes "
            "after base_url. Pass query parameters with "
            "http_client=httpx.AsyncClient(params=...)"
        )
    if parts.fragment or "#" in base_url:
        raise ValueError(f"{name} must not have a fragment (#...): it would drop the endpoint path")
    if any(ord(character) <= 0x20 or ord(character) == 0x7F for character in base_url):
        raise ValueError(f"{name} must not contain whitespace or control characters")
    return base_url.rstrip("/")


# Non-ASCII characters checked between two yields to the event loop.
SLICE_CHARACTERS: Final = 1_000_000


def _problem(name: str, text: str, error: UnicodeEncodeError) -> ValueError:
    code = ord(text[error.start])
    return ValueError(
        f"{name} has a lone surrogate (U+{code:04X}) at character {error.start}, which "
        "cannot be encoded as UTF-8; repair the text first "
        "(e.g. text.encode('utf-8', 'replace').decode())"
    )


def check_encodable(text: str, *, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``text`` cannot be encoded as UTF-8."""
    if text.isascii():
        return
    try:
        text.encode("utf-16-le")
    except UnicodeEncodeError as error:
        raise _problem(name, text, error) from None


async def check_encodable_in_slices(
    texts: Sequence[str], *, name: str = "documents", slice_characters: int = SLICE_CHARACTERS
) -> None:
    """Check every text, yielding to the event loop after each ``slice_characters``.

    Raises:
        ValueError: ``{name}[i]`` holds a lone surrogate; the message gives ``i``
            and the character's position.
    """
    budget = slice_characters
    for index, text in enumerate(texts):
        if text.isascii():
            continue
        try:
            text.encode("utf-16-le")
        except UnicodeEncodeError as error:
            raise _problem(f"{name}[{index}]", text, error) from None
        budget -= len(text)
        if budget <= 0:
            budget = slice_characters
            await anyio.lowlevel.checkpoint()
