"""Benchmark of ``rerank-async bulk``: throughput against a simulated GPU, and peak memory.

Run from the repository root::

    .venv/bin/python benchmarks/bench_bulk.py            # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_bulk.py --quick    # smaller memory runs, a smoke test

The local server runs as its own process, pinned to CPU 1 with ``taskset`` when there is
one; each ``bulk`` run is a separate process pinned to CPU 0, exactly as a user runs it.

1. Throughput: the server takes 50 ms per request and serves 8 at once (a GPU worker pool);
   the client sends batches of 32 with a concurrency of 8. No client can beat
   capacity x batch size / batch latency = 8 x 32 / 0.050 s = 5,120 documents/s, so the
   result is reported as a fraction of that ideal. Wall time is the run's own (from
   ``--json-summary``), without interpreter start-up.
2. Peak memory: the RSS high-water mark of the bulk process (``wait4``'s ``ru_maxrss``) for
   1, 10k and 100k requests of 10 documents each, against a zero-latency server.

Results go to ``benchmarks/results/bulk.json``; ``docs/bulk.md`` quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"
LATENCY_MS = 50
CAPACITY = 8
BATCH_SIZE = 32
CONCURRENCY = 8
IDEAL_DOCS_PER_S = CAPACITY * BATCH_SIZE / (LATENCY_MS / 1000)
WORDS = ["solar", "battery", "storage", "grid", "panel", "roof", "energy", "coffee", "marathon",
         "volcano", "city", "river", "garden", "engine", "harbor"]  # fmt: skip
TASKSET = shutil.which("taskset") if (os.cpu_count() or 1) >= 2 else None


def pinned(cpu: int, command: list[str]) -> list[str]:
    return [TASKSET, "-c", str(cpu), *command] if TASKSET else command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server(**flags: float) -> Iterator[str]:
    """A local server process; yields its root URL."""
    port = free_port()
    command = [sys.executable, "-m", "rerank_async.cli", "serve", "--port", str(port)]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(
        pinned(1, command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                httpx.get(f"{url}/healthz", timeout=1.0).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.025)
        else:
            raise RuntimeError("the server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_input(path: Path, n_requests: int, n_documents: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n_requests):
            documents = [f"{' '.join(rng.choices(WORDS, k=5))} {j}" for j in range(n_documents)]
            query = " ".join(rng.sample(WORDS, 3))
            handle.write(json.dumps({"id": f"q{i}", "query": query, "documents": documents}))
            handle.write("\n")


def run_bulk(
    url: str, source: Path, workdir: Path, *flags: str, output: Path | None = None
) -> dict[str, Any]:
    """One ``bulk`` process; returns its JSON summary plus ``peak_rss_mib``."""
    out = output if output is not None else workdir / "out.jsonl"
    summary = workdir / "summary.json"
    if not out.is_dir():
        out.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "rerank_async.cli", "bulk", str(source), "-o", str(out),
        "--base-url", f"{url}/v1/inference", "--json-summary", str(summary), "-q", *flags,
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(pinned(0, command), stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"bulk exited {process.returncode}: {stderr.decode()[-2000:]}")
    figures: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    # ru_maxrss is in KiB on Linux. With taskset in front, wait4 reports the exec'd python.
    figures["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    figures["process_wall_s"] = round(wall, 2)
    if out.is_file():
        figures["output_lines"] = out.read_bytes().count(b"\n")
    return figures


def throughput(workdir: Path, n_requests: int, n_documents: int) -> dict[str, Any]:
    source = workdir / f"throughput-{n_documents}.jsonl"
    write_input(source, n_requests, n_documents, seed=1)
    with server(latency_ms=LATENCY_MS, capacity=CAPACITY, seed=1) as url:
        figures = run_bulk(
            url, source, workdir, "--batch-size", str(BATCH_SIZE),
            "--concurrency", str(CONCURRENCY),
        )  # fmt: skip
        stats = httpx.get(f"{url}/stats", timeout=5).json()
    rate = figures["documents"] / figures["wall_s"]
    # A call splits into balanced batches: 100 documents go as 4 x 25, never 3 x 32 + 4,
    # so a server slot carries at most that many documents per 50 ms.
    per_batch = n_documents / -(-n_documents // BATCH_SIZE)
    return {
        "workload": f"{n_requests} queries x {n_documents} documents",
        "documents": figures["documents"],
        "wall_s": figures["wall_s"],
        "documents_per_s": round(rate, 1),
        "ideal_documents_per_s": IDEAL_DOCS_PER_S,
        "fraction_of_ideal": round(rate / IDEAL_DOCS_PER_S, 3),
        "documents_per_batch": per_batch,
        "fraction_of_batch_ceiling": round(rate / (CAPACITY * per_batch / (LATENCY_MS / 1000)), 3),
        "http_requests": figures["http_requests"],
        "latency_ms": figures["latency_ms"],
        "server_max_in_flight": stats["max_in_flight"],
        "peak_rss_mib": figures["peak_rss_mib"],
    }


def memory(workdir: Path, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    with server(seed=1) as url:
        for n_requests in sizes:
            source = workdir / f"memory-{n_requests}.jsonl"
            write_input(source, n_requests, 10, seed=2)
            figures = run_bulk(url, source, workdir, "--batch-size", "64", "--concurrency", "16")
            assert figures["output_lines"] == n_requests
            rows.append({
                "requests": n_requests,
                "input_mib": round(source.stat().st_size / 2**20, 1),
                "peak_rss_mib": figures["peak_rss_mib"],
                "wall_s": figures["wall_s"],
                "requests_per_s": figures["requests_per_s"],
                "documents_per_s": figures["documents_per_s"],
            })  # fmt: skip
            source.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="memory runs of 1k and 10k only")
    args = parser.parse_args()
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "taskset": bool(TASKSET),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    print(f"machine: {machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        workdir = Path(tmp)
        rows = [throughput(workdir, 200, 100), throughput(workdir, 200, 128)]
        print(
            f"\nThroughput: server {LATENCY_MS} ms per request, capacity {CAPACITY}; client "
            f"batch size {BATCH_SIZE}, concurrency {CONCURRENCY}; ideal "
            f"{IDEAL_DOCS_PER_S:,.0f} documents/s"
        )
        print(f"{'workload':32} {'docs/s':>8} {'of ideal':>9} {'of batch ceiling':>17} "
              f"{'p50 ms':>7} {'max in flight':>14}")  # fmt: skip
        for row in rows:
            print(
                f"{row['workload']:32} {row['documents_per_s']:>8,.0f} "
                f"{row['fraction_of_ideal']:>9.1%} {row['fraction_of_batch_ceiling']:>17.1%} "
                f"{row['latency_ms']['p50']:>7,.0f} {row['server_max_in_flight']:>14}",
                flush=True,
            )
        sizes = [1, 1_000, 10_000] if args.quick else [1, 10_000, 100_000]
        memory_rows = memory(workdir, sizes)
    print("\nPeak memory: requests of 10 documents, zero-latency server")
    print(
        f"{'requests':>9} {'input MiB':>10} {'peak RSS MiB':>13} {'wall s':>7} {'requests/s':>11}"
    )
    for row in memory_rows:
        print(
            f"{row['requests']:>9,} {row['input_mib']:>10.1f} {row['peak_rss_mib']:>13.1f} "
            f"{row['wall_s']:>7.1f} {row['requests_per_s']:>11,.0f}"
        )
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": machine, "throughput": rows, "memory": memory_rows}
    path = RESULTS / ("bulk-quick.json" if args.quick else "bulk.json")
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
