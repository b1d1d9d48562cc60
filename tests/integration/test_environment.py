"""The environment, honoured alike by both engines (docs/lifecycle.md): proxies and TLS trust.

Each case runs on both engines and on "auto", through a real loopback forward proxy that
records what it was asked to forward, and asserts the same outcome for all three.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rerank_async import APIConnectionError, APIStatusError, RerankClient
from rerank_async.server import RunningServer

from .loopback import ForwardProxy, answer_scores, forward_proxy, self_signed_certificate, serving

pytestmark = pytest.mark.integration

ENGINES = pytest.mark.parametrize("engine", ["httpx", "aiohttp", "auto"])
PROXY_VARIABLES = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUEST_METHOD",
)  # fmt: skip
QUERY = "solar"
DOCUMENTS = ["a", "b", "c"]
SECRET = "s3cr/et:p@ss"  # characters that URLs, JSON and base64 each spell differently


@pytest.fixture(autouse=True)
def _no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with forward_proxy() as running:
        yield running


def environment_cases(proxy_url: str) -> list[tuple[str, dict[str, str], bool]]:
    """(name, variables, goes through the proxy) for a plain-http endpoint on 127.0.0.1."""
    return [
        ("HTTP_PROXY", {"HTTP_PROXY": proxy_url}, True),
        ("http_proxy", {"http_proxy": proxy_url}, True),
        ("ALL_PROXY", {"ALL_PROXY": proxy_url}, True),
        ("all_proxy", {"all_proxy": proxy_url}, True),
        ("HTTPS_PROXY only", {"HTTPS_PROXY": proxy_url}, False),
        ("NO_PROXY=127.0.0.1", {"HTTP_PROXY": proxy_url, "NO_PROXY": "127.0.0.1"}, False),
        ("no_proxy=127.0.0.1", {"HTTP_PROXY": proxy_url, "no_proxy": "127.0.0.1"}, False),
        ("NO_PROXY=*", {"ALL_PROXY": proxy_url, "NO_PROXY": "*"}, False),
        ("NO_PROXY elsewhere", {"HTTP_PROXY": proxy_url, "NO_PROXY": "example.com"}, True),
        ("none", {}, False),
    ]


CASE_NAMES = [name for name, _, _ in environment_cases("http://x")]


@ENGINES
@pytest.mark.parametrize("case", CASE_NAMES)
async def test_proxy_variables_are_honoured_alike(
    engine: str,
    case: str,
    proxy: ForwardProxy,
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, variables, through_proxy = next(c for c in environment_cases(proxy.url) if c[0] == case)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    async with RerankClient(
        base_url=server.base_url,
        http_client=engine,  # type: ignore[arg-type]
    ) as client:
        scores = await client.score(QUERY, DOCUMENTS)
    assert len(scores) == len(DOCUMENTS)
    assert bool(proxy.seen) is through_proxy
    if through_proxy:
        assert proxy.seen[0].method == "POST"
        assert proxy.seen[0].target.startswith(server.url + "/")  # absolute-form, as a proxy gets


@ENGINES
async def test_trust_env_false_ignores_the_proxy(
    engine: str, proxy: ForwardProxy, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    async with RerankClient(
        base_url=server.base_url,
        http_client=engine,  # type: ignore[arg-type]
        trust_env=False,
    ) as client:
        assert client.options.trust_env is False
        assert len(await client.score(QUERY, DOCUMENTS)) == len(DOCUMENTS)
    assert proxy.seen == []


def with_credentials(proxy_url: str) -> str:
    return proxy_url.replace("http://", "http://user:s3cr%2Fet%3Ap%40ss@")


@ENGINES
async def test_proxy_credentials_are_sent_to_the_proxy_only(
    engine: str, proxy: ForwardProxy, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", with_credentials(proxy.url))
    async with RerankClient(
        base_url=server.base_url,
        http_client=engine,  # type: ignore[arg-type]
    ) as client:
        await client.score(QUERY, DOCUMENTS)
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert proxy.seen[0].headers["proxy-authorization"] == f"Basic {token}"


@ENGINES
async def test_proxy_credentials_are_redacted_from_errors(
    engine: str, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    with forward_proxy(refuse_with_407=True) as hostile:
        monkeypatch.setenv("HTTP_PROXY", with_credentials(hostile.url))
        async with RerankClient(
            base_url=server.base_url,
            http_client=engine,  # type: ignore[arg-type]
            max_retries=0,
        ) as client:
            with pytest.raises(APIStatusError) as raised:
                await client.score(QUERY, DOCUMENTS)
    error = raised.value
    assert error.status_code == 407
    for text in (str(error), repr(error.args), str(error.body), error.server_message):
        assert SECRET not in text
        assert token not in text
        assert "s3cr%2Fet" not in text


@ENGINES
async def test_a_proxy_that_refuses_connections_is_a_typed_error_without_its_password(
    engine: str, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with forward_proxy() as gone:
        url = gone.url
    monkeypatch.setenv("HTTP_PROXY", with_credentials(url))  # nothing listens there now
    async with RerankClient(
        base_url=server.base_url,
        http_client=engine,  # type: ignore[arg-type]
        max_retries=0,
    ) as client:
        with pytest.raises(APIConnectionError) as raised:
            await client.score(QUERY, DOCUMENTS)
    assert SECRET not in str(raised.value)
    assert "s3cr%2Fet" not in str(raised.value)


def test_a_socks_proxy_goes_through_httpx_or_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    try:
        import socksio  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="socksio"):
            RerankClient(base_url="http://127.0.0.1:9/v1")
    else:  # pragma: no cover - socksio is not among the test dependencies
        assert RerankClient(base_url="http://127.0.0.1:9/v1").http_engine == "httpx"
    with pytest.raises(ValueError, match="cannot use the socks5 proxy"):
        RerankClient(base_url="http://127.0.0.1:9/v1", http_client="aiohttp")
    RerankClient(base_url="http://127.0.0.1:9/v1", http_client="aiohttp", trust_env=False)


# -- TLS trust: certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR, on both engines ----------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    directory = tmp_path_factory.mktemp("tls")
    certificate, key = self_signed_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    with serving(answer_scores, ssl_context=context) as port:
        yield f"https://127.0.0.1:{port}/v1", certificate


def hashed_directory(certificate: Path, directory: Path) -> Path:
    """A directory in OpenSSL's SSL_CERT_DIR layout (``<subject hash>.0``)."""
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(certificate)],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    directory.mkdir(exist_ok=True)
    shutil.copy(certificate, directory / f"{subject_hash}.0")
    return directory


@ENGINES
@pytest.mark.parametrize("setting", ["certifi", "SSL_CERT_FILE", "SSL_CERT_DIR", "ignored"])
async def test_tls_trust_is_the_same_on_every_engine(
    engine: str,
    setting: str,
    tls_server: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base_url, certificate = tls_server
    if setting in ("SSL_CERT_FILE", "ignored"):
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    if setting == "SSL_CERT_DIR":
        monkeypatch.setenv("SSL_CERT_DIR", str(hashed_directory(certificate, tmp_path / "certs")))
    trusted = setting in ("SSL_CERT_FILE", "SSL_CERT_DIR")
    async with RerankClient(
        base_url=base_url,
        http_client=engine,  # type: ignore[arg-type]
        max_retries=0,
        trust_env=setting != "ignored",
    ) as client:
        if trusted:
            assert await client.score(QUERY, DOCUMENTS) == [0.5, 0.5, 0.5]
        else:
            with pytest.raises(APIConnectionError, match=r"(?i)certificate"):
                await client.score(QUERY, DOCUMENTS)
