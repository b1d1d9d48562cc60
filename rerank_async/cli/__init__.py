"""The ``rerank-async`` command line (the optional ``cli`` extra; ``serve`` and ``demo`` also
need the ``server`` extra). This is the only part of the package that prints."""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
