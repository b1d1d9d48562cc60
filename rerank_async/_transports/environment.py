"""What the environment says about connections: read once per client, the same for each engine.

With ``trust_env=True`` (the default, httpx's name and meaning) both engines follow httpx's
rules, through httpx's own functions, so that they agree by construction:

- proxies: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``, in upper or
  lower case (urllib's ``getproxies``), matched against the endpoint as httpx matches its
  mounts (``NO_PROXY`` entries: hosts, ``.domain`` suffixes, IP addresses, ``*``);
  credentials in the proxy URL are sent as ``Proxy-Authorization`` and redacted from
  every error;
- TLS trust: certifi's bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set
  (``httpx.create_ssl_context``); one context per setting, shared by the clients.

aiohttp's own ``trust_env`` differs (it ignores ``ALL_PROXY``, reads ``.netrc``, trusts the
OS store, and looks the proxy up in a worker thread on every request), so its session
runs with ``trust_env=False`` and is given what is read here. With ``trust_env=False``
nothing is read: no proxy, certifi's bundle.
"""

from __future__ import annotations

import base64
import functools
import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import httpx
from httpx._utils import URLPattern, get_environment_proxies

__all__ = ["Environment", "read_environment"]


@dataclass(frozen=True, slots=True)
class Environment:
    """The proxy and the TLS trust one client's requests use.

    Attributes:
        proxy: The proxy URL for the endpoint (credentials included), or ``None``.
        ssl_context: The certificates a server is checked against.
    """

    proxy: str | None = field(repr=False)
    ssl_context: ssl.SSLContext

    @property
    def proxy_scheme(self) -> str | None:
        """``"http"``, ``"https"``, ``"socks5"``...; ``None`` without a proxy."""
        return None if self.proxy is None else urlsplit(self.proxy).scheme.lower()

    def proxy_secrets(self) -> tuple[str, ...]:
        """The proxy's password and its ``Proxy-Authorization`` token, for redaction."""
        if self.proxy is None:
            return ()
        parts = urlsplit(self.proxy)
        if parts.password is None:
            return ()
        user, password = unquote(parts.username or ""), unquote(parts.password)
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return (password, token)


def read_environment(url: str, *, trust_env: bool) -> Environment:
    """The proxy and TLS trust for requests to ``url``, by httpx's rules.

    A SOCKS or HTTPS proxy is for the httpx engine only (``engines.py``), which raises
    httpx's own ``ImportError`` when ``socksio`` is missing, as httpx itself does.
    """
    if not trust_env:
        return Environment(proxy=None, ssl_context=_ssl_context(None, None))
    proxy = _proxy_for(_origin(url))
    return Environment(
        proxy=proxy,
        ssl_context=_ssl_context(
            os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
        ),
    )


def _origin(url: str) -> httpx.URL:
    """``url``'s scheme, host and port: all that proxy rules match on.

    Only those, because a URL may end in a method suffix that is no port (Vertex's
    ``...:rank`` on a bare host) and that httpx would refuse to parse.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return httpx.URL(scheme=parts.scheme, host=parts.hostname or "", port=port)


def _proxy_for(url: httpx.URL) -> str | None:
    # httpx's own lookup (httpx.AsyncClient._transport_for_url): the mounts sorted by
    # priority, the first that matches wins; a NO_PROXY mount maps to None.
    mounts = sorted(
        ((URLPattern(pattern), proxy) for pattern, proxy in get_environment_proxies().items()),
        key=lambda mount: mount[0],
    )
    for pattern, proxy in mounts:
        if pattern.matches(url):
            return proxy
    return None


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # httpx.create_ssl_context reads the same variables (when trust_env) the same way;
    # building a context loads the whole bundle (about 10 ms), so it is made once.
    if cafile is not None:
        return ssl.create_default_context(cafile=cafile)
    if capath is not None:
        return ssl.create_default_context(capath=capath)
    return httpx.create_ssl_context(trust_env=False)
