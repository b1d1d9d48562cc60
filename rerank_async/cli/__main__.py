"""``python -m rerank_async.cli``: the same as the ``rerank-async`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
