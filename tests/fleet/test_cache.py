"""ScoreCache: repeated pairs are never sent again; a damaged file never gives wrong scores."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rerank_async import RerankClient, RerankError, ScoreCache, ScoreCacheError
from rerank_async._fleet.cache import CacheContext
from rerank_async.server import RunningServer, ServerConfig, running_server

pytestmark = pytest.mark.integration

QUERY = "what do cats eat"


def sql(path: Path, statement: str) -> list[tuple[Any, ...]]:
    """One statement on the file, committed, the connection closed."""
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        return connection.execute(statement).fetchall()


def documents(n: int, tag: str = "") -> list[str]:
    return [f"document {tag}{i} about cats and what they eat, number {i}" for i in range(n)]


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(seed=1)) as running:
        yield running


def client_for(server: RunningServer, cache: ScoreCache, model: str = "acme/a") -> RerankClient:
    return RerankClient(base_url=server.base_url, model=model, cache=cache, batch_size=64)


async def test_a_repeated_call_sends_nothing(server: RunningServer) -> None:
    cache = ScoreCache()
    async with client_for(server, cache) as client:
        first = await client.rerank(QUERY, documents(100))
        server.reset_stats()
        second = await client.rerank(QUERY, documents(100))
        assert server.stats()["requests"] == 0
        assert second.scores == first.scores
        assert second.usage.cache_hits == 100
        assert second.usage.cache_misses == 0
        assert second.usage.requests == 0
        assert first.usage.cache_misses == 100
        statistics = client.statistics()
        assert (statistics.cache_hits, statistics.cache_misses) == (100, 100)


async def test_only_the_missing_half_is_sent_and_merged_in_order(server: RunningServer) -> None:
    cache = ScoreCache()
    texts = documents(1000)
    async with RerankClient(base_url=server.base_url, model="acme/a") as plain:
        expected = (await plain.rerank(QUERY, texts)).scores
    async with client_for(server, cache) as client:
        await client.rerank(QUERY, texts[::2])  # every other document cached
        server.reset_stats()
        result = await client.rerank(QUERY, texts)
    assert server.stats()["documents"] == 500
    assert result.scores == expected
    assert (result.usage.cache_hits, result.usage.cache_misses) == (500, 500)


async def test_a_file_serves_a_new_client_and_another_model_misses(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "scores.sqlite"
    async with client_for(server, ScoreCache(path=path)) as client:
        first = await client.rerank(QUERY, documents(50))
    server.reset_stats()
    async with client_for(server, ScoreCache(path=path)) as client:
        again = await client.rerank(QUERY, documents(50))
    assert server.stats()["requests"] == 0
    assert again.scores == first.scores
    async with client_for(server, ScoreCache(path=path), model="acme/other") as client:
        other = await client.rerank(QUERY, documents(50))
    assert other.usage.cache_misses == 50
    assert server.stats()["documents"] == 50
    # No plaintext in the file: neither query nor documents.
    assert b"cats" not in path.read_bytes()


def test_every_part_of_the_context_changes_the_key() -> None:
    base = ("deepinfra", "acme/a", None, QUERY)
    variants = [
        ("cohere", "acme/a", None, QUERY),
        ("deepinfra", "acme/b", None, QUERY),
        ("deepinfra", "acme/a", "be strict", QUERY),
        ("deepinfra", "acme/a", None, QUERY + "?"),
    ]
    (key,) = CacheContext(*base).keys(["doc"])
    assert CacheContext(*base).keys(["doc"]) == [key]
    assert CacheContext(*base).keys(["doc2"]) != [key]
    for variant in variants:
        assert CacheContext(*variant).keys(["doc"]) != [key]


async def test_a_garbage_file_is_a_clear_error_naming_it(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "garbage.sqlite"
    path.write_bytes(b"not a database at all " * 500)
    async with client_for(server, ScoreCache(path=path)) as client:
        with pytest.raises(ScoreCacheError, match=r"garbage\.sqlite") as caught:
            await client.rerank(QUERY, documents(5))
    assert caught.value.path == path
    assert path.read_bytes().startswith(b"not a database")  # left as it was


async def test_a_foreign_database_is_refused(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    sql(path, "CREATE TABLE people (name TEXT)")
    async with client_for(server, ScoreCache(path=path)) as client:
        with pytest.raises(ScoreCacheError, match="not a rerank_async score cache"):
            await client.rerank(QUERY, documents(5))


async def test_a_damaged_row_is_scored_again(server: RunningServer, tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    async with client_for(server, ScoreCache(path=path)) as client:
        first = await client.rerank(QUERY, documents(20))
    sql(path, "UPDATE scores SET score = score + 1.0")
    async with client_for(server, ScoreCache(path=path)) as client:
        again = await client.rerank(QUERY, documents(20))
    assert again.scores == first.scores
    assert again.usage.cache_misses == 20


async def test_a_failed_call_stores_only_what_succeeded(tmp_path: Path) -> None:
    cache = ScoreCache()
    texts = documents(128)
    texts[100] = "poisoned " + texts[100]
    with running_server(ServerConfig(poison="poisoned")) as server:
        async with RerankClient(
            base_url=server.base_url, model="acme/a", cache=cache, batch_size=64, max_retries=0
        ) as client:
            with pytest.raises(RerankError) as caught:
                await client.rerank(QUERY, texts)
            assert caught.value.partial is not None
            scored = caught.value.partial.documents_scored
            assert 0 < scored < 128
            server.reset_stats()
            with pytest.raises(RerankError):
                await client.rerank(QUERY, texts)
            # The batches that succeeded came from the cache; the failed one was sent again.
            assert server.stats()["documents"] == 128 - scored


def context(query: str = QUERY, model: str = "acme/a") -> CacheContext:
    return CacheContext("deepinfra", model, None, query)


def test_the_memory_cache_evicts_the_least_recently_used() -> None:
    cache = ScoreCache(max_entries=2)
    cache.store(context(), ["a", "b"], [0.1, 0.2])
    assert cache.lookup(context(), ["a"]) == [0.1]  # "a" is now the most recent
    cache.store(context(), ["c"], [0.3])
    assert cache.lookup(context(), ["a", "b", "c"]) == [0.1, None, 0.3]


def test_a_file_is_trimmed_to_max_entries_with_its_contexts(tmp_path: Path) -> None:
    path = tmp_path / "small.sqlite"
    cache = ScoreCache(path=path, max_entries=10)
    for start in range(0, 50, 5):
        # A query of its own each time: its context goes once its scores have gone.
        texts = [str(i) for i in range(start, start + 5)]
        cache.store(context(f"q{start}"), texts, [float(i) for i in range(5)])
        cache.flush()  # one write each, as if a second passed between them
    found = [
        score
        for start in range(0, 50, 5)
        for score in cache.lookup(context(f"q{start}"), [str(i) for i in range(start, start + 5)])
    ]
    cache.close()
    assert sum(score is not None for score in found) <= 11
    assert found[-1] is not None
    assert sql(path, "SELECT count(*) FROM contexts")[0][0] <= 3


def test_a_cold_context_misses_without_hashing_its_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ScoreCache(path=tmp_path / "scores.sqlite")
    cache.store(context("known"), ["a", "b"], [0.1, 0.2])
    cache.flush()
    hashed: list[int] = []
    keys = CacheContext.keys

    def counting(self: CacheContext, documents: list[str]) -> list[bytes]:
        hashed.append(len(documents))
        return keys(self, documents)

    monkeypatch.setattr(CacheContext, "keys", counting)
    assert cache.lookup(context("never seen"), ["a", "b", "c"]) == [None, None, None]
    assert hashed == []
    assert cache.lookup(context("known"), ["a", "b", "c"]) == [0.1, 0.2, None]
    assert hashed == [3]
    cache.close()


def test_a_context_another_process_wrote_is_found(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    reader, writer = ScoreCache(path=path), ScoreCache(path=path)
    assert reader.lookup(context(), ["a"]) == [None]  # the reader's file is open first
    writer.store(context(), ["a"], [0.5])
    writer.flush()
    assert reader.lookup(context(), ["a"]) == [0.5]
    reader.close()
    writer.close()


def test_a_file_of_the_older_format_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.sqlite"
    sql(path, "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    sql(path, "INSERT INTO meta VALUES ('format', 'rerank_async.score_cache'), ('version', '1')")
    sql(
        path, "CREATE TABLE scores (key BLOB PRIMARY KEY, score REAL, crc INTEGER, written INTEGER)"
    )
    cache = ScoreCache(path=path)
    with caplog.at_level("WARNING", logger="rerank_async"):
        assert cache.lookup(context(), ["a"]) == [None]
    assert "older" in caplog.text
    assert str(path) in caplog.text
    cache.store(context(), ["a"], [0.5])
    cache.close()
    assert sql(path, "SELECT value FROM meta WHERE name = 'version'") == [("2",)]
    assert ScoreCache(path=path).lookup(context(), ["a"]) == [0.5]


def test_a_file_of_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    sql(path, "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    sql(path, "INSERT INTO meta VALUES ('format', 'rerank_async.score_cache'), ('version', '9')")
    sql(path, "CREATE TABLE scores (key BLOB PRIMARY KEY)")
    with pytest.raises(ScoreCacheError, match=r"version '9'.*new\.sqlite|new\.sqlite.*version '9'"):
        ScoreCache(path=path).lookup(context(), ["a"])
    assert sql(path, "SELECT value FROM meta WHERE name = 'version'") == [("9",)]


async def test_a_finished_call_is_in_the_file_for_another_client(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "scores.sqlite"
    async with client_for(server, ScoreCache(path=path)) as first:
        scores = (await first.rerank(QUERY, documents(10))).scores
        assert sql(path, "SELECT count(*) FROM scores") == [(10,)]
        async with client_for(server, ScoreCache(path=path)) as second:
            again = await second.rerank(QUERY, documents(10))
    assert again.scores == scores
    assert again.usage.requests == 0


async def test_overlapping_calls_write_in_batches_and_on_close(
    server: RunningServer, tmp_path: Path
) -> None:
    path = tmp_path / "scores.sqlite"
    cache = ScoreCache(path=path)
    requests = [(f"{QUERY} {i}", documents(10)) for i in range(20)]
    async with client_for(server, cache) as client:
        async with client.rerank_many(requests) as outcomes:
            async for outcome in outcomes:
                assert outcome.error is None
    assert sql(path, "SELECT count(*) FROM scores") == [(200,)]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        ScoreCache(max_entries=0)
    with pytest.raises(TypeError, match="path"):
        ScoreCache(path=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache"):
        RerankClient(base_url="http://127.0.0.1:9", cache="file.db")  # type: ignore[arg-type]


def test_bulk_reuses_a_cache_file_across_runs(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerank_async.cli import main

    lines = [{"id": i, "query": QUERY, "documents": documents(30, tag=f"{i}-")} for i in range(20)]
    requests = tmp_path / "in.jsonl"
    requests.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    cache = tmp_path / "cache.sqlite"

    def run(output: str) -> list[dict[str, Any]]:
        argv = ["bulk", str(requests), "-o", str(tmp_path / output), "--cache", str(cache), "-q"]
        assert main([*argv, "--base-url", server.base_url]) == 0
        text = (tmp_path / output).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    cold = run("cold.jsonl")
    server.reset_stats()
    warm = run("warm.jsonl")
    assert server.stats()["requests"] == 0
    assert {r["id"]: r["scores"] for r in warm} == {r["id"]: r["scores"] for r in cold}
    capsys.readouterr()


def test_after_a_fork_the_file_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ScoreCache(path=tmp_path / "scores.sqlite")
    cache.store(context(), ["k"], [0.25])
    cache.flush()
    parent = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: parent + 1)  # as seen from a child
    cache.store(context(), ["c"], [0.75])
    assert cache.lookup(context(), ["k", "c"]) == [0.25, 0.75]
    cache.close()
