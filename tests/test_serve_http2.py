"""The serve command's default for modules with WebSocket routes (uvicorn, the gateway's zttp protocol)
speaks cleartext HTTP/2 with prior knowledge (`curl --http2-prior-knowledge`, Debian's curl), streams
included; granian is served HTTP/1.1 only (its `auto` mode resets connections after its own 400s). Under
every configuration an `Upgrade: h2c` request (`curl --http2`) is answered as plain HTTP/1.1."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayServer

BOOK = "/v1/shelves/fiction/books/dune"
WATCH = "/v1/shelves/fiction/events:watch?count=3&intervalMs=20"
#: with the testdata protos (WebSocket routes) the default is uvicorn; --server granian the other one
SERVERS = {"default": [], "granian": ["--server", "granian"], "granian-no-ws": ["--websocket", "off"]}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest, gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    running = GatewayServer(gen_dir, backend.port, SERVERS[request.param])
    yield running
    running.stop()


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-w", "\\n%{http_version} %{http_code}", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


H2 = {"default"}


def test_prior_knowledge_unary(server: GatewayServer, request: pytest.FixtureRequest) -> None:
    result = _curl("--http2-prior-knowledge", server.url + BOOK)
    if request.node.callspec.params["server"] not in H2:
        assert result.returncode != 0 or not result.stdout.endswith("2 200"), result.stdout
        return
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "2 200", result.stdout
    assert '"title":"Dune"' in body.replace(" ", "")


def test_prior_knowledge_stream(server: GatewayServer, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["server"] not in H2:
        pytest.skip("granian is served HTTP/1.1 only")
    result = _curl("--http2-prior-knowledge", "-N", server.url + WATCH)
    assert result.returncode == 0, result.stderr
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "2 200", result.stdout
    lines = [line for line in body.splitlines() if line.strip()]
    assert len(lines) == 3 and all(line.startswith('{"result"') for line in lines), body


def test_upgrade_h2c_is_never_switched(server: GatewayServer) -> None:
    """curl --http2 on cleartext sends `Upgrade: h2c` + `HTTP2-Settings`: the answer stays HTTP/1.1."""
    result = _curl("--http2", "-v", server.url + BOOK)
    assert result.returncode == 0, result.stderr
    assert "Upgrade: h2c" in result.stderr  # curl did ask
    assert "101" not in result.stderr.split("< HTTP/1.1 ", 1)[1][:4]
    assert result.stdout.rsplit("\n", 1)[1] == "1.1 200", result.stdout
