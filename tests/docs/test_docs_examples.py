"""The integration pages' examples run as written, and print what the pages say they print.

Every ```python block of these pages runs in a fresh interpreter (```py blocks are
illustrations that need packages the test suite does not install). A block whose first
line is ``# test_<name>.py`` is a test file and runs under pytest. A ```text block that
follows a code block after an "Output:" line is compared with what the code printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = ["langchain.md", "llama_index.md", "haystack.md", "sync.md", "testing.md", "tracing.md"]
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.DOTALL | re.MULTILINE)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class Example:
    page: str
    number: int
    code: str
    output: str | None


def examples(page: str) -> list[Example]:
    text = (DOCS / page).read_text()
    found: list[Example] = []
    matches = list(_BLOCK.finditer(text))
    for position, match in enumerate(matches):
        if match.group(1) != "python":
            continue
        output = None
        if position + 1 < len(matches):
            following = matches[position + 1]
            between = text[match.end() : following.start()]
            if following.group(1) == "text" and between.strip() == "Output:":
                output = following.group(2)
        found.append(Example(page, len(found) + 1, match.group(2), output))
    return found


ALL = [example for page in PAGES for example in examples(page)]


def test_every_page_has_a_runnable_example() -> None:
    assert {example.page for example in ALL} == set(PAGES)


@pytest.mark.parametrize("example", ALL, ids=lambda e: f"{e.page}-{e.number}")
def test_example_runs(example: Example, tmp_path: Path) -> None:
    env = {**os.environ, "HAYSTACK_TELEMETRY_ENABLED": "False"}
    first_line = example.code.splitlines()[0]
    name = re.match(r"# (test_\w+\.py)", first_line)
    if name:
        (tmp_path / name.group(1)).write_text(example.code)
        (tmp_path / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
        )
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name.group(1)]
    else:
        script = tmp_path / "example.py"
        script.write_text(example.code)
        command = [sys.executable, "-W", "error", str(script)]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if example.output is not None:
        assert done.stdout == example.output


def test_readme_links_every_integration_page() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Integrations", 1)[1].split("\n## ", 1)[0]
    for page in PAGES:
        assert f"(docs/{page})" in section
