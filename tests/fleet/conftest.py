"""Replicas, fallbacks and the score cache against real local servers on loopback."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")
