"""Cross-query packing for ``rerank_many``: the calls in flight share full requests.

One entry point, ``PackedRequests`` (``requests.py``), over two leaves:

    packing.py   pure: pack the pairs of several calls into full requests, and unpack
    pool.py      PairPool: which pairs go in each request, and where the scores go back
"""

from .pool import PairPool
from .requests import PackedRequests

__all__ = ["PackedRequests", "PairPool"]
