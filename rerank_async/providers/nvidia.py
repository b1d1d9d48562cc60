"""NVIDIA NeMo Retriever reranking (NIM), self-hosted or on NVIDIA's API catalog.

A self-hosted NIM serves ``POST {base_url}/v1/ranking``; NVIDIA's hosted API
(``https://ai.api.nvidia.com``, with ``Authorization: Bearer $NVIDIA_API_KEY``)
serves each model at a model-specific path, e.g.
``/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2/reranking`` for the model
``nvidia/llama-3.2-nv-rerankqa-1b-v2`` (dots in the model id become
underscores). ``endpoint="auto"`` picks the hosted form for
``ai.api.nvidia.com`` and ``/v1/ranking`` for anything else
(https://docs.nvidia.com/nim/nemo-retriever/text-reranking/, API reference):

- request: ``{"model", "query": {"text"}, "passages": [{"text"}, ...], "truncate": "END"|"NONE"}``;
- response: ``{"rankings": [{"index", "logit"}, ...], "usage"?}`` sorted by
  relevance; mapped back to input order through ``index``.

Limits: at most 512 passages per request (Nemotron rerank NIMs, per their
docs; other models may differ); each query + passage pair must fit the
model's context unless ``truncate="END"`` (the default here).

Scores: raw logits, not probabilities: any real number, higher is more
relevant. ``sigmoid=True`` maps them through 1/(1+e^-x) to [0, 1] (the
ordering is unchanged).

Uncertain (not verified against the live API from here): the hosted path
scheme for every model (older models used ``/v1/retrieval/nvidia/reranking``;
pass ``endpoint="ranking"`` and a full ``base_url`` if yours differs), whether
``usage`` is sent, and the wording of the too-many-passages error. Errors
arrive as ``{"detail": ...}`` (hosted, RFC 7807) or ``{"message": ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel
from typing_extensions import TypedDict

from ._indexed import IndexedProvider, ResponseShape, TokenUsage
from ._wire import RESPONSE_MODEL_CONFIG, FiniteScore, StrictIndex, dumps, join_url, model_path

__all__ = ["NvidiaEndpoint", "NvidiaProvider", "NvidiaTruncate"]

# Where the service lives and which variables hold its key (read once per client).
ENV_NVIDIA_API_KEY: Final = "NVIDIA_API_KEY"
NVIDIA_BASE_URL: Final = "https://ai.api.nvidia.com"

NvidiaEndpoint = Literal["auto", "ranking", "hosted"]
NvidiaTruncate = Literal["END", "NONE"]

_HOSTED_HOST = "ai.api.nvidia.com"


class _Ranking(TypedDict):
    index: StrictIndex
    logit: FiniteScore


class _NvidiaResponse(BaseModel):
    model_config = RESPONSE_MODEL_CONFIG

    rankings: list[_Ranking]
    usage: TokenUsage | None = None


class NvidiaProvider(IndexedProvider):
    """NVIDIA's ``/v1/ranking`` (NIM) or hosted ``.../reranking`` endpoint.

    Args:
        endpoint: ``"ranking"`` for a NIM's ``/v1/ranking``, ``"hosted"`` for
            the API catalog's per-model path, ``"auto"`` to choose by host.
        truncate: ``"END"`` cuts pairs over the model's context; ``"NONE"``
            makes the server reject them.
        sigmoid: Map the raw logits through 1/(1+e^-x) to [0, 1].

    Raises:
        ValueError: An unknown ``endpoint`` or ``truncate``.
    """

    name = "nvidia"
    default_base_url = NVIDIA_BASE_URL
    api_key_env_vars = (ENV_NVIDIA_API_KEY,)
    # Well under the 512-passage cap; a NIM batches passages on the GPU itself.
    default_batch_size = 64
    # Hosted catalog keys are rate-limited per minute: 8 in flight avoids 429s.
    default_max_concurrency = 8
    response_shape = ResponseShape(_NvidiaResponse, "rankings", "logit")

    def __init__(
        self,
        *,
        endpoint: NvidiaEndpoint = "auto",
        truncate: NvidiaTruncate = "END",
        sigmoid: bool = False,
    ) -> None:
        if endpoint not in ("auto", "ranking", "hosted"):
            raise ValueError(f"endpoint must be 'auto', 'ranking' or 'hosted', not {endpoint!r}")
        if truncate not in ("END", "NONE"):
            raise ValueError(f"truncate must be 'END' or 'NONE', not {truncate!r}")
        self.endpoint: NvidiaEndpoint = endpoint
        self.truncate: NvidiaTruncate = truncate
        self.sigmoid = sigmoid

    def url(self, base_url: str, model: str) -> str:
        hosted = self.endpoint == "hosted" or (
            self.endpoint == "auto" and urlsplit(base_url).hostname == _HOSTED_HOST
        )
        if hosted:
            segments = model_path(model.replace(".", "_"), keep_slashes=True)
            return join_url(base_url, f"/v1/retrieval/{segments}/reranking")
        return join_url(base_url, "/v1/ranking")

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(
            {
                "model": model,
                "query": {"text": query},
                "passages": [{"text": document} for document in documents],
                "truncate": self.truncate,
            }
        )
