"""Each service's wire format as its docs show it, and a respx fake that speaks it.

A ``Spec`` says how a provider's request looks (path, body, auth headers) and
how its server answers (the envelope around ``(index, score)`` pairs). The
fake scores pointwise and answers in *reverse* relevance order, so the
indices it sends are scrambled and a client that trusted the order would
misplace every score.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from rerank_async.providers import (
    AzureProvider,
    BedrockProvider,
    CohereProvider,
    ContextualProvider,
    DashScopeProvider,
    FireworksProvider,
    InfinityProvider,
    JinaProvider,
    LlamaCppProvider,
    MixedbreadProvider,
    NvidiaProvider,
    OpenRouterProvider,
    PineconeProvider,
    Provider,
    SGLangProvider,
    SiliconFlowProvider,
    TEIProvider,
    TogetherProvider,
    VertexProvider,
    VLLMProvider,
    VoyageProvider,
    XinferenceProvider,
    ZeroEntropyProvider,
)
from tests.conftest import pointwise_score

QUERY = "What is the capital of France?"
DOCUMENTS = ["Paris is the capital of France.", "Berlin is in Germany.", "Lyon is in France."]

Pairs = Sequence[tuple[object, object]]


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _plain_documents(body: dict[str, Any]) -> list[str]:
    return list(body["documents"])


def _text_documents(body: dict[str, Any]) -> list[str]:
    return [item["text"] for item in body["documents"]]


@dataclass(frozen=True)
class Spec:
    """One provider's documented request and response shapes."""

    name: str
    make: Callable[[], Provider]
    base_url: str
    model: str
    url: str
    # The body for QUERY and DOCUMENTS, as the service's docs show it.
    body: dict[str, Any]
    # The JSON answer for (index, score) pairs, listed in the order given.
    answer: Callable[[Pairs], object]
    env_vars: tuple[str, ...] = ()
    auth: Callable[[str], dict[str, str]] = _bearer
    documents_of: Callable[[dict[str, Any]], list[str]] = _plain_documents
    query_of: Callable[[dict[str, Any]], str] = lambda body: body["query"]
    # (status, body, typed error name, message the error must carry)
    error: tuple[int, object, str, str] = (400, {"message": "bad"}, "BadRequestError", "bad")
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


def _results(key: str = "relevance_score", **envelope: object) -> Callable[[Pairs], object]:
    def answer(pairs: Pairs) -> object:
        return {"results": [{"index": i, key: s} for i, s in pairs], **envelope}

    return answer


def _data(key: str = "score", **envelope: object) -> Callable[[Pairs], object]:
    def answer(pairs: Pairs) -> object:
        return {"data": [{"index": i, key: s} for i, s in pairs], **envelope}

    return answer


def _tei_answer(pairs: Pairs) -> object:
    return [{"index": i, "score": s} for i, s in pairs]


def _nvidia_answer(pairs: Pairs) -> object:
    return {"rankings": [{"index": i, "logit": s} for i, s in pairs]}


def _vllm_rerank_answer(pairs: Pairs) -> object:
    # vLLM always echoes each document; the text is ignored.
    return {
        "id": "rerank-1",
        "model": "BAAI/bge-reranker-v2-m3",
        "usage": {"total_tokens": 42},
        "results": [
            {"index": i, "document": {"text": f"document {i}"}, "relevance_score": s}
            for i, s in pairs
        ],
    }


