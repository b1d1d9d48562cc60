"""A small hostile HTTP server on loopback, written on raw sockets so every byte is ours.

The first path segment picks the behaviour: ``{server.url}/{behaviour}/v1`` is
a ``base_url`` whose requests (``POST .../{behaviour}/v1/{model}``) get:

- ``ok``: a valid DeepInfra answer for the documents sent;
- ``echo-{status}``: that status, with the request's ``Authorization`` (and the
  key alone) echoed in the body in several spellings and in response headers;
- ``big``: a 200 whose body is 50 MB (streamed, never held in memory);
- ``gzip-bomb``: a 200 with ``Content-Encoding: gzip``, 200 KB that inflate to 200 MB;
- ``trickle``: a 200 with ``Content-Length: 1000`` sending one byte per 100 ms;
- ``endless``: a chunked 200 that never ends (1 KB per 50 ms);
- ``poison-{k}-{tag}``: scores every document ``crc_score(text)``, except that the
  first ``k`` requests carrying a document that starts with ``POISON`` get a 500;
- ``brotli``: a 200 with ``Content-Encoding: br`` (which the client never asks for);
- ``corrupt-gzip-503``: a 503 whose gzip body is not gzip;
- ``drop``: closes the connection without an answer;
- ``duplicate-keys``: a 200 whose JSON has two ``scores`` keys (the last one valid);
- ``redirect-{status}``: that 3xx status, ``Location`` pointing at this server's ``ok``
  route (a client that followed it would send the key there: the test counts requests);
- ``hang``: answers nothing for 30 s.

Every request's method, raw path and headers are recorded in ``requests``.
Every loop is bounded in time and stops when the client goes away.
"""

from __future__ import annotations

import asyncio
import html
import json
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Final
from urllib.parse import quote

_MAX_SECONDS: Final = 30.0
BIG_BYTES: Final = 50 * 1024 * 1024
BOMB_INFLATED_BYTES: Final = 200 * 1024 * 1024


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


def crc_score(document: str) -> float:
    """The score ``poison-*`` gives a document: a function of its text alone."""
    return zlib.crc32(document.encode()) / 2**32


@dataclass
class HostileServer:
    host: str
    port: int
    requests: list[SeenRequest] = field(default_factory=list)
    # Documents of every request, by behaviour, for the poison routes.
    documents: dict[str, list[list[str]]] = field(default_factory=dict)
    poison_failures: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, behaviour: str) -> str:
        return f"{self.url}/{behaviour}/v1"


