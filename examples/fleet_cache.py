"""Never pay twice for a pair: a score cache in memory or in a file shared across runs.

Run it with ``pip install 'rerank-async[server]'``::

    python examples/fleet_cache.py

The first call is sent; the same call again sends nothing; a call with half its
documents new sends only those. A second client with a new ``ScoreCache`` on the same
file (another process would do the same) finds every score. The file holds digests
only, never the texts.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from rerank_async import RerankClient, ScoreCache
from rerank_async.server import running_server

QUERY = "best coffee for a marathon morning"
DOCUMENTS = [f"passage {i} on coffee, caffeine and running" for i in range(1000)]


async def main() -> None:
    with running_server() as server, tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "scores.sqlite"
        async with RerankClient(
            base_url=server.base_url, model="demo/reranker", cache=ScoreCache(path=path)
        ) as client:
            cold = await client.rerank(QUERY, DOCUMENTS[:500])
            warm = await client.rerank(QUERY, DOCUMENTS[:500])
            half = await client.rerank(QUERY, DOCUMENTS)
            for name, result in (("cold", cold), ("warm", warm), ("half new", half)):
                usage = result.usage
                print(f"{name}: {usage.requests} requests, {usage.cache_hits} hits")
        async with RerankClient(
            base_url=server.base_url, model="demo/reranker", cache=ScoreCache(path=path)
        ) as fresh:
            again = await fresh.rerank(QUERY, DOCUMENTS)
            print(f"a new client on the file: {again.usage.requests} requests")


if __name__ == "__main__":
    asyncio.run(main())
