"""Dividing a provider's limits across an actor pool, so that N actors never exceed them."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .._checks import is_int, is_number

__all__ = ["split_limits"]


def split_limits(totals: Mapping[str, int | float], actors: int) -> dict[str, int | float]:
    """Each actor's share of the provider's limits.

    Every limit is divided the same way, whatever it is named, so that a new
    per-provider client option (a requests- or tokens-per-minute budget) drops in
    without a change here. An integer limit is divided rounding down, so that
    ``actors`` shares never add up to more than the total; a float limit is divided
    exactly.

    Args:
        totals: Client option name -> the provider's total for it, e.g.
            ``{"max_concurrency": 32}``.
        actors: Actors in the pool, each with its own client.

    Returns:
        Client option name -> each actor's share, ready to pass to ``RerankClient``.

    Raises:
        TypeError: ``actors`` or a limit is not a number.
        ValueError: ``actors`` < 1, a limit is not positive, or an integer limit is
            smaller than ``actors`` (an actor would get nothing).
    """
    if not is_int(actors):
        raise TypeError(f"actors must be an int, not {type(actors).__name__}")
    if actors < 1:
        raise ValueError(f"actors must be >= 1, got {actors}")
    shares: dict[str, int | float] = {}
    for name, total in totals.items():
        if not is_number(total):
            raise TypeError(f"{name} must be a number, not {type(total).__name__}")
        if not math.isfinite(total) or total <= 0:
            raise ValueError(f"{name} must be a positive number, got {total}")
        if isinstance(total, int):
            if total < actors:
                raise ValueError(
                    f"{name}={total} cannot be divided across {actors} actors (each needs at "
                    f"least 1): use at most {total} actors, or raise {name}"
                )
            shares[name] = total // actors
        else:
            shares[name] = total / actors
    return shares
