"""Cohere Rerank on Azure AI Foundry (serverless or Foundry deployments).

Cohere's own wire format at the deployment's endpoint:
``POST {base_url}/v2/rerank`` (or ``/v1/rerank``) with ``Authorization: Bearer
$AZURE_AI_API_KEY`` (https://learn.microsoft.com/azure/ai-foundry/how-to/deploy-models-cohere-rerank,
"Cohere Rerank API v2 / v1"; request and response as in ``cohere.py``). The
endpoint is per deployment (``https://<deployment>.<region>.models.ai.azure.com``
for serverless APIs, ``https://<resource>.services.ai.azure.com/providers/cohere``
on Foundry), so ``base_url=`` (or ``$RERANK_ASYNC_BASE_URL``) is required; the
model is the deployment's, e.g. ``Cohere-rerank-v3.5``.

Limits: Cohere's (1,000 documents recommended; ``max_tokens_per_doc`` on v2,
4,096 by default). Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against a live deployment from here): whether every
Foundry deployment takes ``max_tokens_per_doc``, the variable name for the key
(``AZURE_AI_API_KEY`` as LiteLLM's ``azure_ai`` provider reads it), and the
error shape (Cohere's ``{"message"}`` or Azure's ``{"error": {"code",
"message"}}``; both are read).
"""

from __future__ import annotations

from typing import Final

from .cohere import CohereProvider

__all__ = ["AzureProvider"]

# Which variables hold the deployment's key (read once per client).
ENV_AZURE_AI_API_KEY: Final = "AZURE_AI_API_KEY"
ENV_AZURE_API_KEY: Final = "AZURE_API_KEY"


class AzureProvider(CohereProvider):
    """Cohere Rerank on an Azure AI Foundry deployment: ``{base_url}/v2/rerank``.

    Args:
        api_version: ``"v2"`` (the default) or ``"v1"``.
        max_tokens_per_doc: v2 only: truncate each document to this many tokens.
    """

    name = "azure"
    # No shared host: every deployment has its own endpoint (see base_url_default).
    default_base_url = ""
    api_key_env_vars = (ENV_AZURE_AI_API_KEY, ENV_AZURE_API_KEY)

    def base_url_default(self) -> str:
        raise ValueError(
            "provider 'azure' needs base_url=: your deployment's endpoint, e.g. "
            "https://<deployment>.<region>.models.ai.azure.com (or set RERANK_ASYNC_BASE_URL)"
        )
