"""`RerankBatches` called directly, in this process, against the real local server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from rerank_async import RetryPolicy
from rerank_async.ray import RerankBatches, rerank_dataset, split_limits
from rerank_async.server import RunningServer, ServerConfig, running_server
from rerank_async.server._scoring import score as reference_score

from .conftest import make_pairs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=3, latency_ms=2)) as running:
        yield running


def options(server: RunningServer, **extra: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "model": "m", "api_key": "k",
            "retry": RetryPolicy(initial_delay=0.0), **extra}  # fmt: skip


# -- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("totals", "actors", "shares"),
    [
        ({"max_concurrency": 8}, 2, {"max_concurrency": 4}),
        ({"max_concurrency": 8}, 3, {"max_concurrency": 2}),  # 3 x 2 <= 8: rounded down
        ({"max_concurrency": 5}, 5, {"max_concurrency": 1}),
        ({"max_concurrency": 8, "max_requests_per_minute": 600.0}, 4,
         {"max_concurrency": 2, "max_requests_per_minute": 150.0}),
        ({"max_tokens_per_minute": 1000}, 3, {"max_tokens_per_minute": 333}),
        ({}, 7, {}),
    ],
)  # fmt: skip
def test_split_limits_never_adds_up_to_more_than_the_total(
    totals: dict[str, int | float], actors: int, shares: dict[str, int | float]
) -> None:
    assert split_limits(totals, actors) == shares
    for name, share in split_limits(totals, actors).items():
        assert share * actors <= totals[name]


@pytest.mark.parametrize(
    ("totals", "actors", "error", "message"),
    [
        ({"max_concurrency": 2}, 3, ValueError, "max_concurrency=2 cannot be divided across 3"),
        ({"max_concurrency": 0}, 1, ValueError, "max_concurrency must be a positive number"),
        ({"max_requests_per_minute": float("nan")}, 1, ValueError, "positive number"),
        ({"max_concurrency": True}, 1, TypeError, "max_concurrency must be a number"),
        ({"max_concurrency": 8}, 0, ValueError, "actors must be >= 1"),
        ({"max_concurrency": 8}, 2.0, TypeError, "actors must be an int"),
    ],
)
def test_split_limits_rejects_what_cannot_be_divided(
    totals: dict[str, Any], actors: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        split_limits(totals, actors)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "rows"}, "layout must be 'query' or 'pair'"),
        ({"on_error": "ignore"}, "on_error must be 'record' or 'raise'"),
        ({"query_column": ""}, "query_column must be a non-empty string"),
        ({"error_column": "scores"}, "must differ"),
        ({"client_options": {"max_concurrency": 4}},
         "client_options must not set 'max_concurrency'"),
        ({"provider_limits": {"max_requests_per_minute": 60},
          "client_options": {"max_requests_per_minute": 60}}, "provider_limits="),
        ({"actors": 9}, "max_concurrency=8 cannot be divided across 9 actors"),
    ],
)  # fmt: skip
def test_bad_options_fail_in_the_constructor(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RerankBatches(max_concurrency=8, **kwargs)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_rerank_dataset_checks_client_options_on_the_driver() -> None:
    import ray

    dataset = ray.data.from_items([{"query": "q", "documents": ["d"]}])  # lazy: runs nothing
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        rerank_dataset(dataset, max_concurrency=4, client_options={"model": "m", "batch_size": 0})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        rerank_dataset(dataset, max_concurrency=4, batch_size=0, client_options={"model": "m"})
    with pytest.raises(ValueError, match="num_cpus must be a positive number"):
        rerank_dataset(dataset, max_concurrency=4, num_cpus=0, client_options={"model": "m"})


# -- batches --------------------------------------------------------------------------------------


async def test_query_rows_get_scores_in_input_order_and_invalid_rows_an_error(
    server: RunningServer,
) -> None:
    udf = RerankBatches(max_concurrency=4, actors=2, client_options=options(server, batch_size=3))
    batch = pa.table(
        {
            "id": [1, 2, 3, 4, 5],
            "query": ["solar storage", "coffee", None, "grid", "   "],
            "documents": [
                ["solar battery storage", "coffee roast", "home solar panel", "grid", "x"],
                [],
                ["a"],
                ["grid energy", "home"],
                ["b"],
            ],
        }
    )
    out = await udf(batch)
    await udf.aclose()
    assert out.column_names == ["id", "query", "documents", "scores", "error", "error_type"]
    rows = out.to_pylist()
    assert rows[0]["scores"] == [reference_score("solar storage", d) for d in rows[0]["documents"]]
    assert rows[1]["scores"] == []
    assert rows[3]["scores"] == [
        reference_score("grid", "grid energy"),
        reference_score("grid", "home"),
    ]
    assert [r["error_type"] for r in rows] == [None, None, "InvalidRow", None, "InvalidRow"]
    assert rows[2]["error"] == "'query' must be a string, got null"
    assert rows[4]["error"] == "'query' must not be blank"
    assert rows[2]["scores"] is None
    assert udf.closed


async def test_struct_documents_are_scored_by_their_text(server: RunningServer) -> None:
    udf = RerankBatches(max_concurrency=2, client_options=options(server))
    documents = [[{"text": "roof panel", "url": "a"}, {"text": "city", "url": None}]]
    batch = pa.table({"query": ["roof"], "documents": documents})
    rows = (await udf(batch)).to_pylist()
    await udf.aclose()
    assert rows[0]["scores"] == [
        reference_score("roof", "roof panel"),
        reference_score("roof", "city"),
    ]


async def test_pair_rows_of_one_query_share_requests(server: RunningServer) -> None:
    pairs = make_pairs(3, 10, seed=5)  # interleaved: q0 q1 q2 q0 q1 q2 ...
    udf = RerankBatches(
        max_concurrency=4, layout="pair", client_options=options(server, batch_size=10)
    )
    server.reset_stats()
    rows = (await udf(pa.Table.from_pylist(pairs))).to_pylist()
    await udf.aclose()
    assert [r["pair_id"] for r in rows] == list(range(30))
    assert [r["score"] for r in rows] == [reference_score(p["query"], p["document"]) for p in pairs]
    assert server.stats()["requests"] == 3  # one request per query, not one per row


async def test_failures_are_recorded_per_row_or_raised(server: RunningServer) -> None:
    dead = {"base_url": "http://127.0.0.1:9/v1/inference", "model": "m", "api_key": "k",
            "max_retries": 0, "timeout": 2.0}  # fmt: skip
    batch = pa.table({"query": ["a", "b"], "document": ["x", "y"]})
    recording = RerankBatches(max_concurrency=2, layout="pair", client_options=dead)
    rows = (await recording(batch)).to_pylist()
    assert [r["error_type"] for r in rows] == ["APIConnectionError"] * 2
    assert [r["score"] for r in rows] == [None, None]
    await recording.aclose()

    raising = RerankBatches(max_concurrency=2, layout="pair", client_options=dead, on_error="raise")
    from rerank_async import APIConnectionError

    with pytest.raises(APIConnectionError):
        await raising(batch)
    with pytest.raises(ValueError, match="row 1 of the batch: 'query' must be a string"):
        await raising(pa.table({"query": ["a", None], "document": ["x", "y"]}))
    await raising.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await raising(batch)


@pytest.mark.parametrize(
    ("query", "documents"),
    [(None, ["a"]), ("  ", ["a"]), ("q", "a"), ("q", [{"url": "u"}]),
     ("q", [{"text": 1}]), ("q", None)],
)  # fmt: skip
async def test_rows_and_bulk_lines_are_checked_by_one_validator(
    server: RunningServer, query: object, documents: object
) -> None:
    # The same record, as a bulk input line and as a Ray row, gets the same message (only
    # what Arrow can hold: a column has one type, so no list of strings and numbers).
    from rerank_async.cli._bulk_input import BadLine, parse_value

    bad = parse_value({"query": query, "documents": documents}, 1)
    assert isinstance(bad, BadLine)
    udf = RerankBatches(max_concurrency=2, client_options=options(server))
    rows = (await udf(pa.Table.from_pylist([{"query": query, "documents": documents}]))).to_pylist()
    await udf.aclose()
    assert (rows[0]["error_type"], rows[0]["error"]) == ("InvalidRow", bad.message)


async def test_a_renamed_column_is_named_in_the_message(server: RunningServer) -> None:
    udf = RerankBatches(max_concurrency=2, layout="pair", document_column="passage",
                        client_options=options(server))  # fmt: skip
    rows = (await udf(pa.table({"query": ["q"], "passage": [None]}))).to_pylist()
    await udf.aclose()
    assert rows[0]["error"] == "'passage' must be a string, got null"


async def test_columns_are_checked_by_name(server: RunningServer) -> None:
    udf = RerankBatches(max_concurrency=2, client_options=options(server))
    with pytest.raises(ValueError, match=r"no column 'documents' \(columns: query, docs\)"):
        await udf(pa.table({"query": ["q"], "docs": [["d"]]}))
    with pytest.raises(ValueError, match="already has a column 'scores'"):
        await udf(pa.table({"query": ["q"], "documents": [["d"]], "scores": [1]}))
    await udf.aclose()


def test_the_core_and_the_jsonl_bulk_command_never_import_ray_or_pyarrow() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rerank_async, rerank_async.cli._main, rerank_async.cli._bulk; "
        "print(sorted(m for m in ('ray', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_actors_end_closes_the_client_on_the_actors_loop(server: RunningServer) -> None:
    # As on a Ray actor: the UDF runs on an event loop in another thread, and the actor's
    # end (Ray Data dropping the UDF) calls __del__ from the main thread.
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        udf = RerankBatches(max_concurrency=2, client_options=options(server))
        batch = pa.table({"query": ["roof"], "documents": [["roof panel"]]})
        out = asyncio.run_coroutine_threadsafe(udf(batch), loop).result(timeout=30)
        assert out.column("scores").to_pylist() == [[reference_score("roof", "roof panel")]]
        assert not udf.closed
        udf.__del__()
        assert udf.closed
        with pytest.raises(RuntimeError, match="closed"):
            asyncio.run_coroutine_threadsafe(udf(batch), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
    unused = RerankBatches(max_concurrency=2, client_options=options(server))
    unused.__del__()  # never called: nothing to close
    assert not unused.closed
