"""The public surface: exports, error tree, optional extras kept out of the import."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import rerank_async
from rerank_async import _exceptions


def test_all_is_sorted_and_complete() -> None:
    exported = rerank_async.__all__

    def isort_style(
        name: str,
    ) -> tuple[int, str]:  # ruff's RUF022 order: CONSTANTS, Classes, functions
        bare = name.strip("_")
        return (0 if bare.isupper() else 1 if bare[:1].isupper() else 2, name)

    assert exported == sorted(exported, key=isort_style)
    # Subpackages (providers, server, cli) become attributes once imported; they are not exports.
    public = {
        name
        for name, value in vars(rerank_async).items()
        if not name.startswith("_") and name != "annotations" and not isinstance(value, ModuleType)
    }
    assert public | {"__version__"} == set(exported)


def test_error_tree_matches_the_docstring() -> None:
    doc = _exceptions.__doc__ or ""
    for name in _exceptions.__all__:
        assert name in doc
    assert issubclass(rerank_async.APITimeoutError, rerank_async.APIConnectionError)
    for name in (
        "BadRequestError",
        "AuthenticationError",
        "NotFoundError",
        "RateLimitError",
        "ServerError",
    ):
        assert issubclass(getattr(rerank_async, name), rerank_async.APIStatusError)
    for name in ("APIConnectionError", "APIStatusError", "ResponseValidationError"):
        assert issubclass(getattr(rerank_async, name), rerank_async.RerankError)


def test_import_stays_light() -> None:
    # rich is absent from this list on purpose: httpx itself imports it for its own
    # CLI whenever it is installed.
    code = (
        "import sys, rerank_async; "
        "heavy = [m for m in ('uvicorn', 'starlette', 'rerank_async.server', "
        "'rerank_async.cli') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version() -> None:
    assert rerank_async.__version__.count(".") >= 2
