"""The one validator of input records, and the int-but-not-bool helpers, table-driven."""

from __future__ import annotations

import pytest

from rerank_async._checks import (
    CheckedRecord,
    InvalidRecordError,
    check_record,
    is_int,
    is_number,
    record_text,
)


@pytest.mark.parametrize(
    ("value", "integer", "number"),
    [(3, True, True), (0, True, True), (True, False, False), (False, False, False),
     (2.5, False, True), (float("nan"), False, True), ("3", False, False), (None, False, False)],
)  # fmt: skip
def test_is_int_and_is_number_refuse_bools(value: object, integer: bool, number: bool) -> None:
    assert (is_int(value), is_number(value)) == (integer, number)


def test_a_good_record() -> None:
    record = check_record(
        {"id": "a", "query": "q", "documents": ["x", {"text": "y", "url": "u"}], "top_k": 1}
    )
    assert record == CheckedRecord("a", "q", ["x", "y"], [{}, {"url": "u"}], 1)
    assert check_record({"query": "q", "documents": []}) == CheckedRecord(None, "q", [], None, None)


@pytest.mark.parametrize(
    ("value", "record_id", "message"),
    [
        ([], None, "expected a JSON object, got a list"),
        ({"id": True, "query": "q", "documents": []}, None, "'id' must be a string or an integer"),
        ({"id": 4, "documents": []}, 4, "missing 'query'"),
        ({"id": "x", "query": " ", "documents": []}, "x", "'query' must not be blank"),
        ({"query": "q", "documents": None}, None, "'documents' must be a list, got null"),
        ({"query": "q", "documents": [{"text": "x", "score": 1}]}, None, "field 'score'"),
        ({"query": "q", "documents": [], "top_k": True}, None, "'top_k' must be an integer >= 1"),
    ],
)
def test_a_bad_record_says_what_and_keeps_its_id(
    value: object, record_id: object, message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=message) as caught:
        check_record(value, reserved_fields=("index", "score"))
    assert caught.value.record_id == record_id


def test_a_single_document_names_its_column() -> None:
    assert record_text("d", name="passage") == "d"
    with pytest.raises(InvalidRecordError, match="'passage' must be a string, got a number"):
        record_text(3, name="passage")
