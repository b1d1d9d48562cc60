"""Fall back to another model when the primary fails for good; never mix their scores.

Run it with ``pip install 'rerank-async[server]'``::

    python examples/fleet_fallback.py

The primary's server answers 500 to any request holding the word "poisoned" (a model
that crashes on one input). The call that meets it is scored again, whole, by the
fallback: ``result.model`` names who scored it. For a managed API with a self-hosted
fallback, pass your two clients the same way.
"""

from __future__ import annotations

import asyncio

from rerank_async import RerankClient
from rerank_async.server import ServerConfig, running_server

DOCUMENTS = [f"passage {i} about coffee and marathons" for i in range(200)]


async def main() -> None:
    with (
        running_server(ServerConfig(poison="poisoned")) as primary_server,
        running_server(ServerConfig()) as backup_server,
    ):
        async with (
            RerankClient(base_url=backup_server.base_url, model="demo/backup") as backup,
            RerankClient(
                base_url=primary_server.base_url,
                model="demo/primary",
                max_retries=1,
                fallback=backup,  # or [backup, another]: tried in order
            ) as client,
        ):
            healthy = await client.rerank("coffee before a marathon", DOCUMENTS)
            print(f"scored by {healthy.model} ({healthy.provider})")
            documents = [*DOCUMENTS, "a poisoned passage"]
            fell_back = await client.rerank("coffee before a marathon", documents)
            print(f"scored by {fell_back.model}: all {len(fell_back.scores)} documents")
            print(f"calls that fell back: {client.statistics().fallbacks}")


if __name__ == "__main__":
    asyncio.run(main())
