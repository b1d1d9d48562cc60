"""``import rerank_async`` (and of the integrations package) pulls in no framework."""

from __future__ import annotations

import ast
import subprocess
import sys

HEAVY = ("langchain_core", "llama_index", "haystack", "opentelemetry", "starlette", "uvicorn")


def imported_after(statement: str) -> list[str]:
    code = (
        f"import sys; {statement}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return list(ast.literal_eval(done.stdout))


def test_the_core_and_the_integrations_package_import_no_framework() -> None:
    assert imported_after("import rerank_async") == []
    assert imported_after("import rerank_async.integrations") == []
    assert imported_after("from rerank_async import SyncRerankClient") == []


def test_each_adapter_imports_only_its_own_framework() -> None:
    assert imported_after("import rerank_async.integrations.langchain") == ["langchain_core"]
    assert imported_after("import rerank_async.integrations.llama_index") == ["llama_index"]
    assert imported_after("import rerank_async.integrations.haystack") == ["haystack"]
