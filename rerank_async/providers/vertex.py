"""Google Cloud's ranking API (Vertex AI Search / Agent Builder ``rankingConfigs:rank``).

``POST {base_url}:rank`` with base
``https://discoveryengine.googleapis.com/v1/projects/{project}/locations/{location}/rankingConfigs/default_ranking_config``
and ``Authorization: Bearer <access token>``: ``api_key=`` (or
``$VERTEX_ACCESS_TOKEN``) is taken as an OAuth access token, e.g. from
``gcloud auth print-access-token``; without one, Application Default
Credentials through google-auth (``pip install 'rerank-async[vertex]'``),
refreshed in a worker thread, never on the event loop. Source: the REST
reference of ``projects.locations.rankingConfigs.rank``
(https://cloud.google.com/generative-ai-app-builder/docs/reference/rest/v1/projects.locations.rankingConfigs/rank)
and ``RankRequest`` in the discoveryengine client libraries:

- request: ``{"model", "query", "records": [{"id", "content"}, ...], "topN",
  "ignoreRecordDetailsInResponse": true}``; each record's ``id`` is its
  position in the batch;
- response: ``{"records": [{"id", "score"}, ...]}`` sorted by score; mapped
  back to input order by ``id`` (every id of the batch exactly once).

Limits: at most 200 records per request; the ``semantic-ranker-512`` models read
512 tokens of query and record together (longer records are truncated by the
service). The project comes from ``project=``, ``$GOOGLE_CLOUD_PROJECT`` or
``$CLOUDSDK_CORE_PROJECT``; without one ``base_url=`` is required.

Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against the live API from here): a score of exactly 0
may be left out of the JSON (proto3 omits default values; read as 0.0), which
models take which token limit, and whether ADC user credentials need an
``x-goog-user-project`` header for quota (not sent). Errors arrive as
``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final

import anyio
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from typing_extensions import TypedDict

from ._base import ProviderCaps
from ._indexed import IndexedProvider, ResponseShape
from ._wire import FiniteScore, dumps

__all__ = ["VertexProvider"]

ENV_VERTEX_ACCESS_TOKEN: Final = "VERTEX_ACCESS_TOKEN"  # noqa: S105  # a variable name
ENV_GOOGLE_CLOUD_PROJECT: Final = "GOOGLE_CLOUD_PROJECT"
ENV_CLOUDSDK_CORE_PROJECT: Final = "CLOUDSDK_CORE_PROJECT"
VERTEX_HOST: Final = "https://discoveryengine.googleapis.com/v1"
SCOPE: Final = "https://www.googleapis.com/auth/cloud-platform"
VERTEX_CAPS: Final = ProviderCaps(documents=200)
_CAPS_512: Final = ProviderCaps(documents=200, tokens_per_document=512)


def _position(record_id: object) -> int:
    # Ids are the positions this client sent, as decimal strings; anything else is not ours.
    if not isinstance(record_id, str) or not record_id.isdecimal():
        raise ValueError(f"{record_id!r} is not an id this client sent")
    return int(record_id)


class _Record(TypedDict):
    id: Annotated[int, BeforeValidator(_position)]
    score: FiniteScore


class _VertexResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # An empty answer is sent as {}: proto3 leaves out an empty list too.
    records: list[_Record] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _zero_scores(cls, data: Any) -> Any:
        # proto3 JSON leaves out a field at its default value: a missing score is 0.
        if isinstance(data, dict) and isinstance(data.get("records"), list):
            data["records"] = [
                {"score": 0.0, **record} if isinstance(record, dict) else record
                for record in data["records"]
            ]
        return data


class VertexProvider(IndexedProvider):
    """Google's ``rankingConfigs:rank`` endpoint; records mapped back by id.

    Args:
        project: The Google Cloud project (id or number); ``None`` reads the
            environment.
        location: The ranking config's location.
    """

    name = "vertex"
    default_base_url = (
        f"{VERTEX_HOST}/projects/-/locations/global/rankingConfigs/default_ranking_config"
    )
    default_model = "semantic-ranker-default@latest"
    api_key_env_vars = (ENV_VERTEX_ACCESS_TOKEN,)
    caps_table = VERTEX_CAPS
    # A tenth of Google's ranking pricing unit is a query of up to 100 records.
    default_batch_size = 100
    # Per-project quotas on rank requests per minute: 8 in flight.
    default_max_concurrency = 8
    response_shape = ResponseShape(_VertexResponse, "records", "score", index="id")
    signs_requests = True

    def __init__(self, *, project: str | None = None, location: str = "global") -> None:
        self.project = (
            project
            or os.environ.get(ENV_GOOGLE_CLOUD_PROJECT)
            or os.environ.get(ENV_CLOUDSDK_CORE_PROJECT)
        )
        self.location = location
        # Set when the client has an access token: then no credentials are looked up.
        self._has_token = False
        self._credentials: Any = None
        self._refreshing = anyio.Lock()

    def __repr__(self) -> str:
        return f"VertexProvider(project={self.project!r}, location={self.location!r})"

    def base_url_default(self) -> str:
        if not self.project:
            raise ValueError(
                "provider 'vertex' needs a project: pass VertexProvider(project=...), set "
                f"{ENV_GOOGLE_CLOUD_PROJECT}, or pass base_url="
            )
        return (
            f"{VERTEX_HOST}/projects/{self.project}/locations/{self.location}"
            "/rankingConfigs/default_ranking_config"
        )

    def caps(self, model: str) -> ProviderCaps:
        return _CAPS_512 if "512" in model else VERTEX_CAPS

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        self._has_token = api_key is not None
        return super().auth_headers(api_key)

    def url(self, base_url: str, model: str) -> str:
        return f"{base_url.rstrip('/')}:rank"

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(
            {
                "model": model,
                "query": query,
                "records": [
                    {"id": str(position), "content": text}
                    for position, text in enumerate(documents)
                ],
                "topN": len(documents),
                "ignoreRecordDetailsInResponse": True,
            }
        )

    async def request_headers(self, url: str, body: bytes) -> Mapping[str, str]:
        if self._has_token:
            return {}
        credentials = self._credentials
        if credentials is None or not credentials.valid:
            credentials = await self._refreshed()
        return {"Authorization": f"Bearer {credentials.token}"}

    async def _refreshed(self) -> Any:
        """Application Default Credentials with a valid token; the lookup and the refresh
        (HTTP to Google's token endpoint) run in a worker thread."""
        async with self._refreshing:
            if self._credentials is None:
                self._credentials = await anyio.to_thread.run_sync(_default_credentials)
            credentials = self._credentials
            if not credentials.valid:
                from google.auth.transport.requests import Request

                await anyio.to_thread.run_sync(credentials.refresh, Request())
        return credentials


def _default_credentials() -> Any:
    try:
        import google.auth
    except ImportError as error:
        raise ImportError(
            "provider 'vertex' without api_key= uses google-auth: "
            "pip install 'rerank-async[vertex]'",
            name=error.name,
        ) from error
    credentials, _project = google.auth.default(scopes=[SCOPE])
    return credentials
