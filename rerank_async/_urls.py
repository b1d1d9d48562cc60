"""Endpoint URLs that cannot be bent: a checked base URL, and the model as path segments.

A leaf: it imports nothing from the package.

Every request goes to ``base_url`` followed by a path the provider builds. A
query string or a fragment in ``base_url`` would swallow that path (the model
ends up in ``?tenant=a/model``, or after ``#`` where it is never sent), so
``base_url`` may have neither; query parameters a gateway needs belong on a
caller's ``httpx.AsyncClient(params=...)``. Credentials in the URL would be
printed in every error message (each names its endpoint), so they are refused
too. A model name that sits in the path (DeepInfra, NVIDIA's hosted API) is
percent-encoded segment by segment (RFC 3986, section 3.3): ``?``, ``#``,
``%``, spaces, backslashes and everything outside the unreserved set are
encoded, and ``.``/``..`` or empty segments are refused, so the request never
leaves the base path.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, urlsplit

__all__ = ["check_base_url", "join_url", "model_path"]

# RFC 3986 unreserved characters are never encoded by quote(); nothing else is
# kept as it is, so no character of a model can end a segment or the path.
_SAFE_IN_SEGMENT: Final = ""


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


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (trailing slash or not) followed by a fixed ``path`` of the provider."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


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
