"""Wire formats: one module per reranking service, behind ``Provider``."""

from __future__ import annotations

from ._base import BatchScores, Provider, ProviderCaps
from .azure import AzureProvider
from .bedrock import BedrockProvider
from .cohere import CohereProvider
from .contextual import ContextualProvider
from .dashscope import DashScopeProvider
from .deepinfra import DeepInfraProvider
from .fireworks import FireworksProvider
from .infinity import InfinityProvider
from .jina import JinaProvider
from .llamacpp import LlamaCppProvider
from .mixedbread import MixedbreadProvider
from .nvidia import NvidiaProvider
from .openrouter import OpenRouterProvider
from .pinecone import PineconeProvider
from .sglang import SGLangProvider
from .siliconflow import SiliconFlowProvider
from .tei import TEIProvider
from .together import TogetherProvider
from .vertex import VertexProvider
from .vllm import VLLMProvider
from .voyage import VoyageProvider
from .xinference import XinferenceProvider
from .zeroentropy import ZeroEntropyProvider

__all__ = [
    "AzureProvider",
    "BatchScores",
    "BedrockProvider",
    "CohereProvider",
    "ContextualProvider",
    "DashScopeProvider",
    "DeepInfraProvider",
    "FireworksProvider",
    "InfinityProvider",
    "JinaProvider",
    "LlamaCppProvider",
    "MixedbreadProvider",
    "NvidiaProvider",
    "OpenRouterProvider",
    "PineconeProvider",
    "Provider",
    "ProviderCaps",
    "SGLangProvider",
    "SiliconFlowProvider",
    "TEIProvider",
    "TogetherProvider",
    "VLLMProvider",
    "VertexProvider",
    "VoyageProvider",
    "XinferenceProvider",
    "ZeroEntropyProvider",
    "provider_names",
    "resolve_provider",
]

_BY_NAME: dict[str, type[Provider]] = {
    provider.name: provider
    for provider in (
        AzureProvider,
        BedrockProvider,
        CohereProvider,
        ContextualProvider,
        DashScopeProvider,
        DeepInfraProvider,
        FireworksProvider,
        InfinityProvider,
        JinaProvider,
        LlamaCppProvider,
        MixedbreadProvider,
        NvidiaProvider,
        OpenRouterProvider,
        PineconeProvider,
        SGLangProvider,
        SiliconFlowProvider,
        TEIProvider,
        TogetherProvider,
        VLLMProvider,
        VertexProvider,
        VoyageProvider,
        XinferenceProvider,
        ZeroEntropyProvider,
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
