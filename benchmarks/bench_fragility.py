"""How often a lone bulk request fails under faults: the planner's spread and the resume.

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_fragility        # about 20 s on 2 cores

The probe's case: one 145-document request through ``rerank_many`` (as ``rerank-async
bulk`` sends it), against the local server answering 25% of requests with 503, with
``max_retries=1`` and no backoff, 300 trials. It uses only the public API, so the same
script measures an older checkout (``PYTHONPATH=old-tree``). Prints the share of trials
that failed and the requests the server received per trial.
"""

from __future__ import annotations

import asyncio
import json
import sys

from rerank_async import RerankClient, RerankRequest, RetryPolicy
from rerank_async.server import ServerConfig, running_server

TRIALS = 300
DOCUMENTS = [f"passage {index} about solar storage" for index in range(145)]


async def trials(base_url: str) -> float:
    failed = 0
    async with RerankClient(
        base_url=base_url, max_retries=1, max_concurrency=32, retry=RetryPolicy(initial_delay=0.0)
    ) as client:
        for trial in range(TRIALS):
            request = RerankRequest(query=f"query {trial}", documents=DOCUMENTS)
            async with client.rerank_many([request]) as outcomes:
                async for outcome in outcomes:
                    if not outcome.ok:
                        failed += 1
    return failed / TRIALS


def main() -> None:
    with running_server(ServerConfig(error_503_rate=0.25, seed=7)) as server:
        failure_rate = asyncio.run(trials(server.base_url))
        requests = server.stats()["requests"]
    print(
        json.dumps(
            {"failed_share": round(failure_rate, 3), "requests_per_trial": requests / TRIALS}
        )
    )


if __name__ == "__main__":
    sys.exit(main())
