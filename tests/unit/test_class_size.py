"""The package stays readable from its plan: small modules, small classes, a short root.

No class passes 300 lines and no module 450, docstrings included (past that a class
or a module is doing several jobs), and the package root holds at most 24 modules:
more than that, and a concern wants a subpackage of its own (httpx's ``_transports``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import rerank_async

PACKAGE_ROOT = Path(rerank_async.__file__).parent
MOST_LINES = 300
MOST_MODULE_LINES = 450
MOST_ROOT_MODULES = 24


def class_sizes() -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                span = node.end_lineno - node.lineno + 1
                sizes[f"{path.relative_to(PACKAGE_ROOT)}:{node.name}"] = span
    return sizes


def test_no_class_passes_three_hundred_lines() -> None:
    sizes = class_sizes()
    assert "_client.py:RerankClient" in sizes
    too_big = {name: size for name, size in sizes.items() if size > MOST_LINES}
    assert not too_big


def test_no_module_passes_four_hundred_and_fifty_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE_ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE_ROOT.rglob("*.py")
    }
    assert "_client.py" in sizes
    too_big = {name: size for name, size in sizes.items() if size > MOST_MODULE_LINES}
    assert not too_big


def test_the_package_root_holds_at_most_twenty_four_modules() -> None:
    root = sorted(path.name for path in PACKAGE_ROOT.glob("*.py"))
    assert "__init__.py" in root
    assert len(root) <= MOST_ROOT_MODULES, root
