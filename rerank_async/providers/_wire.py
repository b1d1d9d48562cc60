"""Generic wire helpers every provider may use: strict score types, JSON, URL joining, logistic.

A leaf of ``providers/``: it imports nothing from the package.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, TypeVar

from pydantic import AllowInfNan, BaseModel, Strict, ValidationError

__all__ = [
    "FiniteScore",
    "StrictIndex",
    "describe_validation_error",
    "dumps",
    "join_url",
    "logistic",
    "parse_json",
]

# Strict: "0.5" or true is not a score. AllowInfNan(False): NaN and Infinity
# would silently corrupt a ranking. A JSON integer (0, 1) is still a number.
FiniteScore = Annotated[float, Strict(), AllowInfNan(False)]
# Strict: 1.0, "1" and true are not indices.
StrictIndex = Annotated[int, Strict()]

ModelT = TypeVar("ModelT", bound=BaseModel)


def dumps(body: object) -> bytes:
    """Compact, raw-UTF-8 JSON: smaller bodies, no per-character escaping."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (the service's root, trailing slash or not) followed by ``path``."""
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


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
    """Validate a response body; ``ValueError`` naming the first problem if it does not fit."""
    try:
        return model.model_validate_json(content)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error)) from error


def describe_validation_error(error: ValidationError) -> str:
    """One line naming the first problem, e.g. ``results.3.index: Input should be ...``."""
    first = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{location}: {first['msg']}{more}"
