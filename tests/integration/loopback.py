"""Small loopback servers on raw asyncio streams: a recording forward proxy and a TLS reranker.

Both run in a thread with their own event loop, bounded in time per connection, and stop
when the context manager exits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

_MAX_SECONDS: Final = 10.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    target: str
    headers: dict[str, str]


async def read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, target, headers, body


def response(status: int, payload: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status} Loopback\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + payload


def scores_for(body: bytes) -> bytes:
    documents = json.loads(body)["documents"]
    return json.dumps({"scores": [0.5] * len(documents)}).encode()


@dataclass
class ForwardProxy:
    """A plain-HTTP forward proxy that records every request it is asked to forward.

    With ``refuse_with_407`` it answers 407 instead, echoing the ``Proxy-Authorization``
    header and the decoded password in its body (a hostile proxy, for redaction tests).
    """

    host: str = "127.0.0.1"
    port: int = 0
    seen: list[SeenRequest] = field(default_factory=list)
    refuse_with_407: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, headers, body = await read_request(reader)
        self.seen.append(SeenRequest(method, target, headers))
        if self.refuse_with_407:
            authorization = headers.get("proxy-authorization", "")
            decoded = base64.b64decode(authorization.removeprefix("Basic ") or b"").decode()
            echo = json.dumps({"error": f"bad proxy credentials {authorization} ({decoded})"})
            writer.write(response(407, echo.encode()))
            return
        parts = urlsplit(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(parts.hostname, parts.port)
        forwarded = {
            name: value
            for name, value in headers.items()
            if not name.startswith("proxy-") and name != "connection"
        }
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in forwarded.items()
        )
        upstream_writer.write((head + "Connection: close\r\n\r\n").encode("latin-1") + body)
        await upstream_writer.drain()
        writer.write(await upstream_reader.read())
        upstream_writer.close()


@contextmanager
def serving(handler: Handler, *, ssl_context: ssl.SSLContext | None = None) -> Iterator[int]:
    """Serve ``handler`` on 127.0.0.1 in a thread; yields the port."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, int] = {}

    async def bounded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(handler(reader, writer), _MAX_SECONDS)
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(bounded, "127.0.0.1", 0, ssl=ssl_context)
        holder["port"] = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await server.serve_forever()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(lambda _loop, _context: None)
        try:
            loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    thread = threading.Thread(target=run, name="loopback-server", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("loopback server did not start")
    try:
        yield holder["port"]
    finally:

        def stop() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        loop.call_soon_threadsafe(stop)
        thread.join(10)


@contextmanager
def forward_proxy(*, refuse_with_407: bool = False) -> Iterator[ForwardProxy]:
    proxy = ForwardProxy(refuse_with_407=refuse_with_407)
    with serving(proxy.handle) as port:
        proxy.port = port
        yield proxy


async def answer_scores(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _method, _target, _headers, body = await read_request(reader)
    writer.write(response(200, scores_for(body)))


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1 and its key, made by the openssl command."""
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(certificate),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return certificate, key
