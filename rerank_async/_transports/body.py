"""Bounded response bodies: a size limit scaled to the batch, enforced while reading.

A leaf: it imports nothing from the package; both engines feed it raw bytes.

Neither engine bounds a body by default: httpx and aiohttp buffer whatever
arrives, and their decoders inflate a chunk without an output limit (a 64 KiB
gzip chunk can become 64 MiB). So the engines hand over the bytes as they come
off the socket, still compressed, and ``BodyReader`` inflates them with an
output cap (zlib's ``max_length``, as urllib3 2 does), refusing the body as
soon as the decoded size passes the limit.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = [
    "ACCEPT_ENCODING",
    "BodyReader",
    "BodyTooLarge",
    "UnsupportedEncoding",
    "response_size_limit",
]

# What the client asks for: the encodings ``BodyReader`` can inflate with a cap.
ACCEPT_ENCODING: Final = "gzip, deflate"

# Room for any envelope: ids, usage, metadata, an HTML error page from a proxy.
_BASE_BYTES: Final = 1 << 20
# One result item, pretty-printed: {"index": 12345, "relevance_score": 0.123..., ...}.
_BYTES_PER_DOCUMENT: Final = 1024
# Documents echoed back (Cohere/Jina ``return_documents``, or a 422 that quotes
# its input): JSON-escaping the request's UTF-8 as \\uXXXX at most triples it;
# one more copy for servers that echo both the text and an error's input.
_ECHO_FACTOR: Final = 4

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS


def response_size_limit(*, n_documents: int, request_bytes: int) -> int:
    """The most bytes (after decompression) a sane answer to a batch can have.

    Scales with the batch: 1 MiB, plus 1 KiB per document, plus four times the
    request body (so that an echo of every document still fits). A
    2-document request allows about 1 MiB; 1,000 documents of 2 KB about 10 MiB.

    Args:
        n_documents: Documents in the batch.
        request_bytes: Size of the request body.
    """
    return _BASE_BYTES + _BYTES_PER_DOCUMENT * n_documents + _ECHO_FACTOR * request_bytes


class BodyTooLarge(Exception):  # noqa: N818  # an outcome the transport maps to a typed error
    """The decoded body passed the limit; reading stopped there."""

    def __init__(self, limit: int, received: int) -> None:
        super().__init__(f"response body exceeds {limit} bytes (stopped after {received})")
        self.limit = limit
        self.received = received


class UnsupportedEncoding(ValueError):  # noqa: N818
    """A ``Content-Encoding`` this reader cannot inflate with a cap."""

    def __init__(self, encoding: str) -> None:
        super().__init__(
            f"unsupported Content-Encoding {encoding!r} (the client asks for {ACCEPT_ENCODING})"
        )
        self.encoding = encoding


class BodyReader:
    """Collects a body chunk by chunk, inflating it with a cap; raises past ``limit``.

    Args:
        limit: Most decoded bytes accepted.
        content_encoding: The response's ``Content-Encoding`` header, if any.

    Raises:
        UnsupportedEncoding: For an encoding other than identity, gzip or deflate,
            or more than one layered.
    """

    __slots__ = ("_chunks", "_decoder", "_deflate_probe", "_limit", "_received")

    def __init__(self, limit: int, content_encoding: str | None = None) -> None:
        self._limit = limit
        self._received = 0
        self._chunks: list[bytes] = []
        self._decoder: zlib._Decompress | None = None
        self._deflate_probe = False
        layers = [
            part.strip().lower()
            for part in (content_encoding or "").split(",")
            if part.strip() and part.strip().lower() != "identity"
        ]
        if len(layers) > 1:
            raise UnsupportedEncoding(content_encoding or "")
        if layers:
            if layers[0] in ("gzip", "x-gzip"):
                self._decoder = zlib.decompressobj(_GZIP_WBITS)
            elif layers[0] == "deflate":
                # RFC 9110 says zlib-wrapped; some servers send raw deflate. Try
                # zlib first and fall back on the first chunk (httpx does the same).
                self._decoder = zlib.decompressobj()
                self._deflate_probe = True
            else:
                raise UnsupportedEncoding(layers[0])

    @property
    def received(self) -> int:
        """Decoded bytes accepted so far."""
        return self._received

    def feed(self, chunk: bytes) -> None:
        """Add raw bytes from the socket.

        Raises:
            BodyTooLarge: The decoded body passed the limit.
            ValueError: The compressed data is corrupt.
        """
        if not chunk:
            return
        if self._decoder is None:
            self._accept(chunk)
            return
        self._inflate(chunk)

    def _inflate(self, chunk: bytes) -> None:
        decoder = self._decoder
        assert decoder is not None  # only called with a decoder
        data = chunk
        while data:
            room = self._limit - self._received
            try:
                # One byte more than the room: getting it proves the body too large
                # without ever holding more than the limit.
                out = decoder.decompress(data, room + 1)
            except zlib.error as error:
                if self._deflate_probe and self._received == 0:
                    self._deflate_probe = False
                    self._decoder = decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise ValueError(f"corrupt compressed response body: {error}") from error
            self._deflate_probe = False
            self._accept(out)
            data = decoder.unconsumed_tail
            if decoder.eof:
                break

    def _accept(self, data: bytes) -> None:
        if not data:
            return
        self._received += len(data)
        if self._received > self._limit:
            self._chunks.clear()
            raise BodyTooLarge(self._limit, self._received)
        self._chunks.append(data)

    def finish(self) -> bytes:
        """The whole decoded body.

        Raises:
            BodyTooLarge: The decoder's last output passed the limit.
            ValueError: The compressed data ended early.
        """
        if self._decoder is not None:
            try:
                self._accept(self._decoder.flush())
            except zlib.error as error:  # pragma: no cover - flush rarely fails after decompress
                raise ValueError(f"corrupt compressed response body: {error}") from error
        if len(self._chunks) == 1:
            return self._chunks[0]
        return b"".join(self._chunks)
