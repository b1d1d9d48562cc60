"""The API key: checked once, and redacted from everything the library hands out.

A leaf: it imports nothing from the package.

A key is only ever sent as a header value. A header value with a control
character is rejected by h11 (whose error then prints the value, key included)
and by aiohttp (with an untyped ``ValueError``); a non-ASCII one makes httpx
raise ``UnicodeEncodeError`` and aiohttp send raw bytes. So such keys are
refused when the client is created, with a message that never contains them.

Servers and proxies echo what they were sent, in several spellings: raw, in a
Python ``repr`` (h11's messages), JSON-escaped, percent-encoded, HTML-escaped.
``Redactor`` replaces every one of them, at the source: in the raw response
bytes before any message is extracted or truncated (a cut could otherwise leave
half a key), and in every message the library formats.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "Redactor", "check_api_key"]

REDACTED: Final = "***"
_REDACTED_BYTES: Final = REDACTED.encode()


def check_api_key(api_key: str, *, name: str = "api_key") -> str:
    """``api_key`` if it can be sent as a header value exactly as given.

    Args:
        api_key: The key.
        name: Where it came from (``api_key``, or an environment variable), for messages.

    Raises:
        ValueError: The key is empty or blank, has surrounding whitespace, a
            control character or a non-ASCII character. The message names
            the problem and its position, never the key.
    """
    if not api_key.strip():
        raise ValueError(f"{name} must not be empty; pass None to read it from the environment")
    if api_key != api_key.strip():
        raise ValueError(
            f"{name} has leading or trailing whitespace (a newline from a file or a "
            "copy-paste?); strip it before passing it"
        )
    for position, character in enumerate(api_key):
        code = ord(character)
        if code < 0x20 or code == 0x7F:
            raise ValueError(
                f"{name} has a control character (U+{code:04X}) at position {position}; "
                "an HTTP header value cannot carry it"
            )
        if code > 0x7E:
            raise ValueError(
                f"{name} has a non-ASCII character (U+{code:04X}) at position {position}; "
                "API keys are ASCII, and a header value cannot carry it portably"
            )
    return api_key


def _spellings(secret: str) -> list[str]:
    """``secret`` as servers, proxies and HTTP libraries are known to print it."""
    json_escaped = json.dumps(secret)[1:-1]
    forms = {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "backslashreplace"))[2:-1],  # h11: b'Bearer ...'
        json_escaped,
        json_escaped.replace("/", "\\/"),  # encoders that escape the solidus
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        quote(secret, safe="").lower(),  # lower-case hex digits
        html.escape(secret),
    }
    # Longest first, so that no spelling is left half-replaced by a shorter one.
    return sorted((form for form in forms if form), key=len, reverse=True)


class Redactor:
    """Replaces secrets (the key, a proxy's password), in every spelling, by ``***``.

    A ``Redactor`` for ``None`` (no key configured) changes nothing.
    """

    __slots__ = ("_byte_forms", "_forms")

    def __init__(self, *secrets: str | None) -> None:
        forms = {form for secret in secrets if secret for form in _spellings(secret)}
        # Longest first, so that no spelling is left half-replaced by a shorter one.
        self._forms: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))
        self._byte_forms: tuple[bytes, ...] = tuple(
            form.encode("utf-8", "backslashreplace") for form in self._forms
        )

    def __repr__(self) -> str:
        return f"Redactor({'***' if self._forms else 'None'})"

    def __bool__(self) -> bool:
        return bool(self._forms)

    def text(self, text: str) -> str:
        """``text`` with every spelling of the secret replaced."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def content(self, content: bytes) -> bytes:
        """Raw bytes (a response body) with every spelling of the secret replaced."""
        for form in self._byte_forms:
            if form in content:
                content = content.replace(form, _REDACTED_BYTES)
        return content

    def value(self, value: object) -> object:
        """A decoded JSON value with the secret replaced in every string, keys included."""
        if not self._forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, Mapping):
            return {self.text(str(key)): self.value(item) for key, item in value.items()}
        return value
