"""Shared fixtures: the generated testdata tree, a real grpc.aio backend on a loopback port, and the
generated gateway served by a real uvicorn (the shipped serve command) on another loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway_marker import MARKER_HELP, mark_gateway_tests
from tests.protoc_support import generate_tree

SHOP = ["shop/v1/shop.proto", "shop/v1/feed.proto"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mark_gateway_tests(items)


def _transport_line() -> str:
    from protoc_gen_pygateway.runtime.transport import default_transport

    where = (
        "$PYGATEWAY_TRANSPORT"
        if os.environ.get("PYGATEWAY_TRANSPORT")
        else "the default: $PYGATEWAY_TRANSPORT unset"
    )
    return f"gRPC transport of the served gateways: {default_transport()} ({where})"


def pytest_report_header(config: pytest.Config) -> str:
    return _transport_line()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.write_line(_transport_line())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s")


class GatewayServer:
    """`python GEN/pygateway_serve.py --upstream ... --listen ...` as a subprocess."""

    def __init__(self, gen: Path, upstream_port: int, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(gen)}
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(gen / "pygateway_serve.py"),
                "--upstream",
                f"127.0.0.1:{upstream_port}",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
                *(extra or []),
            ],
            env=env,
        )
        try:
            wait_http(self.url + "/", self.process)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def gen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """testdata's shop.proto generated (pb2, pyi, grpc, gateway) into a temp tree on sys.path."""
    out = tmp_path_factory.mktemp("gen")
    generate_tree(out, SHOP)
    sys.path.insert(0, str(out))
    return out


@pytest.fixture(scope="session")
def backend(gen_dir: Path) -> Iterator[object]:
    from demo.backend import BackgroundBackend

    with BackgroundBackend() as running:
        yield running


@pytest.fixture(scope="session")
def gateway(gen_dir: Path, backend: object) -> Iterator[GatewayServer]:
    """The serve command as shipped: embedded granian with WebSocket on (the feed service has WS routes)."""
    server = GatewayServer(gen_dir, backend.port)  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="session")
def uvicorn_gateway(gen_dir: Path, backend: object) -> Iterator[GatewayServer]:
    """The serve command's alternative server: `--server uvicorn` (h11 + wsproto)."""
    server = GatewayServer(gen_dir, backend.port, ["--server", "uvicorn"])  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def client(gateway: GatewayServer, backend: object) -> Iterator[httpx.Client]:
    backend.reset()  # type: ignore[attr-defined]
    with httpx.Client(base_url=gateway.url, timeout=10.0) as c:
        yield c
