"""Percentiles for ``rerank-async bench``: sorting floats against an HDR histogram.

Run from the repository root; the histogram side needs ``pip install hdrhistogram``
(not a dependency of the project: this script is how the choice was made)::

    .venv/bin/python benchmarks/bench_percentiles.py

For each sample count it times recording every latency and then reading p50, p90, p99,
p99.9 and the maximum, both ways, and reports the histogram's largest relative error
against the exact nearest-rank value. Latencies are log-normal around 50 ms with 2% of
them in a one-second stall, the shape an open-loop run against a stalling server has.
Best of 5 runs. Results go to ``benchmarks/results/percentiles.json``.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

from rerank_async.cli._bench_stats import PERCENTILES, latency_summary

SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
RUNS = 5


def samples(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [
        rng.uniform(500.0, 1_500.0)
        if rng.random() < 0.02
        else rng.lognormvariate(math.log(50), 0.4)
        for _ in range(n)
    ]


def best_of(function: Callable[[list[float]], object], values: list[float]) -> float:
    best = math.inf
    for _ in range(RUNS):
        started = time.perf_counter()
        function(values)
        best = min(best, time.perf_counter() - started)
    return best


def with_sort(values: list[float]) -> dict[str, float | None]:
    recorded: list[float] = []
    for value in values:  # what the scheduler does per call
        recorded.append(value)
    return latency_summary(recorded)


def with_hdr(values: list[float]) -> dict[str, float]:
    from hdrh.histogram import HdrHistogram

    # Microseconds from 1 µs to one hour, three significant digits (the usual setting).
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for value in values:
        histogram.record_value(round(value * 1000.0))
    return {
        key: histogram.get_value_at_percentile(fraction * 100.0) / 1000.0
        for key, fraction in PERCENTILES
    }


def main() -> None:
    rows = []
    for n in SIZES:
        values = samples(n)
        exact = with_sort(values)
        approximate = with_hdr(values)
        error = max(
            abs(approximate[key] - exact_value) / exact_value
            for key, exact_value in exact.items()
            if exact_value is not None
        )
        row = {
            "n": n,
            "sort_ms": best_of(with_sort, values) * 1000.0,
            "hdr_ms": best_of(with_hdr, values) * 1000.0,
            "hdr_max_relative_error": error,
        }
        rows.append(row)
        print(
            f"n={n:>9,}  sort {row['sort_ms']:9.2f} ms   hdr {row['hdr_ms']:9.2f} ms   "
            f"hdr error up to {100 * error:.3f}%"
        )
    out = Path(__file__).parent / "results" / "percentiles.json"
    out.write_text(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
