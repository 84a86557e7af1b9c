"""Helpers for the native transport tests: backends as subprocesses on free loopback ports (stopped by
PID), a test CA, and running a coroutine on a fresh event loop (the stock loop or uvloop)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run(coro: Coroutine[Any, Any, T], *, uvloop: bool = False, timeout: float = 60.0) -> T:
    """Run `coro` on a new loop, bounded by `timeout` (a hang is a failure, not a stuck suite)."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    if uvloop:
        import uvloop as _uvloop

        return _uvloop.run(bounded())
    return asyncio.run(bounded())


class Backend:
    """tests/native_backend.py (grpc.aio) or the grpc-go backend, as a subprocess."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        go: bool = False,
        max_concurrent_streams: int = 0,
        tls: tuple[Path, Path] | None = None,
        grace: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.go = go
        if go:
            self.extra = [f"-grace={grace}s"]
            if max_concurrent_streams:
                self.extra.append(f"-max-concurrent-streams={max_concurrent_streams}")
            if tls:
                self.extra += [f"-tls-key={tls[0]}", f"-tls-cert={tls[1]}"]
        else:
            self.extra = ["--grace", str(grace)]
            if max_concurrent_streams:
                self.extra += ["--max-concurrent-streams", str(max_concurrent_streams)]
            if tls:
                self.extra += ["--tls", str(tls[0]), str(tls[1])]
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if self.go:
            from tests.native_go import build_go_backend

            argv = [str(build_go_backend()), "-addr", self.target, *self.extra]
        else:
            argv = [
                sys.executable,
                "-m",
                "tests.native_backend",
                "--host",
                self.host,
                "--port",
                str(self.port),
                *self.extra,
            ]
        self.process = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != b"ready":
            self.kill()
            raise RuntimeError(f"backend did not start: {line!r}")

    def terminate(self, wait: bool = True) -> None:
        """SIGTERM: the grpc.aio backend stops gracefully (grace period --grace)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if wait:
                self.process.wait(30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def wait(self, timeout: float = 30) -> None:
        assert self.process is not None
        self.process.wait(timeout)


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed (for localhost / 127.0.0.1): (ca, key, cert)."""
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pygateway test CA",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, key, cert


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")
