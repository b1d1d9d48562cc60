"""The records of ``rerank-async bulk``: what each one says, its fingerprint, and resume state.

Every output (JSONL, Parquet, Ray) writes records of the same content; this module builds
them and decides, for each input line of a rerun, whether the record already there still
answers it. Each record of a request carries a **fingerprint**: a hash of what it
answered (provider, model, instruction, query, document texts, ``top_k``, and the fields
carried from document objects). A rerun compares it with the line's own fingerprint, so
a line whose request changed under the same id is scored again, never kept stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from .._batching import rank_indices
from ._bulk_input import INVALID_LINE, LineMeta, RequestId

__all__ = [
    "DUPLICATE_ID",
    "FINGERPRINT_PREFIX",
    "DoneIds",
    "Verdict",
    "error_record",
    "fingerprint",
    "shown_ids",
    "success_record",
]

# Error types of records that come from the input rather than from a request.
DUPLICATE_ID: Final = "DuplicateId"
# The version of the fingerprint's definition, its first characters. A later definition
# gets a new prefix, so that its records read as "no fingerprint of mine" (kept, with a
# warning) rather than as "changed" (scored again).
FINGERPRINT_PREFIX: Final = "b2v1:"


def fingerprint(
    *,
    provider: str,
    model: str,
    instruction: str | None,
    query: str,
    documents: Sequence[str],
    top_k: int | None = None,
    fields: Sequence[dict[str, Any]] | None = None,
) -> str:
    """The fingerprint of one request: ``b2v1:`` and a 128-bit BLAKE2b of its canonical JSON.

    The JSON is ASCII (a lone surrogate is escaped, never an encoding error), compact,
    with sorted keys, of ``[provider, model, instruction, query, documents, top_k,
    fields]``: every input a record's content depends on.
    """
    canonical = json.dumps(
        [provider, model, instruction, query, list(documents), top_k, fields],
        ensure_ascii=True,
        separators=(",", ":"),
        sort_keys=True,
        default=str,  # a Parquet struct's date or bytes field: stable text, never a crash
    )
    digest = hashlib.blake2b(canonical.encode("ascii"), digest_size=16).hexdigest()
    return FINGERPRINT_PREFIX + digest


def success_record(
    request_id: RequestId,
    scores: list[float],
    *,
    top_k: int | None,
    meta: LineMeta | None,
    input_tokens: int | None,
    fingerprint: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The output record of a request that succeeded.

    ``model`` names the model that scored it (a fallback's, when the line fell back).

    ``ranking`` lists input indices best first (ties: lower index first), cut to
    ``top_k``; when the documents were objects, ``documents`` lists their other fields
    in the same order, each with its ``index`` and ``score``.
    """
    ranking = rank_indices(scores, top_k)
    # "id" then "fingerprint" first: OutputFile's fast scan relies on this order.
    record: dict[str, Any] = {"id": request_id}
    if fingerprint is not None:
        record["fingerprint"] = fingerprint
    record["scores"] = scores
    record["ranking"] = ranking
    if meta is not None and meta.fields is not None:
        fields = meta.fields
        record["documents"] = [{"index": i, "score": scores[i], **fields[i]} for i in ranking]
    if input_tokens is not None:
        record["input_tokens"] = input_tokens
    if model is not None:
        record["model"] = model
    return record


