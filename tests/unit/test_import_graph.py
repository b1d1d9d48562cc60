"""No module of rerank_async imports another that imports it back, at any depth.

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``.
A parent package's ``__init__`` that Python runs implicitly is not an edge; an
explicit ``from . import x`` is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rerank_async

PACKAGE_ROOT = Path(rerank_async.__file__).parent


def module_name(path: Path) -> str:
    parts = ["rerank_async", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that ``name`` imports, explicitly, anywhere in its body."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or ``None``."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target in on_stack:
                return [*stack[stack.index(target) :], target]
            if target not in done:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    assert "rerank_async._retry" in graph["rerank_async._attempts"]
    assert (
        "rerank_async._transports.aiohttp_engine" in graph["rerank_async._transports.engines"]
    )  # in a function
    assert "rerank_async.providers" in graph["rerank_async._config"]


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


# The core's layers, lowest first: a module may import only from layers below its own.
# docs/development.md draws the same table.
CORE_LAYERS: list[set[str]] = [
    {"_checks", "_constants", "_partial", "_secrets"},
    {"_batching", "_exceptions", "_long_documents", "_options", "_version"},
    {"_flow", "_lifecycle", "_models", "_resume", "_retry", "providers"},
    {"_call", "_config", "_hedging", "_tracing"},
    {"_many", "_transports"},
    {"_attempts", "_fleet"},
    {"_runner"},
    {"_packed"},
    {"_scorer"},
    {"_client"},
    {"_sync"},
    {"", "integrations", "ray"},  # the package's __init__; the adapters' and Ray's packages
]
# Core subpackages: each module in them sits at its package's layer, and may import
# its siblings freely.
CORE_SUBPACKAGES = ("_fleet", "_flow", "_packed", "_transports")


def core_layer(module: str) -> int | None:
    """The layer of a core module, or ``None`` outside the core (cli, server, providers.*)."""
    parts = module.split(".")
    if parts[1:2] in (["cli"], ["server"]):
        return None
    if len(parts) > 2 and parts[1] not in CORE_SUBPACKAGES:
        return None
    name = parts[1] if len(parts) >= 2 else ""
    return next(i for i, layer in enumerate(CORE_LAYERS) if name in layer)


def same_subpackage(module: str, target: str) -> bool:
    return module.split(".")[:2] == target.split(".")[:2] and module.count(".") >= 1


def test_every_core_module_has_a_layer() -> None:
    for module in import_graph():
        if module.count(".") <= 1 and not module.startswith(
            ("rerank_async.cli", "rerank_async.server")
        ):
            assert core_layer(module) is not None, module


def test_core_imports_flow_down_the_layers() -> None:
    for module, targets in import_graph().items():
        layer = core_layer(module)
        if layer is None:
            continue
        for target in targets:
            assert not target.startswith(("rerank_async.cli", "rerank_async.server")), (
                f"{module} imports {target}: the core never loads the CLI or the server"
            )
            target_layer = core_layer(target)
            if target_layer is not None and not same_subpackage(module, target):
                assert target_layer < layer, f"{module} (layer {layer}) imports {target}"


def test_providers_and_the_server_stand_apart() -> None:
    for module, targets in import_graph().items():
        if module.startswith("rerank_async.providers"):
            assert all(t.startswith("rerank_async.providers") for t in targets), module
        if module.startswith("rerank_async.server"):
            assert all(t.startswith("rerank_async.server") for t in targets), module
