"""``choose_width``: how many requests a call is split into, from the endpoint's model.

A call of n documents sent as k requests of n/k waits for the slowest of them.
On a server whose latency grows with documents (a CPU TEI or Infinity), more
requests each finish sooner, as long as they all run at once: past the free
slots, or past the server's capacity, the extra ones wait a round. A wider
fan-out is also more exposed to the tail: the call is slow if any of its k
requests is ("The Tail at Scale"). And each request may be billed (per request,
per search unit), so one more must buy real latency. ``choose_width`` weighs
these on the fitted ``EndpointEstimate`` and returns the k with the least cost.
"""

from __future__ import annotations

import math
from typing import Final

from .endpoint_model import EndpointEstimate

__all__ = ["choose_width"]

# Each request beyond the fewest costs this share of the fixed latency: on a server
# whose latency does not grow with documents (a GPU), the fewest requests win.
_REQUEST_COST: Final = 0.05


def choose_width(
    n_documents: int,
    *,
    fewest: int,
    most: int,
    free_slots: int,
    estimate: EndpointEstimate,
) -> int:
    """The number of requests, between ``fewest`` and ``most``, of the least expected cost.

    Args:
        n_documents: The call's documents.
        fewest: Requests the batch size needs.
        most: Requests the smallest allowed batch allows.
        free_slots: Requests that could start now (the limit less other calls' work).
        estimate: The endpoint's fitted model (its ``per_document_s`` known).

    Returns:
        ``fewest`` unless a wider fan-out is expected to finish sooner by more
        than its extra requests cost.
    """
    slots = max(1, free_slots if estimate.capacity is None else min(free_slots, estimate.capacity))
    best, best_cost = fewest, math.inf
    # Past the free slots a wider fan-out only adds rounds: no need to look further.
    for width in range(fewest, max(fewest, min(most, slots)) + 1):
        rounds = math.ceil(width / slots)
        latency = rounds * estimate.latency(math.ceil(n_documents / width))
        in_tail = 1.0 - (1.0 - estimate.tail_share) ** width
        expected = latency * (1.0 + in_tail * (estimate.tail_ratio - 1.0))
        cost = expected + _REQUEST_COST * estimate.fixed_s * (width - fewest)
        if cost < best_cost:
            best, best_cost = width, cost
    return best