@cache
def gzip_bomb() -> bytes:
    """Gzip of 200 MB of zeros (about 200 KB), built without holding 200 MB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block) for _ in range(BOMB_INFLATED_BYTES // len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} Hostile"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _echo_body(authorization: str, key: str) -> bytes:
    spelled = {
        "raw": key,
        "header": authorization,
        "repr": repr(authorization.encode()),
        "url": quote(key, safe=""),
        "html": html.escape(key),
    }
    text = json.dumps(
        {
            "error": {"message": f"invalid credentials {authorization}"},
            "echo": spelled,
            "headers": {"authorization": authorization},
        }
    )
    # One more: every character \u-escaped, as some JSON encoders write non-ASCII.
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    return text[:-1].encode() + f', "escaped": "{escaped}"}}'.encode()


class _Handler:
    def __init__(self, server: HostileServer) -> None:
        self.server = server

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(self._serve(reader, writer), _MAX_SECONDS)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.server.requests.append(SeenRequest(method, path, headers))
        behaviour = path.split("/")[1]
        authorization = headers.get("authorization", "")
        key = authorization.removeprefix("Bearer ")
        if behaviour == "ok":
            documents = json.loads(body)["documents"]
            payload = json.dumps({"scores": [0.5] * len(documents)}).encode()
            writer.write(_head(200, _plain(len(payload))) + payload)
        elif behaviour.startswith("poison-"):
            documents = json.loads(body)["documents"]
            self.server.documents.setdefault(behaviour, []).append(documents)
            allowed = int(behaviour.split("-")[1])
            failed = self.server.poison_failures.get(behaviour, 0)
            if failed < allowed and any(d.startswith("POISON") for d in documents):
                self.server.poison_failures[behaviour] = failed + 1
                payload = b'{"error": "poisoned batch"}'
                writer.write(_head(500, _plain(len(payload))) + payload)
            else:
                scores = [crc_score(document) for document in documents]
                payload = json.dumps({"scores": scores}).encode()
                writer.write(_head(200, _plain(len(payload))) + payload)
        elif behaviour.startswith("echo-"):
            status = int(behaviour.removeprefix("echo-"))
            payload = _echo_body(authorization, key)
            writer.write(
                _head(status, {**_plain(len(payload)), "X-Request-Id": key, "X-Echo": key})
                + payload
            )
        elif behaviour == "big":
            await self._stream(writer, BIG_BYTES, b'{"scores": [' + b" " * 65_000)
        elif behaviour == "gzip-bomb":
            bomb = gzip_bomb()
            writer.write(_head(200, {**_plain(len(bomb)), "Content-Encoding": "gzip"}))
            for start in range(0, len(bomb), 65_536):
                writer.write(bomb[start : start + 65_536])
                await writer.drain()
        elif behaviour == "trickle":
            writer.write(_head(200, _plain(1000)))
            for _ in range(1000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.1)
        elif behaviour == "endless":
            writer.write(
                _head(200, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
            )
            while True:
                writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        elif behaviour in ("brotli", "corrupt-gzip-503"):
            status, encoding = (200, "br") if behaviour == "brotli" else (503, "gzip")
            payload = b"\x1b\x03\x00not really compressed"
            writer.write(
                _head(status, {**_plain(len(payload)), "Content-Encoding": encoding}) + payload
            )
        elif behaviour == "drop":
            return
        elif behaviour == "duplicate-keys":
            n_documents = len(json.loads(body)["documents"])
            first, last = json.dumps([0.1] * n_documents), json.dumps([0.9] * n_documents)
            payload = f'{{"scores": {first}, "scores": {last}}}'.encode()
            writer.write(_head(200, _plain(len(payload))) + payload)
        elif behaviour.startswith("redirect-"):
            status = int(behaviour.removeprefix("redirect-"))
            location = f"{self.server.url}/ok/v1{path.split('/v1', 1)[1]}"
            payload = b"moved"
            writer.write(_head(status, {**_plain(len(payload)), "Location": location}) + payload)
        elif behaviour == "hang":
            await asyncio.sleep(_MAX_SECONDS)
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, size: int, chunk: bytes) -> None:
        writer.write(_head(200, _plain(size)))
        sent = 0
        while sent < size:
            piece = chunk[: size - sent]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()


def _plain(length: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Content-Length": str(length),
        "Connection": "close",
    }


@contextmanager
def hostile_server() -> Iterator[HostileServer]:
    """Run the server in a thread with its own event loop; stop it on exit."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        server_state = HostileServer("127.0.0.1", 0)
        holder["state"] = server_state
        server = await asyncio.start_server(_Handler(server_state), "127.0.0.1", 0)
        server_state.port = server.sockets[0].getsockname()[1]
        holder["server"] = server
        started.set()
        async with server:
            await server.serve_forever()

    def run() -> None:
        asyncio.set_event_loop(loop)
        # Handlers cancelled at shutdown are expected; nothing to report.
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

    thread = threading.Thread(target=run, name="hostile-server", daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("hostile server did not start")
    state = holder["state"]
    assert isinstance(state, HostileServer)
    try:
        yield state
    finally:

        def stop() -> None:
            for task in asyncio.all_tasks(loop):
                task.cancel()

        loop.call_soon_threadsafe(stop)
        thread.join(10)
