"""The cost of refusing duplicate JSON keys, on 64-document answers (docs/lifecycle.md).

Run from the repository root::

    .venv/bin/python -m benchmarks.bench_duplicate_keys     # a few seconds

For DeepInfra's body (``{"scores": [...64 floats], ...}``) and Cohere's (``{"results":
[{"index", "relevance_score"} x 64], ...}``): the provider's whole ``decode_response``
with the check, the check alone, and the standard library's ``object_pairs_hook`` parse
the check falls back to. Median of 7 runs of 5,000 calls, microseconds per body.
Results go to ``benchmarks/results/duplicate_keys.json``.
"""

from __future__ import annotations

import json
import random
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path

from rerank_async.providers import resolve_provider
from rerank_async.providers._wire import _unique_pairs, check_unique_keys

RESULTS = Path(__file__).parent / "results" / "duplicate_keys.json"
N_DOCUMENTS = 64
CALLS = 5_000


def bodies() -> dict[str, bytes]:
    scores = [random.Random(1).random() for _ in range(N_DOCUMENTS)]
    deepinfra = {
        "scores": scores,
        "input_tokens": 640,
        "request_id": "req-1",
        "inference_status": {"status": "succeeded", "runtime_ms": 5, "cost": 0.0},
    }
    cohere = {
        "id": "req-1",
        "results": [{"index": i, "relevance_score": s} for i, s in enumerate(scores)],
        "meta": {"billed_units": {"search_units": 1}},
    }
    return {"deepinfra": json.dumps(deepinfra).encode(), "cohere": json.dumps(cohere).encode()}


def microseconds(function: Callable[[], object]) -> float:
    runs = [timeit.timeit(function, number=CALLS) / CALLS * 1e6 for _ in range(7)]
    return round(statistics.median(runs), 2)


def main() -> None:
    results: dict[str, dict[str, float]] = {}
    for name, body in bodies().items():
        provider = resolve_provider(name)
        results[name] = {
            "decode_response_us": microseconds(
                lambda: provider.decode_response(body, N_DOCUMENTS)  # noqa: B023
            ),
            "check_unique_keys_us": microseconds(lambda: check_unique_keys(body)),  # noqa: B023
            "stdlib_pairs_hook_us": microseconds(
                lambda: json.loads(body, object_pairs_hook=_unique_pairs)  # noqa: B023
            ),
        }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
