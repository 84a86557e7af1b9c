"""`--workers N`: worker processes sharing one port under a supervising parent (runtime/workers.py).

Real processes on a real loopback port: two workers both serve (distinct PIDs in `X-Gateway-Worker`,
each a child of the parent), a SIGKILLed worker is logged and replaced, and SIGTERM to the parent ends
every open stream on every worker with its final status before the parent exits 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.stream_support import RawStream, start_request, wait_until

pytestmark = pytest.mark.timeout(120)

BOOK = "/v1/shelves/fiction/books/dune"
LONG_WATCH = "/v1/shelves/fiction/events:watch?count=1000&intervalMs=100"
SHUTDOWN_STATUS = {"code": 14, "message": "gateway shutting down", "details": []}
#: server name -> serve arguments (with WebSocket routes the default is uvicorn)
SERVERS = {
    "uvicorn": [],
    "uvicorn-shared-socket": ["--worker-socket", "shared"],
    "granian": ["--server", "granian"],
}


class Supervised:
    """`python GEN/pygateway_serve.py --workers 2 --worker-header ...` as a subprocess (its own group)."""

    def __init__(self, gen: Path, upstream_port: int, log: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        #: one inherited socket: the kernel wakes any waiting worker, often the same one, so streams may
        #: all land on one worker (SO_REUSEPORT spreads them by connection hash)
        self.shared = "shared" in extra
        argv = [sys.executable, str(gen / "pygateway_serve.py"), "--upstream", f"127.0.0.1:{upstream_port}"]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--workers", "2", "--worker-header", *extra]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def pids(self, count: int = 40) -> set[int]:
        """Worker PIDs that answered `count` GETs, each on a new connection."""
        seen = set()
        for _ in range(count):
            response = httpx.get(self.url + BOOK, headers={"Connection": "close"}, timeout=10)
            assert response.status_code == 200, response.text
            seen.add(int(response.headers["x-gateway-worker"]))
        return seen

    def ready(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(self.url + BOOK, timeout=2).status_code == 200
        return False

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # workers left behind, if any
            os.killpg(self.process.pid, signal.SIGKILL)


def _parent(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2 :].split()[1])


def _group(pgid: int) -> list[int]:
    alive = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{entry}/stat").read_text()
                fields = text[text.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    alive.append(int(entry))
    return alive


@pytest.fixture(params=list(SERVERS))
def supervised(
    request: pytest.FixtureRequest, gen_dir: Path, backend: object, tmp_path: Path
) -> Iterator[Supervised]:
    server = Supervised(gen_dir, backend.port, tmp_path / "serve.log", SERVERS[request.param])  # type: ignore[attr-defined]
    try:
        assert wait_until(server.ready, timeout=30), server.log.read_text()
        if not server.shared:  # SO_REUSEPORT: a worker takes connections once it listens; wait for both
            assert wait_until(lambda: len(server.pids(10)) == 2, timeout=30), server.log.read_text()
        yield server
    finally:
        server.stop()


def test_two_workers_both_serve_and_a_killed_one_comes_back(supervised: Supervised) -> None:
    pids = supervised.pids()
    assert len(pids) == 2, pids
    assert all(_parent(pid) == supervised.process.pid for pid in pids)
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    seen: set[int] = set()

    def replaced() -> bool:
        seen.update(supervised.pids(10))
        return len(seen - pids) >= 1

    assert wait_until(replaced, timeout=20, interval=0.2), (seen, supervised.log.read_text())
    assert victim not in supervised.pids()
    log = supervised.log.read_text()
    assert f"(pid {victim}) exited with -9; restarting in 0.5 s" in log, log
    new = (seen - pids).pop()
    assert _parent(new) == supervised.process.pid


@pytest.mark.parametrize("how", ["SIGTERM to the parent", "SIGINT to the group (Ctrl-C)"])
def test_sigterm_drains_every_worker_and_the_parent_exits_0(supervised: Supervised, how: str) -> None:
    # Streams on different workers: open connections until both PIDs hold one.
    streams: dict[int, RawStream] = {}
    for _ in range(40):
        stream = RawStream(supervised.port, timeout=10)
        stream.send(start_request("GET", LONG_WATCH, []))
        assert stream.read_head() == 200
        first = stream.line()
        assert first is not None and b'"seq":"0"' in first
        pid = int(stream.header("x-gateway-worker") or 0)
        if pid in streams:
            stream.close()
            continue
        streams[pid] = stream
        if len(streams) == 2:
            break
    assert len(streams) == 2 or (supervised.shared and streams), streams
    started = time.monotonic()
    if how.startswith("SIGTERM"):
        os.kill(supervised.process.pid, signal.SIGTERM)
    else:
        os.killpg(supervised.process.pid, signal.SIGINT)
    for pid, stream in streams.items():
        last = None
        while (line := stream.line()) is not None:
            last = line
        assert last is not None, pid
        assert json.loads(last)["error"] == {**SHUTDOWN_STATUS, **json.loads(last)["error"]}, last
        assert json.loads(last)["error"]["message"] == "gateway shutting down"
        stream.close()
    assert supervised.process.wait(20) == 0, supervised.log.read_text()
    assert time.monotonic() - started < 10
    assert _group(supervised.process.pid) == [], "workers outlived the parent"
    log = supervised.log.read_text()
    assert f"{how.split()[0]}: stopping 2 worker(s)" in log and "Traceback" not in log, log


def test_bad_workers_value_is_a_usage_error(gen_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(gen_dir / "pygateway_serve.py"), "--upstream", "127.0.0.1:1", "--workers", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--workers: N (at least 1) or auto, not '0'" in result.stderr


SUPERVISE = """
import signal, sys
from protoc_gen_pygateway.runtime.workers import Supervisor
worker = sys.argv[1]
print("ready", flush=True)
sys.exit(Supervisor(2, lambda index: [sys.executable, "-c", worker]).run())
"""


@pytest.mark.parametrize(
    ("worker", "code"),
    [
        # Still starting (no handler installed yet: the default action of SIGTERM ends it): stopped as asked.
        ("import os, time; os.write(1, b'worker\\n'); time.sleep(60)", 0),
        # A worker that fails its own shutdown still makes the parent fail.
        (
            "import os, signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(3)); "
            "os.write(1, b'worker\\n'); time.sleep(60)",
            1,
        ),
    ],
    ids=["killed-while-starting", "failed-shutdown"],
)
def test_sigterm_while_a_worker_is_still_starting(worker: str, code: int) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, worker], stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"ready\n"
        # Both workers running (a handler installed first); they share our stdout, one write() each.
        assert [parent.stdout.readline(), parent.stdout.readline()] == [b"worker\n"] * 2
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(20) == code
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
