"""Spread one model's work over three replicas, and keep going when one dies.

Run it with ``pip install 'rerank-async[server]'``::

    python examples/fleet_replicas.py

It starts three local servers (20 ms per request, 8 at once each), scores 3,000 documents
through all three, stops one, scores again (the dead replica is ejected and the call is
still exact), and prints each replica's share and state from ``client.statistics()``.
For self-hosted TEI, Infinity or vLLM replicas, pass their URLs and ``provider=``.
"""

from __future__ import annotations

import asyncio
import contextlib

from rerank_async import RerankClient
from rerank_async.server import ServerConfig, running_server

DOCUMENTS = [f"passage {i}: solar panels store energy in batteries" for i in range(3000)]


def show(client: RerankClient) -> None:
    for replica in client.statistics().replicas:
        print(f"  {replica.base_url}: {replica.requests} requests, {replica.state}")


async def main() -> None:
    config = ServerConfig(latency_ms=20, capacity=8)
    with contextlib.ExitStack() as servers:
        first, second = (servers.enter_context(running_server(config)) for _ in range(2))
        dying = contextlib.ExitStack()
        third = dying.enter_context(running_server(config))
        urls = [first.base_url, second.base_url, third.base_url]
        async with RerankClient(base_url=urls, model="demo/reranker") as client:
            before = await client.rerank("how is solar energy stored", DOCUMENTS)
            print("three replicas:")
            show(client)
            await asyncio.to_thread(dying.close)  # one replica dies
            after = await client.rerank("how is solar energy stored", DOCUMENTS)
            assert after.scores == before.scores  # exact: failed batches went elsewhere
            print("after one died:")
            show(client)


if __name__ == "__main__":
    asyncio.run(main())
