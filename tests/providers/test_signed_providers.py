"""Bedrock (SigV4 from the AWS credential chain) and Vertex (access token or ADC), respx fakes.

The Bedrock signature is checked by recomputing it here from the request as it arrived
(RFC-style SigV4, independent of botocore), so a body signed in any other form than
the one sent would fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from rerank_async import BadRequestError, Limits, RerankClient, RerankError, ResponseValidationError
from tests.conftest import make_client, pointwise_score, requires
from tests.providers.specs import BY_NAME, DOCUMENTS, QUERY, FakeService, Spec, json_response

# Bedrock's tests need botocore (the bedrock extra); Vertex's run without google-auth.
needs_botocore = requires("botocore")

BEDROCK = BY_NAME["bedrock"]
VERTEX = BY_NAME["vertex"]
KEY_ID = "AKIDEXAMPLE123"
TOKEN = "ya29.a0-test-access-token"  # a test value
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # a test value


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials from the environment only: no files, no instance metadata."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def expected_signature(request: httpx.Request, *, region: str, service: str) -> str:
    """The SigV4 signature of ``request`` as received, from its signed headers."""
    authorization = request.headers["authorization"]
    fields = dict(part.strip().split("=", 1) for part in authorization.split(" ", 1)[1].split(","))
    signed = fields["SignedHeaders"].split(";")
    amz_date = request.headers["x-amz-date"]
    canonical = "\n".join(
        [
            request.method,
            request.url.raw_path.decode().split("?")[0],
            "",
            "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed),
            ";".join(signed),
            hashlib.sha256(request.content).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{SECRET}".encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


class Recorder(FakeService):
    """A FakeService that also keeps each raw request."""

    def __init__(self, spec: Spec, **options: Any) -> None:
        super().__init__(spec, **options)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().__call__(request)


def bedrock_client(**options: Any) -> RerankClient:
    options.setdefault("provider", BEDROCK.make())
    options.setdefault("base_url", BEDROCK.base_url)
    return make_client(model=BEDROCK.model, **options)


# -- Bedrock ----------------------------------------------------------------------------------


@needs_botocore
@pytest.mark.usefixtures("aws_env")
async def test_bedrock_request_is_sigv4_signed_from_the_environment(
    mock_api: respx.MockRouter,
) -> None:
    fake = Recorder(BEDROCK)
    mock_api.post(BEDROCK.url).mock(side_effect=fake)
    async with bedrock_client() as client:
        scores = await client.score(QUERY, DOCUMENTS)
    assert scores == [pointwise_score(QUERY, d) for d in DOCUMENTS]
    assert fake.bodies == [BEDROCK.body]
    request = fake.requests[0]
    authorization = request.headers["authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
    assert "/us-west-2/bedrock/aws4_request" in authorization
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date"} <= set(signed)
    signature = authorization.split("Signature=")[1]
    assert signature == expected_signature(request, region="us-west-2", service="bedrock")
    assert "x-amz-security-token" not in request.headers


@needs_botocore
@pytest.mark.usefixtures("aws_env")
async def test_bedrock_signs_every_attempt_and_sends_the_session_token(
    mock_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-1")
    fake = Recorder(BEDROCK)
    attempts: list[httpx.Request] = []

    def first_503(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            return json_response({"message": "ServiceUnavailable"}, 503)
        return fake(request)

    mock_api.post(BEDROCK.url).mock(side_effect=first_503)
    async with bedrock_client(max_retries=2) as client:
        await client.score(QUERY, ["a", "b"])
    assert len(attempts) == 2
    for request in attempts:
        assert request.headers["x-amz-security-token"] == "session-token-1"
        authorization = request.headers["authorization"]
        assert "x-amz-security-token" in authorization.split("SignedHeaders=")[1]
        assert authorization.split("Signature=")[1] == expected_signature(
            request, region="us-west-2", service="bedrock"
        )


@needs_botocore
@pytest.mark.usefixtures("aws_env")
async def test_bedrock_region_comes_from_the_base_url_then_the_environment(
    mock_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    from rerank_async.providers import BedrockProvider

    client = RerankClient(provider="bedrock", model=BEDROCK.model)
    assert client.options.url == "https://bedrock-agent-runtime.eu-central-1.amazonaws.com/rerank"
    # A base URL naming another region wins for signing.
    fake = Recorder(BEDROCK)
    mock_api.post(BEDROCK.url).mock(side_effect=fake)
    async with bedrock_client(provider=BedrockProvider()) as other:
        await other.score(QUERY, ["a"])
    assert "/us-west-2/bedrock/aws4_request" in fake.requests[0].headers["authorization"]


@needs_botocore
def test_bedrock_needs_a_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="needs a region"):
        RerankClient(provider="bedrock", model=BEDROCK.model)


@needs_botocore
async def test_bedrock_without_credentials_fails_before_sending(
    mock_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    route = mock_api.post(BEDROCK.url).mock(return_value=json_response({}))
    async with bedrock_client() as client:
        with pytest.raises(RerankError, match="could not authenticate the request") as caught:
            await client.score(QUERY, ["a"])
    assert "no AWS credentials found" in str(caught.value)
    assert not route.called


@needs_botocore
@pytest.mark.usefixtures("aws_env")
async def test_bedrock_caps_requests_at_1000_sources(mock_api: respx.MockRouter) -> None:
    fake = Recorder(BEDROCK)
    mock_api.post(BEDROCK.url).mock(side_effect=fake)
    documents = [f"passage {i}" for i in range(2500)]
    async with bedrock_client(batch_size=5000) as client:
        assert client.options.batch_size == 1000
        result = await client.rerank(QUERY, documents)
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert max(fake.batch_sizes) <= 1000
    assert sum(fake.batch_sizes) == 2500


@needs_botocore
@pytest.mark.usefixtures("aws_env")
async def test_bedrock_error_and_reverse_order(mock_api: respx.MockRouter) -> None:
    status, body, _, message = BEDROCK.error
    mock_api.post(BEDROCK.url).mock(
        return_value=httpx.Response(
            status, json=body, headers={"x-amzn-ErrorType": "ValidationException"}
        )
    )
    async with bedrock_client(max_retries=0) as client:
        with pytest.raises(BadRequestError) as caught:
            await client.score(QUERY, DOCUMENTS)
    assert caught.value.server_message == message


@needs_botocore
@pytest.mark.usefixtures("aws_env")
async def test_bedrock_throttling_429_is_a_rate_limit_error(mock_api: respx.MockRouter) -> None:
    mock_api.post(BEDROCK.url).mock(
        return_value=httpx.Response(
            429,
            json={"message": "Too many requests, please wait before trying again."},
            headers={"x-amzn-ErrorType": "ThrottlingException", "Retry-After": "2"},
        )
    )
    async with bedrock_client(max_retries=0) as client:
        with pytest.raises(RerankError) as caught:
            await client.score(QUERY, ["a"])
    assert type(caught.value).__name__ == "RateLimitError"
    assert getattr(caught.value, "retry_after", None) == 2.0


@needs_botocore
def test_bedrock_rejects_instructions() -> None:
    with pytest.raises(ValueError, match="no instruction field"):
        RerankClient(
            provider=BEDROCK.make(), base_url=BEDROCK.base_url, model=BEDROCK.model, instruction="x"
        )


# -- Vertex -----------------------------------------------------------------------------------


def vertex_client(**options: Any) -> RerankClient:
    options.setdefault("provider", VERTEX.make())
    return make_client(base_url=VERTEX.base_url, model=VERTEX.model, **options)


async def test_vertex_access_token_and_records_mapped_back_by_id(
    mock_api: respx.MockRouter,
) -> None:
    fake = FakeService(VERTEX)
    mock_api.post(VERTEX.url).mock(side_effect=fake)
    documents = [f"record {i} about France" for i in range(9)]
    async with vertex_client(
        api_key="ya29.token", batch_size=4, limits=Limits(min_batch_size=4)
    ) as client:
        result = await client.rerank(QUERY, documents)
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert fake.headers[0]["authorization"] == "Bearer ya29.token"
    assert any(answer != sorted(answer) for answer in fake.answered)  # really scrambled
    # Each batch numbers its records from 0: ids are positions in the request.
    assert all(
        [record["id"] for record in body["records"]]
        == [str(i) for i in range(len(body["records"]))]
        for body in fake.bodies
    )
    assert fake.batch_sizes == [3, 3, 3]


def test_vertex_url_from_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-42")
    client = RerankClient(provider="vertex")
    assert client.options.url == (
        "https://discoveryengine.googleapis.com/v1/projects/proj-42/locations/global"
        "/rankingConfigs/default_ranking_config:rank"
    )
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.delenv("CLOUDSDK_CORE_PROJECT", raising=False)
    with pytest.raises(ValueError, match="needs a project"):
        RerankClient(provider="vertex")


async def test_vertex_caps_requests_at_200_records(mock_api: respx.MockRouter) -> None:
    fake = FakeService(VERTEX)
    mock_api.post(VERTEX.url).mock(side_effect=fake)
    documents = [f"record {i}" for i in range(450)]
    async with vertex_client(api_key=TOKEN, batch_size=1000) as client:
        result = await client.rerank(QUERY, documents)
    assert result.scores == [pointwise_score(QUERY, d) for d in documents]
    assert max(fake.batch_sizes) <= 200


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        ([{"id": "0", "score": 0.5}, {"id": "x", "score": 0.1}], "not an id this client sent"),
        ([{"id": "0", "score": 0.5}, {"id": "0", "score": 0.1}], "appears twice"),
        ([{"id": "0", "score": 0.5}], "missing indices 1"),
        ([{"id": "0", "score": 0.5}, {"id": 1, "score": 0.1}], "not an id this client sent"),
    ],
)
async def test_vertex_bad_records_are_validation_errors(
    mock_api: respx.MockRouter, records: list[dict[str, object]], reason: str
) -> None:
    mock_api.post(VERTEX.url).mock(return_value=json_response({"records": records}))
    async with vertex_client(api_key=TOKEN, max_retries=0) as client:
        with pytest.raises(ResponseValidationError, match=reason):
            await client.score(QUERY, ["a", "b"])


async def test_vertex_a_left_out_score_is_zero(mock_api: respx.MockRouter) -> None:
    # proto3 JSON omits a field at its default value.
    answer = {"records": [{"id": "1", "score": 0.7}, {"id": "0"}]}
    mock_api.post(VERTEX.url).mock(return_value=json_response(answer))
    async with vertex_client(api_key=TOKEN) as client:
        assert await client.score(QUERY, ["a", "b"]) == [0.0, 0.7]


async def test_vertex_without_a_token_uses_default_credentials_refreshed_once(
    mock_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("google.auth", reason="the vertex extra: pip install -e '.[dev]'")
    from rerank_async.providers import vertex

    class FakeCredentials:
        def __init__(self) -> None:
            self.token: str | None = None
            self.refreshes = 0

        @property
        def valid(self) -> bool:
            return self.token is not None

        def refresh(self, request: object) -> None:
            self.refreshes += 1
            self.token = f"adc-token-{self.refreshes}"

    credentials = FakeCredentials()
    looked_up: list[int] = []

    def default_credentials() -> FakeCredentials:
        looked_up.append(1)
        return credentials

    monkeypatch.setattr(vertex, "_default_credentials", default_credentials)
    fake = FakeService(VERTEX)
    mock_api.post(VERTEX.url).mock(side_effect=fake)
    async with vertex_client(
        batch_size=2, max_concurrency=4, limits=Limits(min_batch_size=2)
    ) as client:
        await client.score(QUERY, [f"d{i}" for i in range(8)])
    assert looked_up == [1]
    assert credentials.refreshes == 1
    assert {headers["authorization"] for headers in fake.headers} == {"Bearer adc-token-1"}
    assert len(fake.bodies) == 4


async def test_vertex_error_shape(mock_api: respx.MockRouter) -> None:
    status, body, _, message = VERTEX.error
    mock_api.post(VERTEX.url).mock(return_value=json_response(body, status))
    async with vertex_client(api_key=TOKEN, max_retries=0) as client:
        with pytest.raises(RerankError) as caught:
            await client.score(QUERY, ["a"])
    assert type(caught.value).__name__ == "AuthenticationError"
    assert message in str(caught.value)
    assert json.dumps(body)  # the body is JSON as Google sends it


async def test_bedrock_without_botocore_names_the_extra(
    mock_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An import of a module mapped to None raises ImportError: botocore "not installed".
    for name in ("botocore", "botocore.session", "botocore.auth", "botocore.awsrequest"):
        monkeypatch.setitem(sys.modules, name, None)
    from rerank_async.providers import BedrockProvider

    route = mock_api.post(BEDROCK.url).mock(return_value=json_response({}))
    async with bedrock_client(provider=BedrockProvider(region="us-west-2")) as client:
        with pytest.raises(RerankError, match=r"pip install 'rerank-async\[bedrock\]'"):
            await client.score(QUERY, ["a"])
    assert not route.called
