"""Wire formats: one module per reranking service, behind ``Provider``."""

from __future__ import annotations

from ._base import BatchScores, Provider
from .cohere import CohereProvider
from .deepinfra import DeepInfraProvider
from .infinity import InfinityProvider
from .jina import JinaProvider
from .mixedbread import MixedbreadProvider
from .nvidia import NvidiaProvider
from .pinecone import PineconeProvider
from .tei import TEIProvider
from .together import TogetherProvider
from .vllm import VLLMProvider
from .voyage import VoyageProvider

__all__ = [
    "BatchScores",
    "CohereProvider",
    "DeepInfraProvider",
    "InfinityProvider",
    "JinaProvider",
    "MixedbreadProvider",
    "NvidiaProvider",
    "PineconeProvider",
    "Provider",
    "TEIProvider",
    "TogetherProvider",
    "VLLMProvider",
    "VoyageProvider",
    "provider_names",
    "resolve_provider",
]

_BY_NAME: dict[str, type[Provider]] = {
    provider.name: provider
    for provider in (
        CohereProvider,
        DeepInfraProvider,
        InfinityProvider,
        JinaProvider,
        MixedbreadProvider,
        NvidiaProvider,
        PineconeProvider,
        TEIProvider,
        TogetherProvider,
        VLLMProvider,
        VoyageProvider,
    )
}


def provider_names() -> list[str]:
    """The names ``resolve_provider`` knows, sorted."""
    return sorted(_BY_NAME)


def resolve_provider(provider: str | Provider) -> Provider:
    """Return ``provider`` itself, or a default-configured one for a name.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    if isinstance(provider, Provider):
        return provider
    factory = _BY_NAME.get(provider.lower()) if isinstance(provider, str) else None
    if factory is None:
        known = ", ".join(provider_names())
        raise ValueError(f"unknown provider {provider!r}; known providers: {known}")
    return factory()
