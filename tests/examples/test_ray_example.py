"""The Ray Data example runs as a user runs it: its own process, its own local cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).parents[2] / "examples" / "ray_bulk.py"


def test_the_ray_example_scores_every_query_within_the_limit() -> None:
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "scored 500 queries, 0 failed"
    in_flight = int(lines[1].split("max ")[1].split(" ")[0])
    assert 1 <= in_flight <= 8
    assert len(lines) == 5
    assert lines[2].startswith("q0: ")
