"""The pytest plugin, exercised the way users meet it: in a pytest run of their own tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    # The inner runs have pytest-asyncio installed too; settle its loop scope (else it
    # warns), and make warnings errors there as well.
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )


def test_fixture_serves_a_sync_client_and_counts_requests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_ranking(reranker_server):
            client = reranker_server.sync_client(batch_size=2)
            documents = ["Berlin", "Paris is the capital of France", "x"]
            result = client.rerank("capital of France", documents)
            assert result.results[0].index == 1
            stats = reranker_server.stats()
            assert stats["requests"] == result.usage.requests == 2
            assert reranker_server.base_url.startswith("http://127.0.0.1:")
            reranker_server.reset_stats()
            assert reranker_server.stats()["requests"] == 0
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_marker_sets_fault_knobs_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from rerank_async import ServerError

        @pytest.mark.reranker_server(error_503_rate=1.0, seed=0)
        def test_always_503(reranker_server):
            client = reranker_server.sync_client(max_retries=2)
            with pytest.raises(ServerError):
                client.rerank("q", ["a"])
            assert reranker_server.stats()["status_counts"] == {"503": 3}
            assert reranker_server.config.error_503_rate == 1.0

        def test_no_marker_no_faults(reranker_server):
            assert reranker_server.config.error_503_rate == 0
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_config_fixture_override_and_async_client(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        from rerank_async import AuthenticationError
        from rerank_async.server import ServerConfig

        @pytest.fixture
        def reranker_server_config():
            return ServerConfig(api_key="secret", latency_ms=1)

        @pytest.mark.reranker_server(latency_ms=2)
        def test_async_client(reranker_server):
            assert reranker_server.config.api_key == "secret"
            assert reranker_server.config.latency_ms == 2

            async def main():
                async with reranker_server.client(api_key="secret") as client:
                    scores = await client.score("solar", ["solar panel", "coffee"])
                async with reranker_server.client(api_key="wrong", max_retries=0) as client:
                    with pytest.raises(AuthenticationError):
                        await client.score("solar", ["x"])
                return scores

            scores = asyncio.run(main())
            assert scores[0] > scores[1]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_bad_marker_fields_are_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.reranker_server(latency=5)
        def test_typo(reranker_server):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert "unknown ServerConfig field(s) ['latency']" in result.stdout.str()


def test_loaded_from_the_entry_point_in_a_fresh_interpreter(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_plugin_is_registered(request):
            assert request.config.pluginmanager.has_plugin("rerank_async")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    assert "fixtures defined from pytest_rerank_async" in result.stdout.str()
    result.stdout.fnmatch_lines(["reranker_server -- *"])
    result.stdout.fnmatch_lines(["reranker_server_config -- *"])
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_importing_the_plugin_imports_neither_the_server_nor_the_client() -> None:
    code = (
        "import sys, pytest_rerank_async; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rerank_async', 'starlette', 'uvicorn', 'httpx', 'anyio', 'pydantic')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
