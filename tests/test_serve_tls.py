"""The serve command's `--upstream-tls --upstream-ca`: the gateway reaches a TLS-only gRPC upstream."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayServer


def self_signed(directory: Path) -> tuple[Path, Path]:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def tls_backend(gen_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    from demo.backend import start_backend

    key, cert = self_signed(tmp_path_factory.mktemp("tls"))
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        server, port, _ = loop.run_until_complete(start_backend(tls=(key.read_bytes(), cert.read_bytes())))
        started.update(server=server, port=port)
        ready.set()
        loop.run_forever()

    ready = threading.Event()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20)
    yield started["port"], cert
    asyncio.run_coroutine_threadsafe(started["server"].stop(0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_gateway_over_tls_upstream(gen_dir: Path, tls_backend: tuple[int, Path]) -> None:
    port, cert = tls_backend
    server = GatewayServer(gen_dir, port, extra=["--upstream-tls", "--upstream-ca", str(cert)])
    try:
        response = httpx.get(f"{server.url}/v1/shelves/fiction/books/dune", timeout=10)
        assert response.status_code == 200
        assert response.json()["title"] == "Dune"
    finally:
        server.stop()


def test_plaintext_to_tls_upstream_is_unavailable(gen_dir: Path, tls_backend: tuple[int, Path]) -> None:
    """Without --upstream-tls the handshake fails: a clean 503 JSON Status, never a hang or a 500."""
    port, _ = tls_backend
    server = GatewayServer(gen_dir, port, extra=["--default-timeout", "5"])
    try:
        response = httpx.get(f"{server.url}/v1/shelves/fiction/books/dune", timeout=10)
        assert response.status_code == 503
        assert response.json()["code"] == 14
    finally:
        server.stop()
