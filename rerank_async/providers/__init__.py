"""Wire formats: one module per reranking service, behind ``Provider``."""

from __future__ import annotations

from ._base import BatchScores, Provider
from .deepinfra import DeepInfraProvider

__all__ = ["BatchScores", "DeepInfraProvider", "Provider", "resolve_provider"]

_BY_NAME: dict[str, type[Provider]] = {DeepInfraProvider.name: DeepInfraProvider}


def resolve_provider(provider: str | Provider) -> Provider:
    """Return ``provider`` itself, or a default-configured one for a name.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    if isinstance(provider, Provider):
        return provider
    factory = _BY_NAME.get(provider.lower()) if isinstance(provider, str) else None
    if factory is None:
        known = ", ".join(sorted(_BY_NAME))
        raise ValueError(f"unknown provider {provider!r}; known providers: {known}")
    return factory()
