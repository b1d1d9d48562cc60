"""The rerank-async command line, run in-process and as a real subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette", reason="the server extra: pip install -e '.[dev]'")
pytest.importorskip("uvicorn", reason="the server extra: pip install -e '.[dev]'")

from rerank_async.cli import main
from rerank_async.server import RunningServer, ServerConfig, running_server

pytestmark = pytest.mark.integration

SEED_QUERY = "What is the capital of France?"
PARIS = "Paris is the capital and most populous city of France."
BERLIN = "Berlin is the capital of Germany."


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server(ServerConfig(api_key="cli-key")) as running:
        yield running


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rerank_arguments_json(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["rerank", SEED_QUERY, BERLIN, PARIS, "--json",
         "--base-url", server.base_url, "--api-key", "cli-key"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["results"][0]["document"] == PARIS
    assert result["results"][0]["index"] == 1
    assert len(result["scores"]) == 2


def test_rerank_table_from_file(
    server: RunningServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    documents = tmp_path / "docs.txt"
    documents.write_text(f"{BERLIN}\n\n{PARIS}\n", encoding="utf-8")
    code, out, err = run(
        ["rerank", SEED_QUERY, "--file", str(documents), "--top-k", "1",
         "--base-url", server.base_url, "--api-key", "cli-key"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "Paris" in out
    assert "Berlin" not in out


def test_rerank_from_stdin_json_array(
    server: RunningServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps([BERLIN, PARIS])))
    monkeypatch.setenv("DEEPINFRA_TOKEN", "cli-key")
    code, out, err = run(
        ["rerank", SEED_QUERY, "-f", "-", "--json", "--base-url", server.base_url], capsys
    )
    assert code == 0, err
    assert json.loads(out)["results"][0]["index"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["rerank", "q", "--file", "/no/such/file.txt"],
            "No such file or directory: /no/such/file.txt",
        ),
        (["rerank", "q", "a", "--api-key", "wrong"], "HTTP 401"),
        (["rerank", "q", "a", "--batch-size", "0"], "batch_size must be >= 1"),
        (["rerank", "", "a"], "query must not be empty"),
    ],
)
def test_failures_are_one_line(
    server: RunningServer, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run([*argv, "--base-url", server.base_url], capsys)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("rerank-async: error:")
    assert message in err
    assert "Traceback" not in err


def test_refused_connection_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run(
        ["rerank", "q", "a", "--max-retries", "0", "--base-url", f"http://127.0.0.1:{port}"], capsys
    )
    assert code == 1
    # The error's class is the engine's: aiohttp's by default, httpx's when asked.
    assert "connection failed: ClientConnectorError" in err
    assert err.count("\n") == 1
    code, _, err = run(
        ["rerank", "q", "a", "--max-retries", "0", "--engine", "httpx",
         "--base-url", f"http://127.0.0.1:{port}"],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert "connection failed: ConnectError" in err


def test_demo_runs_on_the_embedded_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["demo", "--documents", "600", "--queries", "6", "--latency-ms", "1", "--capacity", "4"],
        capsys,
    )
    assert code == 0, err
    assert "Paris is the capital and most populous city of France." in out
    assert "600" in out
    assert "documents/s" in out
    assert "server: max requests in flight" in out
    seed_table = out.split("Seed example")[1]
    assert seed_table.index("Paris") < seed_table.index("Berlin")


def test_serve_subprocess_answers_and_stops_on_sigint() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "rerank_async.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--max-batch-size", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        body = {"query": SEED_QUERY, "documents": [BERLIN, PARIS]}
        ok = httpx.post(f"{url}/v1/inference/m", json=body, timeout=5.0)
        too_big = httpx.post(
            f"{url}/v1/inference/m", json={**body, "documents": ["a"] * 3}, timeout=5.0
        )
        assert ok.status_code == 200
        assert ok.json()["scores"][1] > ok.json()["scores"][0]
        assert too_big.status_code == 413
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
    assert process.returncode in (0, 130)
    assert b"Traceback" not in output


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("rerank-async ")


def test_client_flags_default_to_the_provider() -> None:
    from rerank_async.cli._common import client_from_args
    from rerank_async.cli._main import build_parser

    argv = ["rerank", "q", "a", "--provider", "TEI", "--base-url", "http://127.0.0.1:1"]
    client = client_from_args(build_parser(argv).parse_args(argv))
    provider = client.provider
    assert provider.name == "tei"
    assert client.options.batch_size == provider.default_batch_size
    assert client.options.max_concurrency == provider.default_max_concurrency

    argv = ["rerank", "q", "a", "--batch-size", "5", "--concurrency", "3"]
    client = client_from_args(build_parser(argv).parse_args(argv))
    assert (client.provider.name, client.options.batch_size) == ("deepinfra", 5)
    assert client.options.max_concurrency == 3


def test_an_unknown_provider_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["rerank", "q", "a", "--provider", "nosuch"])
    assert exit_info.value.code == 2
    assert "--provider" in capsys.readouterr().err


def test_a_command_whose_module_cannot_load_names_its_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rerank_async.cli import _main

    broken = _main._Command("._no_such_module", "needs an extra", "rerank-async[imaginary]")
    monkeypatch.setitem(_main._COMMANDS, "rerank", broken)
    assert main(["rerank", "q", "a", "--anything"]) == 2
    err = capsys.readouterr().err
    assert "install rerank-async[imaginary]" in err
    assert "_no_such_module" in err


def test_only_the_chosen_command_is_built(capsys: pytest.CaptureFixture[str]) -> None:
    from rerank_async.cli._main import build_parser

    parser = build_parser(["serve"])
    args = parser.parse_args(["serve", "--port", "1234"])
    assert args.port == 1234
    with pytest.raises(SystemExit):
        parser.parse_args(["rerank", "q", "--top-k", "3"])  # listed, but without its flags
    capsys.readouterr()
