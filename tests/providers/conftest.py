"""Keep every provider's API-key variable out of these tests."""

from __future__ import annotations

import pytest

from rerank_async.providers import _BY_NAME


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The root conftest clears DeepInfra's variables only.
    for provider in _BY_NAME.values():
        for name in provider.api_key_env_vars:
            monkeypatch.delenv(name, raising=False)