SPECS: list[Spec] = [
    Spec(
        name="cohere",
        make=CohereProvider,
        base_url="https://api.cohere.com",
        model="rerank-v3.5",
        url="https://api.cohere.com/v2/rerank",
        body={"model": "rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 3},
        answer=_results(
            id="07734bd2-2473-4f07-94e1-0d9f0e6843cf",
            meta={"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        ),
        env_vars=("CO_API_KEY", "COHERE_API_KEY"),
        error=(401, {"id": "x", "message": "invalid api token"}, "AuthenticationError",
               "invalid api token"),
    ),
    Spec(
        name="jina",
        make=JinaProvider,
        base_url="https://api.jina.ai",
        model="jina-reranker-v2-base-multilingual",
        url="https://api.jina.ai/v1/rerank",
        body={"model": "jina-reranker-v2-base-multilingual", "query": QUERY,
              "documents": DOCUMENTS, "top_n": 3, "return_documents": False},
        answer=_results(model="jina-reranker-v2-base-multilingual", usage={"total_tokens": 38}),
        env_vars=("JINA_API_KEY",),
        error=(422, {"detail": "top_n must be a positive integer"}, "BadRequestError",
               "top_n must be a positive integer"),
    ),
    Spec(
        name="voyage",
        make=VoyageProvider,
        base_url="https://api.voyageai.com",
        model="rerank-2.5",
        url="https://api.voyageai.com/v1/rerank",
        body={"model": "rerank-2.5", "query": QUERY, "documents": DOCUMENTS, "top_k": 3,
              "truncation": True, "return_documents": False},
        answer=_data("relevance_score", object="list", model="rerank-2.5",
                     usage={"total_tokens": 26}),
        env_vars=("VOYAGE_API_KEY",),
        error=(401, {"detail": "Provided API key is invalid."}, "AuthenticationError",
               "Provided API key is invalid."),
    ),
    Spec(
        name="tei",
        make=TEIProvider,
        base_url="http://localhost:8080",
        model="BAAI/bge-reranker-base",
        url="http://localhost:8080/rerank",
        body={"query": QUERY, "texts": DOCUMENTS, "truncate": True, "raw_scores": False,
              "return_text": False},
        answer=_tei_answer,
        documents_of=lambda body: list(body["texts"]),
        error=(400, {"error": "Input validation error: `inputs` cannot be empty",
                     "error_type": "Validation"}, "BadRequestError",
               "Input validation error: `inputs` cannot be empty"),
    ),
    Spec(
        name="infinity",
        make=InfinityProvider,
        base_url="http://localhost:7997",
        model="mixedbread-ai/mxbai-rerank-xsmall-v1",
        url="http://localhost:7997/rerank",
        body={"model": "mixedbread-ai/mxbai-rerank-xsmall-v1", "query": QUERY,
              "documents": DOCUMENTS, "top_n": 3, "return_documents": False,
              "raw_scores": False},
        answer=_results(object="rerank", id="infinity-1", created=1700000000,
                        usage={"prompt_tokens": 30, "total_tokens": 30}),
        env_vars=("INFINITY_API_KEY",),
        error=(400, {"error": {"message": "ModelNotDeployedError: model=`x` is not deployed",
                               "type": "BadRequestError", "param": None, "code": 400}},
               "BadRequestError", "ModelNotDeployedError: model=`x` is not deployed"),
    ),
    Spec(
        name="vllm",
        make=VLLMProvider,
        base_url="http://localhost:8000",
        model="BAAI/bge-reranker-v2-m3",
        url="http://localhost:8000/rerank",
        body={"model": "BAAI/bge-reranker-v2-m3", "query": QUERY, "documents": DOCUMENTS,
              "top_n": 3},
        answer=_vllm_rerank_answer,
        env_vars=("VLLM_API_KEY",),
        error=(404, {"object": "error", "message": "The model `x` does not exist.",
                     "type": "NotFoundError", "param": None, "code": 404},
               "NotFoundError", "The model `x` does not exist."),
    ),
    Spec(
        name="vllm-score",
        make=lambda: VLLMProvider(endpoint="score"),
        base_url="http://localhost:8000",
        model="BAAI/bge-reranker-v2-m3",
        url="http://localhost:8000/score",
        body={"model": "BAAI/bge-reranker-v2-m3", "text_1": QUERY, "text_2": DOCUMENTS},
        answer=_data(id="score-1", object="list", usage={"prompt_tokens": 40, "total_tokens": 40}),
        env_vars=("VLLM_API_KEY",),
        documents_of=lambda body: list(body["text_2"]),
        query_of=lambda body: body["text_1"],
        error=(400, {"error": {"message": "text_2 must not be empty", "type": "BadRequestError",
                               "code": 400}}, "BadRequestError", "text_2 must not be empty"),
    ),
    Spec(
        name="together",
        make=TogetherProvider,
        base_url="https://api.together.xyz",
        model="Salesforce/Llama-Rank-V1",
        url="https://api.together.xyz/v1/rerank",
        body={"model": "Salesforce/Llama-Rank-V1", "query": QUERY, "documents": DOCUMENTS,
              "top_n": 3, "return_documents": False},
        answer=_results(object="rerank", id="9dfa1a09", model="Salesforce/Llama-Rank-V1",
                        usage={"prompt_tokens": 50, "completion_tokens": 0,
                               "total_tokens": 50}),
        env_vars=("TOGETHER_API_KEY",),
        error=(429, {"error": {"message": "You have exceeded your rate limit",
                               "type": "rate_limit", "code": "rate_limit_exceeded"}},
               "RateLimitError", "You have exceeded your rate limit"),
    ),
    Spec(
        name="mixedbread",
        make=MixedbreadProvider,
        base_url="https://api.mixedbread.com",
        model="mixedbread-ai/mxbai-rerank-large-v2",
        url="https://api.mixedbread.com/v1/reranking",
        body={"model": "mixedbread-ai/mxbai-rerank-large-v2", "query": QUERY,
              "input": DOCUMENTS, "top_k": 3, "return_input": False},
        answer=_data(object="list", model="mixedbread-ai/mxbai-rerank-large-v2", top_k=3,
                     return_input=False, usage={"prompt_tokens": 31, "total_tokens": 31}),
        env_vars=("MXBAI_API_KEY",),
        documents_of=lambda body: list(body["input"]),
        error=(401, {"detail": "Invalid API key"}, "AuthenticationError", "Invalid API key"),
    ),
    Spec(
        name="nvidia",
        make=NvidiaProvider,
        base_url="https://ai.api.nvidia.com",
        model="nvidia/llama-3.2-nv-rerankqa-1b-v2",
        url="https://ai.api.nvidia.com/v1/retrieval/nvidia/llama-3_2-nv-rerankqa-1b-v2/reranking",
        body={"model": "nvidia/llama-3.2-nv-rerankqa-1b-v2", "query": {"text": QUERY},
              "passages": [{"text": d} for d in DOCUMENTS], "truncate": "END"},
        answer=_nvidia_answer,
        env_vars=("NVIDIA_API_KEY",),
        documents_of=lambda body: [item["text"] for item in body["passages"]],
        query_of=lambda body: body["query"]["text"],
        error=(401, {"type": "urn:kaizen:problem-details:unauthorized", "title": "Unauthorized",
                     "status": 401, "detail": "Authentication failed"},
               "AuthenticationError", "Authentication failed"),
    ),
    Spec(
        name="pinecone",
        make=PineconeProvider,
        base_url="https://api.pinecone.io",
        model="bge-reranker-v2-m3",
        url="https://api.pinecone.io/rerank",
        body={"model": "bge-reranker-v2-m3", "query": QUERY,
              "documents": [{"text": d} for d in DOCUMENTS], "top_n": 3,
              "return_documents": False},
        answer=_data(model="bge-reranker-v2-m3", usage={"rerank_units": 1}),
        env_vars=("PINECONE_API_KEY",),
        auth=lambda key: {"api-key": key},
        extra_headers={"x-pinecone-api-version": "2025-04"},
        documents_of=_text_documents,
        error=(400, {"error": {"code": "INVALID_ARGUMENT", "message": "Model 'x' not found"},
                     "status": 400}, "BadRequestError", "Model 'x' not found"),
    ),
]  # fmt: skip


# -- the services added with instructions and long documents ----------------------------------


def _bedrock_documents(body: dict[str, Any]) -> list[str]:
    return [source["inlineDocumentSource"]["textDocument"]["text"] for source in body["sources"]]


def _bedrock_answer(pairs: Pairs) -> object:
    return {"results": [{"index": i, "relevanceScore": s} for i, s in pairs]}


def _vertex_answer(pairs: Pairs) -> object:
    return {"records": [{"id": str(i) if isinstance(i, int) else i, "score": s} for i, s in pairs]}


BEDROCK_ARN = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
VERTEX_BASE = (
    "https://discoveryengine.googleapis.com/v1/projects/my-project/locations/global"
    "/rankingConfigs/default_ranking_config"
)

NEW_SPECS: list[Spec] = [
    Spec(
        name="azure",
        make=AzureProvider,
        base_url="https://my-rerank.eastus.models.ai.azure.com",
        model="Cohere-rerank-v3.5",
        url="https://my-rerank.eastus.models.ai.azure.com/v2/rerank",
        body={"model": "Cohere-rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 3},
        answer=_results(id="azure-1", meta={"billed_units": {"search_units": 1}}),
        env_vars=("AZURE_AI_API_KEY", "AZURE_API_KEY"),
        error=(
            401,
            {"error": {"code": "Unauthorized", "message": "Access denied due to invalid key"}},
            "AuthenticationError",
            "Access denied due to invalid key",
        ),
    ),
    Spec(
        name="openrouter",
        make=OpenRouterProvider,
        base_url="https://openrouter.ai/api/v1",
        model="cohere/rerank-v3.5",
        url="https://openrouter.ai/api/v1/rerank",
        body={"model": "cohere/rerank-v3.5", "query": QUERY, "documents": DOCUMENTS, "top_n": 3},
        answer=_results(model="cohere/rerank-v3.5", usage={"total_tokens": 30}),
        env_vars=("OPENROUTER_API_KEY",),
        error=(
            402,
            {"error": {"code": 402, "message": "Insufficient credits"}},
            "APIStatusError",
            "Insufficient credits",
        ),
    ),
    Spec(
        name="fireworks",
        make=FireworksProvider,
        base_url="https://api.fireworks.ai/inference/v1",
        model="accounts/fireworks/models/qwen3-reranker-8b",
        url="https://api.fireworks.ai/inference/v1/rerank",
        body={
            "model": "accounts/fireworks/models/qwen3-reranker-8b",
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 3,
            "return_documents": False,
        },
        answer=_data(
            "relevance_score",
            object="list",
            model="accounts/fireworks/models/qwen3-reranker-8b",
            usage={"prompt_tokens": 40, "total_tokens": 40},
        ),
        env_vars=("FIREWORKS_API_KEY",),
        error=(
            404,
            {
                "error": {
                    "object": "error",
                    "type": "invalid_request_error",
                    "message": "Model not found, inaccessible, and/or not deployed",
                }
            },
            "NotFoundError",
            "Model not found, inaccessible, and/or not deployed",
        ),
    ),
    Spec(
        name="sglang",
        make=SGLangProvider,
        base_url="http://localhost:30000",
        model="BAAI/bge-reranker-v2-m3",
        url="http://localhost:30000/v1/rerank",
        body={
            "model": "BAAI/bge-reranker-v2-m3",
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 3,
            "return_documents": False,
        },
        answer=lambda pairs: [{"index": i, "score": s, "meta_info": {"id": "x"}} for i, s in pairs],
        env_vars=("SGLANG_API_KEY",),
        error=(
            400,
            {
                "object": "error",
                "message": "documents must not be empty",
                "type": "BadRequest",
                "param": None,
                "code": 400,
            },
            "BadRequestError",
            "documents must not be empty",
        ),
    ),
    Spec(
        name="llamacpp",
        make=LlamaCppProvider,
        base_url="http://localhost:8080",
        model="bge-reranker-v2-m3-Q4_K_M.gguf",
        url="http://localhost:8080/v1/rerank",
        body={
            "model": "bge-reranker-v2-m3-Q4_K_M.gguf",
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 3,
        },
        answer=_results(
            model="bge-reranker", object="list", usage={"prompt_tokens": 33, "total_tokens": 33}
        ),
        env_vars=("LLAMA_API_KEY",),
        error=(
            501,
            {
                "error": {
                    "code": 501,
                    "message": "This server does not support reranking. "
                    "Start it with `--reranking`",
                    "type": "not_supported_error",
                }
            },
            "ServerError",
            "This server does not support reranking. Start it with `--reranking`",
        ),
    ),
    Spec(
        name="dashscope",
        make=DashScopeProvider,
        base_url="https://dashscope-intl.aliyuncs.com/compatible-api/v1",
        model="qwen3-rerank",
        url="https://dashscope-intl.aliyuncs.com/compatible-api/v1/reranks",
        body={"model": "qwen3-rerank", "query": QUERY, "documents": DOCUMENTS, "top_n": 3},
        answer=_results(
            id="dashscope-1", object="list", model="qwen3-rerank", usage={"total_tokens": 45}
        ),
        env_vars=("DASHSCOPE_API_KEY",),
        error=(
            400,
            {
                "code": "InvalidParameter",
                "message": "Range of documents should be [1, 500]",
                "request_id": "r-1",
            },
            "BadRequestError",
            "Range of documents should be [1, 500]",
        ),
    ),
    Spec(
        name="siliconflow",
        make=SiliconFlowProvider,
        base_url="https://api.siliconflow.com/v1",
        model="Qwen/Qwen3-Reranker-8B",
        url="https://api.siliconflow.com/v1/rerank",
        body={
            "model": "Qwen/Qwen3-Reranker-8B",
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 3,
            "return_documents": False,
        },
        answer=_results(id="sf-1", meta={"tokens": {"input_tokens": 50, "output_tokens": 0}}),
        env_vars=("SILICONFLOW_API_KEY",),
        error=(
            400,
            {
                "code": 20012,
                "message": "Model does not exist. Please check it carefully.",
                "data": None,
            },
            "BadRequestError",
            "Model does not exist. Please check it carefully.",
        ),
    ),
    Spec(
        name="zeroentropy",
        make=ZeroEntropyProvider,
        base_url="https://api.zeroentropy.dev/v1",
        model="zerank-2",
        url="https://api.zeroentropy.dev/v1/models/rerank",
        body={"model": "zerank-2", "query": QUERY, "documents": DOCUMENTS, "top_n": 3},
        answer=_results(total_bytes=600, total_tokens=150, actual_latency_mode="fast"),
        env_vars=("ZEROENTROPY_API_KEY",),
        error=(
            429,
            {"detail": "Your ratelimit has been exceeded."},
            "RateLimitError",
            "Your ratelimit has been exceeded.",
        ),
    ),
    Spec(
        name="contextual",
        make=ContextualProvider,
        base_url="https://api.contextual.ai/v1",
        model="ctxl-rerank-v2-instruct-multilingual",
        url="https://api.contextual.ai/v1/rerank",
        body={
            "model": "ctxl-rerank-v2-instruct-multilingual",
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 3,
        },
        answer=_results(),
        env_vars=("CONTEXTUAL_API_KEY",),
        error=(
            422,
            {"detail": [{"loc": ["body", "model"], "msg": "Field required", "type": "missing"}]},
            "BadRequestError",
            "body.model: Field required",
        ),
    ),
    Spec(
        name="xinference",
        make=XinferenceProvider,
        base_url="http://localhost:9997",
        model="bge-reranker-v2-m3",
        url="http://localhost:9997/v1/rerank",
        body={
            "model": "bge-reranker-v2-m3",
            "query": QUERY,
            "documents": DOCUMENTS,
            "top_n": 3,
            "return_documents": False,
        },
        answer=_results(
            id="xinf-1",
            meta={
                "api_version": None,
                "billed_units": None,
                "tokens": {"input_tokens": 30},
                "warnings": None,
            },
        ),
        env_vars=("XINFERENCE_API_KEY",),
        error=(
            400,
            {"detail": "Model not found in the model list, uid: nosuch"},
            "BadRequestError",
            "Model not found in the model list, uid: nosuch",
        ),
    ),
]

# Signed per attempt (SigV4) or by an access token: tested in test_signed_providers.py.
SIGNED_SPECS: list[Spec] = [
    Spec(
        name="bedrock",
        make=lambda: BedrockProvider(region="us-west-2"),
        base_url="https://bedrock-agent-runtime.us-west-2.amazonaws.com",
        model=BEDROCK_ARN,
        url="https://bedrock-agent-runtime.us-west-2.amazonaws.com/rerank",
        body={
            "queries": [{"type": "TEXT", "textQuery": {"text": QUERY}}],
            "sources": [{"type": "INLINE", "inlineDocumentSource": {
                "type": "TEXT", "textDocument": {"text": d}}} for d in DOCUMENTS],
            "rerankingConfiguration": {"type": "BEDROCK_RERANKING_MODEL",
                                       "bedrockRerankingConfiguration": {
                                           "numberOfResults": 3,
                                           "modelConfiguration": {"modelArn": BEDROCK_ARN}}},
        },
        answer=_bedrock_answer,
        documents_of=_bedrock_documents,
        query_of=lambda body: body["queries"][0]["textQuery"]["text"],
        error=(400, {"message": "1 validation error detected: Value at 'sources' failed"},
               "BadRequestError", "1 validation error detected: Value at 'sources' failed"),
    ),
    Spec(
        name="vertex",
        make=lambda: VertexProvider(project="my-project"),
        base_url=VERTEX_BASE,
        model="semantic-ranker-default@latest",
        url=f"{VERTEX_BASE}:rank",
        body={"model": "semantic-ranker-default@latest", "query": QUERY,
              "records": [{"id": str(i), "content": d} for i, d in enumerate(DOCUMENTS)],
              "topN": 3, "ignoreRecordDetailsInResponse": True},
        answer=_vertex_answer,
        env_vars=("VERTEX_ACCESS_TOKEN",),
        documents_of=lambda body: [record["content"] for record in body["records"]],
        error=(403, {"error": {"code": 403, "message": "Permission denied on resource project",
                               "status": "PERMISSION_DENIED"}},
               "AuthenticationError", "Permission denied on resource project"),
    ),
]  # fmt: skip

SPECS += NEW_SPECS
BY_NAME = {spec.name: spec for spec in [*SPECS, *SIGNED_SPECS]}


def reverse_relevance(query: str, documents: Sequence[str]) -> list[tuple[int, float]]:
    """``(index, score)`` pairs, least relevant first: the opposite of every service."""
    scores = [pointwise_score(query, document) for document in documents]
    return sorted(enumerate(scores), key=lambda pair: pair[1])


def json_response(body: object, status: int = 200) -> httpx.Response:
    # json.dumps writes NaN and Infinity as bare tokens, as a broken server would.
    return httpx.Response(
        status, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


class FakeService:
    """A respx side effect: pointwise scores in ``spec``'s dialect, reverse relevance order.

    ``limit`` makes it reject batches larger than that with ``too_large``'s answer.
    """

    def __init__(
        self,
        spec: Spec,
        *,
        limit: int | None = None,
        too_large: Callable[[int, int], httpx.Response] | None = None,
        mangle: Callable[[list[tuple[object, object]]], Pairs] | None = None,
    ) -> None:
        self.spec = spec
        self.limit = limit
        self.too_large = too_large
        self.mangle = mangle
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.answered: list[list[int]] = []

    @property
    def batch_sizes(self) -> list[int]:
        return [len(self.spec.documents_of(body)) for body in self.bodies]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        documents = self.spec.documents_of(body)
        if self.limit is not None and len(documents) > self.limit:
            assert self.too_large is not None
            return self.too_large(len(documents), self.limit)
        pairs: list[tuple[object, object]] = list(
            reverse_relevance(self.spec.query_of(body), documents)
        )
        if self.mangle is not None:
            pairs = list(self.mangle(pairs))
        self.answered.append([index for index, _ in pairs if isinstance(index, int)])
        return json_response(self.spec.answer(pairs))
