"""Amazon Bedrock's Rerank API (``bedrock-agent-runtime``), signed with SigV4.

``POST {base_url}/rerank`` (base ``https://bedrock-agent-runtime.{region}.amazonaws.com``),
signed AWS SigV4 for the service ``bedrock`` with credentials from the standard
AWS chain (environment, shared credentials and config files, SSO, container and
instance roles) through botocore: ``pip install 'rerank-async[bedrock]'``.
Source: the Bedrock API reference, ``API_agent-runtime_Rerank``
(https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_Rerank.html):

- request: ``{"queries": [{"type": "TEXT", "textQuery": {"text"}}],
  "sources": [{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT",
  "textDocument": {"text"}}}, ...], "rerankingConfiguration": {"type":
  "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration":
  {"numberOfResults", "modelConfiguration": {"modelArn"}}}}``; the client's
  ``model`` is sent as ``modelArn`` as given, e.g.
  ``arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0``;
- response: ``{"results": [{"index", "relevanceScore", "document"?}, ...],
  "nextToken"?}`` sorted by relevance; mapped back to input order through
  ``index``. ``numberOfResults`` is the batch's size, so every result comes in
  one page.

The region comes from the base URL's host, else ``region=``, else
``$AWS_REGION`` / ``$AWS_DEFAULT_REGION``, else the botocore profile's. Each
attempt is signed anew (a signature is valid for five minutes; a retry may come
later), over the body exactly as sent.

Limits: ``sources`` holds 1 to 1,000 items, ``queries`` exactly one. Bedrock
bills Cohere Rerank per query of up to 100 documents, hence 100 per request.

Instructions: no field; ``instruction=`` raises ``ValueError``.

Uncertain (not verified against the live API from here): per-document token
limits (the model's: 512 for amazon.rerank-v1, 4,096 for Cohere 3.5), rate-limit
headers (none documented; throttling is a 429 ``ThrottlingException``), and
whether Bedrock API keys (bearer tokens) work for this endpoint (not supported
here). Errors arrive as ``{"message"}`` with the type in ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import anyio
from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from ._base import ProviderCaps
from ._indexed import IndexedProvider, ResponseShape
from ._wire import FiniteScore, StrictIndex, dumps, join_url

if TYPE_CHECKING:  # botocore is an optional extra, imported when the first request is signed
    from botocore.credentials import Credentials

__all__ = ["BedrockProvider"]

ENV_AWS_REGION: Final = "AWS_REGION"
ENV_AWS_DEFAULT_REGION: Final = "AWS_DEFAULT_REGION"
# The signing name of bedrock-agent-runtime (botocore's service model says "bedrock").
SIGNING_SERVICE: Final = "bedrock"
BEDROCK_CAPS: Final = ProviderCaps(documents=1_000)
_HOST: Final = re.compile(r"^bedrock-agent-runtime(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com$")
# Headers SigV4Auth adds that the request must carry as signed.
_SIGNED_HEADERS: Final = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


class _Result(TypedDict):
    index: StrictIndex
    relevanceScore: FiniteScore  # the wire's name


class _BedrockResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[_Result]


def _require_botocore() -> Any:
    try:
        import botocore.session
    except ImportError as error:
        raise ImportError(
            "provider 'bedrock' signs requests with botocore: pip install 'rerank-async[bedrock]'",
            name=error.name,
        ) from error
    return botocore.session


class BedrockProvider(IndexedProvider):
    """Bedrock's ``/rerank`` endpoint, SigV4-signed from the standard AWS credential chain.

    Args:
        region: The AWS region; ``None`` reads the base URL, then ``$AWS_REGION``,
            ``$AWS_DEFAULT_REGION`` and the profile.
        profile: A named profile of the shared config files; ``None`` for the default
            chain (``$AWS_PROFILE`` included).

    Without botocore (the ``bedrock`` extra) the provider is built, but every
    request fails with ``RerankError`` naming the extra to install.
    """

    name = "bedrock"
    default_base_url = "https://bedrock-agent-runtime.us-east-1.amazonaws.com"
    # Bedrock bills Cohere Rerank per query of up to 100 documents.
    default_batch_size = 100
    # Rerank requests per second are a per-account quota: 8 in flight stay under it.
    default_max_concurrency = 8
    caps_table = BEDROCK_CAPS
    response_shape = ResponseShape(_BedrockResponse, "results", "relevanceScore")
    signs_requests = True

    def __init__(self, *, region: str | None = None, profile: str | None = None) -> None:
        self.profile = profile
        self._session: Any = None
        self.region = (
            region
            or os.environ.get(ENV_AWS_REGION)
            or os.environ.get(ENV_AWS_DEFAULT_REGION)
            or self._profile_region()
        )
        self._credentials: Any = None
        self._resolving = anyio.Lock()

    def __repr__(self) -> str:
        return f"BedrockProvider(region={self.region!r}, profile={self.profile!r})"

    def _botocore_session(self) -> Any:
        if self._session is None:
            self._session = _require_botocore().Session(profile=self.profile)
        return self._session

    def _profile_region(self) -> str | None:
        # Without botocore (the extra) the region must come from the environment or the
        # base URL; signing then says which extra to install.
        try:
            region = self._botocore_session().get_config_variable("region")
        except ImportError:
            return None
        return str(region) if region else None

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        # Every attempt is signed instead (request_headers); no key is sent.
        return {}

    def base_url_default(self) -> str:
        if not self.region:
            raise ValueError(
                "provider 'bedrock' needs a region: pass BedrockProvider(region=...), set "
                "AWS_REGION, or pass base_url='https://bedrock-agent-runtime.<region>.amazonaws.com'"
            )
        return f"https://bedrock-agent-runtime.{self.region}.amazonaws.com"

    def url(self, base_url: str, model: str) -> str:
        return join_url(base_url, "/rerank")

    def encode_request(self, model: str, query: str, documents: Sequence[str]) -> bytes:
        return dumps(
            {
                "queries": [{"type": "TEXT", "textQuery": {"text": query}}],
                "sources": [
                    {
                        "type": "INLINE",
                        "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": text}},
                    }
                    for text in documents
                ],
                "rerankingConfiguration": {
                    "type": "BEDROCK_RERANKING_MODEL",
                    "bedrockRerankingConfiguration": {
                        "numberOfResults": len(documents),
                        "modelConfiguration": {"modelArn": model},
                    },
                },
            }
        )

    def region_for(self, url: str) -> str:
        """The region to sign for: the endpoint's own, else the configured one."""
        match = _HOST.match(urlsplit(url).hostname or "")
        if match:
            return match.group(1)
        if not self.region:
            raise ValueError(f"cannot tell the AWS region of {url}; pass region=")
        return str(self.region)

    async def request_headers(self, url: str, body: bytes) -> Mapping[str, str]:
        # First: without botocore this raises the ImportError that names the extra.
        credentials = await self._frozen_credentials()
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=url, data=body)
        SigV4Auth(credentials, SIGNING_SERVICE, self.region_for(url)).add_auth(request)
        return {name: request.headers[name] for name in _SIGNED_HEADERS if name in request.headers}

    async def _frozen_credentials(self) -> Credentials:
        """The chain's credentials now; resolved, or refreshed, in a worker thread.

        The chain may read files or ask an instance-metadata endpoint over the
        network, which must not block the event loop; concurrent attempts share
        one resolution.
        """
        credentials = self._credentials
        if credentials is not None and not _needs_refresh(credentials):
            return credentials.get_frozen_credentials()
        async with self._resolving:
            if self._credentials is None:
                session = self._botocore_session()
                self._credentials = await anyio.to_thread.run_sync(session.get_credentials)
                if self._credentials is None:
                    raise ValueError(
                        "no AWS credentials found (environment, shared files, SSO or instance "
                        "role); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile"
                    )
            return await anyio.to_thread.run_sync(self._credentials.get_frozen_credentials)


def _needs_refresh(credentials: Any) -> bool:
    # RefreshableCredentials (roles, SSO) refresh inside get_frozen_credentials, which
    # may block; static ones (environment, files) never do.
    refresh_needed = getattr(credentials, "refresh_needed", None)
    return bool(refresh_needed()) if callable(refresh_needed) else False
