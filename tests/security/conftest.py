"""One hostile loopback server per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .hostile import HostileServer, hostile_server


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server() as running:
        yield running
