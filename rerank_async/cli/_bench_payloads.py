"""What each bench call sends: real queries and documents from a file, or synthetic ones.

``--documents FILE`` reads the bulk command's input (JSONL lines or Parquet rows with
``query`` and ``documents``) through the bulk readers, so one file serves both commands.
Without it, documents are synthetic, their lengths drawn from ``--doc-tokens``. Calls take
the payloads in turn. Sizes are reported per call: the request bodies' bytes, encoded by the
target's own provider, and the tokens the client's budget estimates (about 4 characters per
token, query and document of each pair).
"""

from __future__ import annotations

import argparse
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import anyio

from .._batching import plan_batches
from .._many import RerankRequest
from ..providers import Provider
from ._bulk_input import BadLine, parse_line
from ._common import MissingExtraError
from ._demo import synthetic_corpus

__all__ = [
    "DocTokens",
    "Payload",
    "PayloadSizes",
    "load_payloads",
    "parse_doc_tokens",
    "payload_sizes",
    "synthetic_payloads",
]

# Distinct synthetic calls; the bench cycles through them, so the server cannot cache one.
_SYNTHETIC_CALLS: Final = 16
# Records read from --documents at most: enough variety for any run, bounded memory.
MAX_FILE_RECORDS: Final = 10_000
_CHARS_PER_TOKEN: Final = 4  # the providers' estimate_tokens, for building documents
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")


@dataclass(frozen=True, slots=True)
class Payload:
    """One call's query and documents."""

    query: str
    documents: list[str]


@dataclass(frozen=True, slots=True)
class DocTokens:
    """A length distribution for synthetic documents, in tokens.

    Attributes:
        kind: ``"fixed"``, ``"uniform"`` (``low``..``high``) or ``"lognormal"`` (median
            ``low``, shape ``sigma``).
        text: The flag's value as given, for reports.
    """

    kind: str
    low: int
    high: int = 0
    sigma: float = 0.0
    text: str = ""

    def draw(self, rng: random.Random) -> int:
        """One document's length in tokens."""
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        if self.kind == "lognormal":
            return max(1, round(rng.lognormvariate(math.log(self.low), self.sigma)))
        return self.low


def parse_doc_tokens(text: str) -> DocTokens:
    """``"200"``, ``"50-400"`` or ``"lognormal:200:0.6"`` (shape 0.5 when left out).

    Raises:
        argparse.ArgumentTypeError: Not one of those forms, or a length below 1.
    """
    spec = text.strip().lower()
    if match := re.fullmatch(r"(\d+)", spec):
        tokens = DocTokens("fixed", int(match[1]), text=text)
    elif match := re.fullmatch(r"(\d+)\s*-\s*(\d+)", spec):
        tokens = DocTokens("uniform", int(match[1]), int(match[2]), text=text)
    elif match := re.fullmatch(r"lognormal:(\d+)(?::(\d*\.?\d+))?", spec):
        sigma = float(match[2]) if match[2] else 0.5
        tokens = DocTokens("lognormal", int(match[1]), sigma=sigma, text=text)
    else:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected N, LOW-HIGH or lognormal:MEDIAN[:SIGMA] (tokens per document)"
        )
    if tokens.low < 1 or (tokens.kind == "uniform" and tokens.high < tokens.low):
        raise argparse.ArgumentTypeError(f"{text!r}: lengths must be >= 1 and LOW <= HIGH")
    return tokens


def synthetic_payloads(
    candidates: int, doc_tokens: DocTokens | None, *, seed: int = 11
) -> list[Payload]:
    """Distinct synthetic calls of ``candidates`` documents each.

    Without ``doc_tokens`` the documents are the demo's short sentences (about 15 tokens);
    with it, sentences are joined until each document reaches its drawn length.
    """
    corpus = synthetic_corpus(candidates * _SYNTHETIC_CALLS, _SYNTHETIC_CALLS, seed)
    if doc_tokens is None:
        return [Payload(query, documents) for query, documents in corpus]
    rng = random.Random(seed)
    sentences = [sentence for _, documents in corpus for sentence in documents]
    payloads = []
    for query, documents in corpus:
        built = []
        for _ in documents:
            chars = doc_tokens.draw(rng) * _CHARS_PER_TOKEN
            text = rng.choice(sentences)
            while len(text) < chars:
                text += " " + rng.choice(sentences)
            built.append(text[:chars].rstrip())
        payloads.append(Payload(query, built))
    return payloads


def load_payloads(path: str, candidates: int | None) -> list[Payload]:
    """The first ``MAX_FILE_RECORDS`` requests of a bulk input file, each cut to ``candidates``.

    Raises:
        ValueError: A record is not a valid request (its line or row named), or none is.
        MissingExtraError: A Parquet file without the ``parquet`` extra.
    """
    if path.lower().endswith(_PARQUET_SUFFIXES):
        records = anyio.run(_read_parquet, path)
    else:
        records = _read_jsonl(path)
    payloads = []
    for line, record in records:
        if isinstance(record, BadLine):
            raise ValueError(f"--documents {path}, record {line}: {record.message}")
        documents = list(record.documents[:candidates] if candidates else record.documents)
        if documents:
            payloads.append(Payload(record.query, documents))
    if not payloads:
        raise ValueError(f"--documents {path}: no request with documents in it")
    return payloads


_Records = list[tuple[int, RerankRequest | BadLine]]


def _read_jsonl(path: str) -> _Records:
    records: _Records = []
    with open(path, "rb") as handle:
        for line, raw in enumerate(handle, start=1):
            record = parse_line(raw, line)
            if record is not None:
                records.append((line, record))
                if len(records) >= MAX_FILE_RECORDS:
                    break
    return records


async def _read_parquet(path: str) -> _Records:
    try:
        from ._bulk_parquet_input import ParquetSource
    except ImportError as error:
        raise MissingExtraError(
            f"--documents {path} needs pyarrow: pip install 'rerank-async[parquet]' ({error})"
        ) from error
    source = ParquetSource(path, default_top_k=None)
    records: _Records = []
    try:
        async for row, record in source.records():
            if record is not None:
                records.append((row, record))
                if len(records) >= MAX_FILE_RECORDS:
                    break
    finally:
        source.close()
    return records


@dataclass(frozen=True, slots=True)
class PayloadSizes:
    """Mean size of one call's requests, over the payloads in use."""

    bytes_per_call: float
    tokens_per_call: float
    documents_per_call: float


def payload_sizes(
    payloads: Sequence[Payload], provider: Provider, model: str, batch_size: int
) -> PayloadSizes:
    """Bodies as ``provider`` encodes them, split into the fewest requests of ``batch_size``.

    The client may spread a call over more, smaller requests when slots are idle; that
    adds only each extra request's envelope.
    """
    total_bytes = total_tokens = total_documents = 0
    for payload in payloads:
        n = len(payload.documents)
        for start, stop in plan_batches(n, batch_size=batch_size, min_batch_size=batch_size,
                                        free_slots=1):  # fmt: skip
            body = provider.encode_request(model, payload.query, payload.documents[start:stop])
            total_bytes += len(body)
        query_tokens = provider.estimate_tokens(payload.query)
        total_tokens += sum(query_tokens + provider.estimate_tokens(d) for d in payload.documents)
        total_documents += n
    count = max(1, len(payloads))
    return PayloadSizes(total_bytes / count, total_tokens / count, total_documents / count)
