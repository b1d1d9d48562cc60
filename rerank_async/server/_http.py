"""HTTP helpers every part of the server shares: JSON bodies, field checks, a dropped answer.

A leaf of the server package: the dialects and the pipeline import it, it imports neither.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "JSON_MEDIA_TYPE",
    "DroppedResponse",
    "InvalidBodyError",
    "dumps",
    "json_object",
    "required_string",
    "string_list",
]

JSON_MEDIA_TYPE: Final = "application/json"


class InvalidBodyError(Exception):
    """The body is not a valid rerank request; the message says why, for the error answer."""


class DroppedResponse(Response):
    """Sends the status line, headers (with the full Content-Length) and half the body, then
    returns: the server closes the connection and the client sees an incomplete response."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )


def dumps(payload: object) -> bytes:
    """Compact JSON, as the services send it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def string_list(value: object, name: str) -> list[str]:
    """``value`` as a list of str; ``InvalidBodyError`` naming ``name`` otherwise."""
    if not isinstance(value, list):
        msg = f"{name} must be a list of strings, got {type(value).__name__}"
        raise InvalidBodyError(msg)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            msg = f"{name} must be a list of strings: {name}[{i}] is {type(item).__name__}"
            raise InvalidBodyError(msg)
    return value


def json_object(raw: bytes) -> dict[str, object]:
    """The body as a JSON object; ``InvalidBodyError`` otherwise."""
    try:
        body = json.loads(raw)
    except ValueError as err:
        msg = f"invalid JSON body: {err}"
        raise InvalidBodyError(msg) from err
    if not isinstance(body, dict):
        msg = "request body must be a JSON object"
        raise InvalidBodyError(msg)
    return body


def required_string(body: dict[str, object], name: str) -> str:
    """Field ``name`` of ``body`` as a str; ``InvalidBodyError`` when absent or not a str."""
    value = body.get(name)
    if value is None:
        msg = f"missing required field: {name}"
        raise InvalidBodyError(msg)
    if not isinstance(value, str):
        msg = f"{name} must be a string, got {type(value).__name__}"
        raise InvalidBodyError(msg)
    return value