def error_record(
    request_id: RequestId,
    *,
    type_name: str,
    message: str,
    line: int | None,
    status_code: int | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """The output record of a request that failed or a line that was malformed.

    A malformed line has no request, hence no fingerprint.
    """
    error: dict[str, Any] = {"type": type_name, "message": message}
    if status_code is not None:
        error["status_code"] = status_code
    if line is not None:
        error["line"] = line
    # "id", "fingerprint", then "error": OutputFile's fast scan relies on this order.
    record: dict[str, Any] = {"id": request_id}
    if fingerprint is not None:
        record["fingerprint"] = fingerprint
    record["error"] = error
    return record


class Verdict(Enum):
    """What a rerun does with one input line, given the output's records."""

    RUN = "run"  # no record answers it
    SKIP = "skip"  # its record still answers it (or has no fingerprint to say otherwise)
    STALE = "stale"  # its record answered another request under the same id


@dataclass
class DoneIds:
    """What an existing output already holds, for resuming.

    Attributes:
        ok: Id -> fingerprint of its success record (``None``: written without one).
        failed: Id -> fingerprint of its error record (``None`` for a malformed line,
            and for a record written without one).
        duplicate_lines: Input lines already reported as duplicate ids (their ids are
            in neither map).
        records: Records in the output.
        error_records: Error records in the output.
        unfingerprinted: Records of requests written without a fingerprint (by a
            version before fingerprints): resumed by id alone.
        repeated: Ids with more than one record (a rescoring run stopped before it
            removed the old ones); the last one counts.
    """

    ok: dict[RequestId, str | None] = field(default_factory=dict)
    failed: dict[RequestId, str | None] = field(default_factory=dict)
    duplicate_lines: set[int] = field(default_factory=set)
    records: int = 0
    error_records: int = 0
    unfingerprinted: int = 0
    repeated: set[RequestId] = field(default_factory=set)

    def add(
        self,
        request_id: RequestId,
        fingerprint: str | None,
        *,
        error_type: str | None,
        line: object = None,
    ) -> None:
        """Count one record, read in file order: a later record of an id replaces it."""
        self.records += 1
        if fingerprint is not None and not fingerprint.startswith(FINGERPRINT_PREFIX):
            fingerprint = None  # another version's definition: as good as none
        if error_type is None:
            self._put(self.ok, self.failed, request_id, fingerprint)
            self.unfingerprinted += fingerprint is None
            return
        self.error_records += 1
        if error_type == DUPLICATE_ID and isinstance(line, int):
            # Done is that line, not the id: the first line with the id may still have
            # been in flight when the run stopped.
            self.duplicate_lines.add(line)
            return
        self._put(self.failed, self.ok, request_id, fingerprint)
        # A malformed line's record has no request to fingerprint; a request's does.
        self.unfingerprinted += fingerprint is None and error_type != INVALID_LINE

    def _put(
        self,
        into: dict[RequestId, str | None],
        other: dict[RequestId, str | None],
        request_id: RequestId,
        fingerprint: str | None,
    ) -> None:
        if request_id in into or other.pop(request_id, _ABSENT) is not _ABSENT:
            self.repeated.add(request_id)
        into[request_id] = fingerprint

    def verdict(self, request_id: RequestId, fingerprint: str | None) -> Verdict:
        """Whether the line with this id (and this fingerprint, ``None`` if malformed) runs.

        The one place that decides: a record whose fingerprint differs from the line's
        is stale; a record without one (an older version's, or a malformed line's, or
        one of another fingerprint version) is trusted by its id, as before
        fingerprints.
        """
        stored = self.ok.get(request_id, _ABSENT)
        if stored is _ABSENT:
            stored = self.failed.get(request_id, _ABSENT)
        if stored is _ABSENT:
            return Verdict.RUN
        if stored is None or stored == fingerprint:
            return Verdict.SKIP
        return Verdict.STALE

    def forget(self, request_id: RequestId) -> bool:
        """Drop an id once its line was read (the run's own set of seen ids holds it now).

        Returns:
            Whether its record was an error record.
        """
        if self.ok.pop(request_id, _ABSENT) is not _ABSENT:
            return False
        return self.failed.pop(request_id, _ABSENT) is not _ABSENT


_ABSENT: Final[Any] = object()


def shown_ids(ids: Sequence[RequestId], total: int) -> str:
    """Up to the first ten ids as JSON, and how many more, for one line of text."""
    shown = ", ".join(json.dumps(i, ensure_ascii=False) for i in ids[:10])
    return shown + (f" and {total - len(ids[:10]):,} more" if total > len(ids[:10]) else "")
