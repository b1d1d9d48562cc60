"""``--target NAME=PROVIDER:MODEL@BASE_URL``: the endpoints a bench compares, checked at parse time.

A target is parsed and checked by argparse itself, so a mistake is reported against the
flag, with usage, before any client is built or any request sent.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..providers import provider_names

__all__ = ["TARGET_SYNTAX", "AppendTarget", "Target", "parse_target", "target_namespace"]

TARGET_SYNTAX: Final = "NAME=PROVIDER[:MODEL][@BASE_URL]"
# Names label table rows, JSON cells and plot legends: short, no spaces or separators.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint under test.

    Attributes:
        name: Its label in tables, JSON and plots.
        provider: The wire format (a name ``--provider`` accepts).
        model: The model, or ``None`` for ``$RERANK_ASYNC_MODEL`` / the provider's default.
        base_url: The endpoint root, or ``None`` for the provider's own.
    """

    name: str
    provider: str
    model: str | None = None
    base_url: str | None = None


def parse_target(text: str) -> Target:
    """``"a=deepinfra:BAAI/bge-reranker-v2-m3@http://127.0.0.1:8001/v1/inference"`` -> Target.

    The model ends at the first ``@``: model names carry none, and a URL may (user info).

    Raises:
        argparse.ArgumentTypeError: What is wrong, with the expected syntax.
    """
    name, equals, rest = text.partition("=")
    if not equals:
        raise _bad(text, "no '=' after the name")
    if not _NAME.fullmatch(name):
        raise _bad(text, f"the name {name!r} must be letters, digits, '_', '.' or '-'")
    spec, at, base_url = rest.partition("@")
    provider, _, model = spec.partition(":")
    provider = provider.strip().lower()
    if provider not in provider_names():
        raise _bad(text, f"unknown provider {provider!r} (one of {', '.join(provider_names())})")
    if at and not re.match(r"https?://[^/\s]+", base_url):
        raise _bad(text, f"the base URL {base_url!r} must start with http:// or https://")
    return Target(name, provider, model.strip() or None, base_url.strip() or None)


def _bad(text: str, reason: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{text!r}: {reason}; expected {TARGET_SYNTAX}")


class AppendTarget(argparse.Action):
    """Collects repeated ``--target`` flags into a list, refusing a name given twice."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, Target)  # type=parse_target ran first
        targets: list[Target] = list(getattr(namespace, self.dest, None) or [])
        if any(target.name == values.name for target in targets):
            raise argparse.ArgumentError(self, f"the name {values.name!r} is given twice")
        targets.append(values)
        setattr(namespace, self.dest, targets)


def target_namespace(
    args: argparse.Namespace, target: Target, *, batch_size: int | None, concurrency: int | None
) -> argparse.Namespace:
    """``args`` as if the client flags had named ``target``, for ``client_from_args``.

    Every other client flag (``--api-key``, ``--timeout``, ``--engine``, ...) applies to
    each target alike; a key left out comes from the target provider's own variable.
    """
    settings = vars(args) | {
        "provider": target.provider,
        "model": target.model if target.model is not None else args.model,
        "base_url": target.base_url,
        "batch_size": batch_size,
        "concurrency": concurrency,
    }
    return argparse.Namespace(**settings)
