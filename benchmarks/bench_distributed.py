"""Benchmark of the Ray Data route against the local bulk command, and Parquet bulk memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_distributed.py           # about 6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_distributed.py --quick   # 1 round, small Parquet runs

1. Ray vs local: 200 queries x 100 documents against the local server as its own process
   (pinned to CPU 1 with ``taskset``), 50 ms per request, capacity 8; client batch size 32,
   total concurrency 8. Interleaved rounds, each: one local ``rerank-async bulk`` process
   (JSONL to JSONL; wall time from its ``--json-summary``, without interpreter start-up),
   then the same job through ``rerank_dataset`` on a warm local Ray cluster (Parquet in,
   Parquet out; 1 actor of 8 slots, and 2 actors of 4; wall time from building the dataset
   to the written output, actor start-up included). Medians of the rounds, and ratios.
   Ray's overhead: ``ray.init`` once, and a 2-row job after each run (actor start-up,
   scheduling, reading, writing), whose wall time is the fixed cost every job pays; and the
   marginal rate, (800 - 200) x 100 extra documents over the extra wall time of an
   800-query job, which is the scoring rate with the fixed cost taken out.
2. Parquet memory: ``rerank-async bulk`` from Parquet to Parquet, requests of 100
   documents against a zero-latency server, at 250,000 and 1,000,000 pairs; peak RSS from
   ``wait4``.

Results go to ``benchmarks/results/distributed.json``; ``docs/distributed.md`` quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from bench_bulk import (  # a sibling script, not a package
    BATCH_SIZE,
    CAPACITY,
    CONCURRENCY,
    LATENCY_MS,
    TASKSET,
    WORDS,
    run_bulk,
    server,
    write_input,
)

RESULTS = Path(__file__).parent / "results"
ACTOR_COUNTS = (1, 2)
BIG_QUERIES = 800


def jsonl_to_parquet(source: Path, target: Path) -> None:
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), target)


def ray_job(url: str, source: Path, out: Path, actors: int) -> dict[str, Any]:
    import ray.data

    from rerank_async.ray import rerank_dataset

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    scored = rerank_dataset(
        ray.data.read_parquet(str(source)),
        max_concurrency=CONCURRENCY,
        actors=actors,
        client_options={
            "base_url": f"{url}/v1/inference",
            "model": "m",
            "api_key": "k",
            "batch_size": BATCH_SIZE,
        },
    )
    scored.select_columns(["id", "scores", "error_type"]).write_parquet(str(out))
    wall = time.perf_counter() - started
    table = pq.read_table(out, columns=["scores", "error_type"])
    documents = sum(len(scores) for scores in table.column("scores").to_pylist())
    assert table.column("error_type").null_count == table.num_rows, "a row failed"
    return {"wall_s": round(wall, 3), "rows": table.num_rows, "documents": documents,
            "documents_per_s": round(documents / wall, 1)}  # fmt: skip


def ray_versus_local(workdir: Path, rounds: int) -> dict[str, Any]:
    import ray

    jsonl, parquet = workdir / "ray-in.jsonl", workdir / "ray-in.parquet"
    write_input(jsonl, 200, 100, seed=1)
    jsonl_to_parquet(jsonl, parquet)
    big_jsonl, big = workdir / "big.jsonl", workdir / "big.parquet"
    write_input(big_jsonl, BIG_QUERIES, 100, seed=3)
    jsonl_to_parquet(big_jsonl, big)
    tiny = workdir / "tiny.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "query": "q", "documents": ["d"]}] * 2), tiny)

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - started
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    local_runs: list[dict[str, Any]] = []
    ray_runs: dict[int, list[dict[str, Any]]] = {n: [] for n in ACTOR_COUNTS}
    try:
        with server(latency_ms=LATENCY_MS, capacity=CAPACITY, seed=1) as url:
            ray_job(url, tiny, workdir / "warmup.parquet", 1)  # first start of the workers
            for number in range(rounds):
                local = run_bulk(url, jsonl, workdir, "--batch-size", str(BATCH_SIZE),
                                 "--concurrency", str(CONCURRENCY))  # fmt: skip
                local_runs.append({"wall_s": local["wall_s"], "documents": local["documents"],
                                   "documents_per_s": local["documents_per_s"]})  # fmt: skip
                line = f"round {number + 1}: local {local['documents_per_s']:,.0f} docs/s"
                for actors in ACTOR_COUNTS:
                    httpx.post(f"{url}/stats/reset", timeout=5)
                    run = ray_job(url, parquet, workdir / "ray-out.parquet", actors)
                    run["server_max_in_flight"] = httpx.get(f"{url}/stats").json()["max_in_flight"]
                    run["fixed_job_s"] = ray_job(url, tiny, workdir / "tiny.out", actors)["wall_s"]
                    run["big_wall_s"] = ray_job(url, big, workdir / "big.out", actors)["wall_s"]
                    ray_runs[actors].append(run)
                    line += (f", ray x{actors} {run['documents_per_s']:,.0f} docs/s "
                             f"(2-row job {run['fixed_job_s']:.2f} s)")  # fmt: skip
                print(line, flush=True)
    finally:
        ray.shutdown()
    local_rate = statistics.median(r["documents_per_s"] for r in local_runs)
    local_wall = statistics.median(r["wall_s"] for r in local_runs)
    result: dict[str, Any] = {
        "workload": "200 queries x 100 documents",
        "server": {"latency_ms": LATENCY_MS, "capacity": CAPACITY},
        "client": {"batch_size": BATCH_SIZE, "total_concurrency": CONCURRENCY},
        "rounds": rounds,
        "ray_init_s": round(init_s, 2),
        "local": local_runs,
        "local_documents_per_s_median": local_rate,
    }
    for actors, runs in ray_runs.items():
        rate = statistics.median(r["documents_per_s"] for r in runs)
        wall = statistics.median(r["wall_s"] for r in runs)
        fixed = statistics.median(r["fixed_job_s"] for r in runs)
        extra_documents = (BIG_QUERIES - 200) * 100
        marginal = statistics.median(
            extra_documents / max(r["big_wall_s"] - r["wall_s"], 1e-9) for r in runs
        )
        result[f"ray_{actors}_actors"] = {
            "runs": runs,
            "documents_per_s_median": rate,
            "ratio_to_local": round(rate / local_rate, 3),
            "ratio_per_round": [
                round(r["documents_per_s"] / lo["documents_per_s"], 3)
                for r, lo in zip(runs, local_runs, strict=True)
            ],
            "extra_wall_s_median": round(wall - local_wall, 3),
            "fixed_job_s_median": fixed,
            # The scoring itself, whatever the fixed cost: the extra documents of a job 4x
            # larger over its extra wall time, against the local command's rate.
            "marginal_documents_per_s_median": round(marginal, 1),
            "marginal_ratio_to_local": round(marginal / local_rate, 3),
        }
    return result


def write_parquet_input(path: Path, n_requests: int, n_documents: int) -> None:
    rng = random.Random(2)
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, n_requests, 1000):
            rows = [
                {"id": f"q{i}", "query": " ".join(rng.sample(WORDS, 3)),
                 "documents": [f"{' '.join(rng.choices(WORDS, k=5))} {j}"
                               for j in range(n_documents)]}
                for i in range(start, min(start + 1000, n_requests))
            ]  # fmt: skip
            table = pa.Table.from_pylist(rows)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def parquet_memory(workdir: Path, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    with server(seed=1) as url:
        for n_requests in sizes:
            source = workdir / f"memory-{n_requests}.parquet"
            write_parquet_input(source, n_requests, 100)
            out = workdir / "out.parquet"
            shutil.rmtree(out, ignore_errors=True)
            figures = run_bulk(url, source, workdir, "--batch-size", "100", "--concurrency", "8",
                               output=out)  # fmt: skip
            written = pq.read_table(out, columns=["id"]).num_rows
            assert written == n_requests, written
            rows.append({
                "requests": n_requests,
                "pairs": n_requests * 100,
                "input_mib": round(source.stat().st_size / 2**20, 1),
                "output_parts": len(list(out.glob("part-*.parquet"))),
                "peak_rss_mib": figures["peak_rss_mib"],
                "wall_s": figures["wall_s"],
                "documents_per_s": figures["documents_per_s"],
            })  # fmt: skip
            print(f"parquet {n_requests * 100:,} pairs: peak RSS {figures['peak_rss_mib']} MiB, "
                  f"{figures['wall_s']:.1f} s", flush=True)  # fmt: skip
            source.unlink()
            shutil.rmtree(out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round; 25k and 100k pairs")
    parser.add_argument("--skip-ray", action="store_true", help="only the Parquet memory runs")
    parser.add_argument("--skip-parquet", action="store_true", help="only Ray against local")
    args = parser.parse_args()
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "taskset": bool(TASKSET),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"machine: {machine}", flush=True)
    result: dict[str, Any] = {"machine": machine}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        workdir = Path(tmp)
        if not args.skip_ray:
            result["ray_versus_local"] = ray_versus_local(workdir, 1 if args.quick else 3)
            for actors in ACTOR_COUNTS:
                figures = dict(result["ray_versus_local"][f"ray_{actors}_actors"])
                figures.pop("runs")
                print(f"ray, {actors} actors: {json.dumps(figures)}", flush=True)
        if not args.skip_parquet:
            sizes = [250, 1_000] if args.quick else [2_500, 10_000]
            result["parquet_memory"] = parquet_memory(workdir, sizes)
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("distributed-quick.json" if args.quick else "distributed.json")
    if path.exists() and (args.skip_ray or args.skip_parquet):
        merged = json.loads(path.read_text(encoding="utf-8"))
        merged.update({k: v for k, v in result.items() if k != "machine"})
        merged.setdefault("machines", []).append(machine)
        result = merged
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
