"""The serve command's `--upstream-cert`/`--upstream-key` (mutual TLS to the upstream), against a real
grpc.aio backend that requires client certificates signed by a test CA made here with openssl."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayServer

BOOK = "/v1/shelves/fiction/books/dune"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_test_ca(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA;
    plus a client certificate from another CA."""
    files = {name: directory / f"{name}.pem" for name in ("ca", "ca_key", "server", "server_key", "client",
                                                           "client_key", "other_ca", "other_ca_key",
                                                           "stranger", "stranger_key")}  # fmt: skip
    for ca, key, cn in (("ca", "ca_key", "test CA"), ("other_ca", "other_ca_key", "other CA")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
                 "-keyout", str(files[key]), "-out", str(files[ca]))  # fmt: skip
    leaves = (
        ("server", "server_key", "ca", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ("client", "client_key", "ca", "/CN=gateway", "extendedKeyUsage=clientAuth"),
        ("stranger", "stranger_key", "other_ca", "/CN=stranger", "extendedKeyUsage=clientAuth"),
    )
    for cert, key, ca, subject, extension in leaves:
        request, ext = directory / f"{cert}.csr", directory / f"{cert}.ext"
        ext.write_text(extension + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(files[key]),
                 "-out", str(request))  # fmt: skip
        _openssl("x509", "-req", "-in", str(request), "-CA", str(files[ca]),
                 "-CAkey", str(files[f"{ca}_key"]), "-CAcreateserial", "-days", "1",
                 "-extfile", str(ext), "-out", str(files[cert]))  # fmt: skip
    return files


@pytest.fixture(scope="module")
def mtls_backend(
    gen_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, dict[str, Path]]]:
    from demo.backend import start_backend

    files = make_test_ca(tmp_path_factory.mktemp("mtls"))
    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        tls = (files["server_key"].read_bytes(), files["server"].read_bytes())
        server, port, _ = loop.run_until_complete(start_backend(tls=tls, client_ca=files["ca"].read_bytes()))
        started.update(server=server, port=port)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(20)
    yield started["port"], files
    asyncio.run_coroutine_threadsafe(started["server"].stop(0), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _get(gen_dir: Path, port: int, *extra: str) -> httpx.Response:
    server = GatewayServer(gen_dir, port, extra=["--upstream-tls", *extra])
    try:
        return httpx.get(f"{server.url}{BOOK}", timeout=15)
    finally:
        server.stop()


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_client_certificate_reaches_the_upstream(
    gen_dir: Path, mtls_backend: tuple[int, dict[str, Path]], server: str
) -> None:
    port, files = mtls_backend
    response = _get(gen_dir, port, "--server", server, "--upstream-ca", str(files["ca"]),
                    "--upstream-cert", str(files["client"]),
                    "--upstream-key", str(files["client_key"]))  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Dune"


def test_without_client_certificate_the_upstream_refuses(
    gen_dir: Path, mtls_backend: tuple[int, dict[str, Path]]
) -> None:
    """The backend requires a client certificate: the handshake fails, a clean 503 JSON Status."""
    port, files = mtls_backend
    response = _get(gen_dir, port, "--upstream-ca", str(files["ca"]), "--default-timeout", "5")
    assert response.status_code == 503, response.text
    assert response.json()["code"] == 14


def test_certificate_of_another_ca_is_refused(
    gen_dir: Path, mtls_backend: tuple[int, dict[str, Path]]
) -> None:
    port, files = mtls_backend
    response = _get(gen_dir, port, "--upstream-ca", str(files["ca"]), "--default-timeout", "5",
                    "--upstream-cert", str(files["stranger"]),
                    "--upstream-key", str(files["stranger_key"]))  # fmt: skip
    assert response.status_code == 503, response.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream-tls", "--upstream-cert", "c.pem"], "--upstream-cert and --upstream-key go together"),
        (["--upstream-cert", "c.pem", "--upstream-key", "k.pem"], "need --upstream-tls"),
        (
            ["--upstream-tls", "--upstream-cert", "missing.pem", "--upstream-key", "missing.pem"],
            "missing.pem",
        ),
    ],
)
def test_bad_certificate_arguments_are_refused_before_serving(
    gen_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(gen_dir / "pygateway_serve.py"), "--upstream", "127.0.0.1:1", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
