"""Upstream faults through the shipped serve command (a subprocess), with both servers it picks: uvicorn
(every module: the feed service has WebSocket routes) and granian (the shop service alone, or every module
with `--server granian --websocket off` where streams are involved).

- upstream not running: 503 UNAVAILABLE at once, for unary calls and streams;
- upstream restarted on the same port: the gateway recovers by itself within seconds (serve's reconnect
  backoff options);
- upstream slow: the deadline (`--default-timeout` or `Grpc-Timeout`) ends the call with 504;
- upstream killed mid-stream: the stream ends with an error line/event and the connection is reusable;
- upstream replies over `--max-receive-bytes`: 502 RESOURCE_EXHAUSTED naming the gateway's limit (not
  the 429 of a rate limit), for unary calls, before a stream's first message and mid-stream.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import GatewayServer, free_port
from tests.e2e_support import error_body
from tests.protoc_support import ROOT
from tests.stream_support import LAST_CHUNK, RawStream, chunk, start_request

pytestmark = pytest.mark.timeout(60)

BOOK = "/v1/shelves/fiction/books/dune"
WATCH = "/v1/shelves/fiction/events:watch"
SHOP_ONLY = ["shop.v1.shop_pb2_gateway_shop_service"]  # no WebSocket routes: granian
#: server name -> serve arguments selecting it (uvicorn serves every module, granian the shop service)
SERVERS = {"uvicorn": [], "granian": SHOP_ONLY}
STREAMING_SERVERS = {"uvicorn": [], "granian": ["--server", "granian", "--websocket", "off"]}
WITHIN = 1.0  # an unreachable upstream is reported within this many seconds


class BackendProcess:
    """`python -m demo.backend --port PORT` as a subprocess that tests kill (SIGKILL) and restart."""

    def __init__(self, gen: Path, port: int) -> None:
        self.gen = gen
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> BackendProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo.backend", "--port", str(self.port), "--gen", str(self.gen)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.process = process
        assert process.stdout is not None
        line = process.stdout.readline()
        if b"listening" not in line:
            self.kill()
            raise RuntimeError(f"backend did not start on port {self.port}: {line!r}")
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


@pytest.fixture
def backend_process(gen_dir: Path) -> Iterator[BackendProcess]:
    backend = BackendProcess(gen_dir, free_port()).start()
    try:
        yield backend
    finally:
        backend.kill()


def serve(gen_dir: Path, upstream_port: int, extra: list[str]) -> GatewayServer:
    return GatewayServer(gen_dir, upstream_port, extra)


def timed_get(client: httpx.Client, url: str, **kwargs: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.get(url, **kwargs)
    return response, time.monotonic() - started


# ---------------------------------------------------------------------------------------------- not running


@pytest.mark.parametrize("server", SERVERS)
def test_upstream_not_running_is_503_at_once(gen_dir: Path, server: str) -> None:
    """Nothing listens on the upstream port: every call (first and later ones, while grpc backs off
    between connection attempts) is 503 UNAVAILABLE well within a second, never a hang."""
    gateway = serve(gen_dir, free_port(), SERVERS[server])
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            for _ in range(5):
                response, elapsed = timed_get(client, BOOK)
                assert error_body(response, 503, 14)["message"]
                assert elapsed < WITHIN, f"503 after {elapsed:.2f}s"
                time.sleep(0.2)
    finally:
        gateway.stop()


@pytest.mark.parametrize("server", STREAMING_SERVERS)
@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_upstream_not_running_stream_is_503_at_once(gen_dir: Path, accept: str, server: str) -> None:
    """A stream's first read fails: one complete 503 response whose body is the stream's error line
    (NDJSON) or `event: error` (SSE)."""
    gateway = serve(gen_dir, free_port(), STREAMING_SERVERS[server])
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            response, elapsed = timed_get(client, WATCH, headers={"Accept": accept})
        assert elapsed < WITHIN, f"503 after {elapsed:.2f}s"
        assert response.status_code == 503
        assert response.headers["content-type"] == accept
        text = response.text
        if accept == "text/event-stream":
            assert text.startswith("event: error\ndata: ")
            text = text.removeprefix("event: error\ndata: ")
        assert json.loads(text)["error"]["code"] == 14
    finally:
        gateway.stop()


def test_silent_upstream_is_503_within_the_connect_timeout(gen_dir: Path) -> None:
    """The upstream accepts TCP connections but never speaks HTTP/2 (a hung process, a half-dead proxy):
    the first call waits for one connection attempt, which serve bounds to 2 s (grpc's default: 20 s),
    then 503; later calls fail at once while grpc backs off."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes handshakes; nothing ever reads or writes
        gateway = serve(gen_dir, silent.getsockname()[1], SHOP_ONLY)
        try:
            with httpx.Client(base_url=gateway.url, timeout=30) as client:
                first, first_elapsed = timed_get(client, BOOK)
                second, second_elapsed = timed_get(client, BOOK)
        finally:
            gateway.stop()
    error_body(first, 503, 14)
    error_body(second, 503, 14)
    assert 1.5 < first_elapsed < 3.0, f"first call answered after {first_elapsed:.2f}s"
    assert second_elapsed < WITHIN


# ---------------------------------------------------------------------------------------------- restart


@pytest.mark.parametrize("server", SERVERS)
def test_upstream_restart_recovers_without_gateway_restart(
    gen_dir: Path, backend_process: BackendProcess, server: str
) -> None:
    """The upstream dies, stays down long enough for grpc's reconnect backoff to grow (calls fail with 503
    meanwhile), and comes back on the same port: calls succeed again within a few seconds (backoff capped
    at 2 s by serve's channel options; grpc's default cap is 120 s)."""
    gateway = serve(gen_dir, backend_process.port, SERVERS[server])
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            assert client.get(BOOK).status_code == 200
            backend_process.kill()
            down_until = time.monotonic() + 4.0
            while time.monotonic() < down_until:
                response, elapsed = timed_get(client, BOOK)
                assert response.status_code == 503 and elapsed < WITHIN
                time.sleep(0.25)
            backend_process.start()
            restarted = time.monotonic()
            while True:
                response = client.get(BOOK)
                if response.status_code == 200:
                    break
                assert response.status_code == 503
                assert time.monotonic() - restarted < 5.0, "the gateway did not reconnect within 5 s"
                time.sleep(0.05)
            recovered = time.monotonic() - restarted
            print(f"{server}: recovered {recovered:.2f}s after the upstream restarted")
            assert response.json()["title"] == "Dune"
    finally:
        gateway.stop()


# ---------------------------------------------------------------------------------------------- deadlines


@pytest.fixture(scope="module", params=list(SERVERS))
def timeout_gateway(gen_dir: Path, backend: Any, request: pytest.FixtureRequest) -> Iterator[GatewayServer]:
    server = GatewayServer(gen_dir, backend.port, [*SERVERS[request.param], "--default-timeout", "0.5"])
    yield server
    server.stop()


def test_slow_upstream_default_timeout_is_504(timeout_gateway: GatewayServer) -> None:
    with httpx.Client(base_url=timeout_gateway.url, timeout=10) as client:
        response, elapsed = timed_get(client, BOOK, headers={"Grpc-Metadata-X-Backend-Delay-Ms": "2000"})
    assert error_body(response, 504, 4)["message"] == "Deadline Exceeded"
    assert 0.45 < elapsed < 1.0, f"504 after {elapsed:.3f}s for a 0.5 s deadline"


def test_slow_upstream_grpc_timeout_is_504(timeout_gateway: GatewayServer) -> None:
    """A client's Grpc-Timeout overrides the default deadline."""
    with httpx.Client(base_url=timeout_gateway.url, timeout=10) as client:
        response, elapsed = timed_get(
            client, BOOK, headers={"Grpc-Metadata-X-Backend-Delay-Ms": "2000", "Grpc-Timeout": "300m"}
        )
    error_body(response, 504, 4)
    assert 0.25 < elapsed < 0.7, f"504 after {elapsed:.3f}s for a 300 ms deadline"


def test_upstream_within_deadline_is_200(timeout_gateway: GatewayServer) -> None:
    with httpx.Client(base_url=timeout_gateway.url, timeout=10) as client:
        response = client.get(BOOK, headers={"Grpc-Metadata-X-Backend-Delay-Ms": "100"})
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------- mid-stream


@pytest.mark.parametrize("server", STREAMING_SERVERS)
@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_upstream_killed_mid_stream_releases_connection(
    gen_dir: Path, backend_process: BackendProcess, accept: str, server: str
) -> None:
    """SIGKILL to the upstream between messages: the stream ends with an UNAVAILABLE error line (NDJSON)
    or `event: error` (SSE), the chunked response is complete, and the same HTTP/1.1 connection then
    serves the next request (a clean 503 while the upstream is down)."""
    gateway = serve(gen_dir, backend_process.port, STREAMING_SERVERS[server])
    try:
        with RawStream(gateway.port, timeout=10) as stream:
            stream.send(start_request("GET", WATCH + "?count=100&intervalMs=100", [("Accept", accept)]))
            assert stream.read_head() == 200
            assert stream.chunked
            first = stream.line()
            assert first is not None and b'"seq":"0"' in first
            backend_process.kill()
            killed = time.monotonic()
            rest = stream.rest().decode()
            ended = time.monotonic() - killed
            assert stream.ended, "the response did not end"
            assert ended < 2.0, f"the stream ended {ended:.2f}s after the upstream died"
            if accept == "text/event-stream":
                events = [e.strip("\n") for e in rest.split("\n\n") if e.strip()]
                assert all(e.startswith("data: ") for e in events[:-1])
                assert events[-1].startswith("event: error\ndata: ")
                final = json.loads(events[-1].removeprefix("event: error\ndata: "))
            else:
                lines = [json.loads(line) for line in rest.splitlines() if line]
                assert all("result" in item for item in lines[:-1])
                final = lines[-1]
            assert final["error"]["code"] == 14
            # The connection is free for the next request.
            stream.send(start_request("GET", BOOK))
            next_status, next_body = read_response(stream)
            assert next_status == 503 and json.loads(next_body)["code"] == 14
    finally:
        gateway.stop()


def read_response(stream: RawStream) -> tuple[int, bytes]:
    """The next response on a RawStream's connection (after a finished one)."""
    stream.body, stream.ended, stream.chunked = b"", False, False
    status = stream.read_head()
    return status, stream.rest()


# ---------------------------------------------------------------------------------------------- huge replies

LIMIT = 65536


@pytest.fixture(scope="module", params=list(STREAMING_SERVERS))
def limited(
    gen_dir: Path, backend: Any, request: pytest.FixtureRequest
) -> Iterator[tuple[str, GatewayServer]]:
    """(server name, gateway) with `--max-receive-bytes 65536`, every module (granian: no WebSocket)."""
    server = GatewayServer(
        gen_dir, backend.port, [*STREAMING_SERVERS[request.param], "--max-receive-bytes", str(LIMIT)]
    )
    yield request.param, server
    server.stop()


def test_huge_unary_reply_is_502(limited: tuple[str, GatewayServer]) -> None:
    """EchoScalars echoes a 100 kB string: over the gateway's receive limit. 502 with RESOURCE_EXHAUSTED
    and a message naming the gateway's limit (429 would read as a rate limit to clients)."""
    with httpx.Client(base_url=limited[1].url, timeout=10) as client:
        response = client.post("/v1/scalars", json={"fString": "x" * 100_000})
        small = client.post("/v1/scalars", json={"fString": "x" * 1000})
    body = error_body(response, 502, 8)
    assert body["message"].startswith("upstream reply exceeded the gateway's limit (")
    assert f"limit {LIMIT})" in body["message"]
    assert small.status_code == 200


def test_huge_first_stream_message_is_502(limited: tuple[str, GatewayServer]) -> None:
    gateway = limited[1]
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        response = client.get(WATCH + "?count=3&padding=200000")
    assert response.status_code == 502
    final = json.loads(response.text)
    assert final["error"]["code"] == 8
    assert final["error"]["message"].startswith("upstream reply exceeded the gateway's limit (")


def test_huge_reply_mid_stream_ends_stream_with_error(limited: tuple[str, GatewayServer]) -> None:
    """Chat echoes each message: a small one goes through, a 100 kB one ends the stream (status 200 is
    gone) with a RESOURCE_EXHAUSTED error line naming the gateway's limit."""
    gateway = limited[1]
    with RawStream(gateway.port, timeout=10) as stream:
        stream.send(start_request("POST", "/v1/chat", chunked=True))
        stream.send(chunk(b'{"text": "small"}\n'))
        assert stream.read_head() == 200
        assert stream.json_line()["result"]["text"] == "small"
        stream.send(chunk(json.dumps({"text": "x" * 100_000}).encode() + b"\n"))
        final = stream.json_line()
        stream.send(LAST_CHUNK)
        assert final["error"]["code"] == 8, final
        assert final["error"]["message"].startswith("upstream reply exceeded the gateway's limit (")
        assert stream.json_line() is None


@pytest.mark.parametrize("limited", ["uvicorn"], indirect=True)
def test_huge_reply_over_websocket_closes_4008(limited: tuple[str, GatewayServer]) -> None:
    gateway = limited[1]
    url = gateway.url.replace("http://", "ws://") + WATCH + "?count=3&padding=200000"
    with connect(url, open_timeout=5) as ws:
        message = json.loads(ws.recv(timeout=5))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert message["error"]["code"] == 8
    assert message["error"]["message"].startswith("upstream reply exceeded the gateway's limit (")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008


def test_upstream_refusing_a_huge_request_stays_429(gen_dir: Path, backend: Any) -> None:
    """The other RESOURCE_EXHAUSTED of message sizes: the upstream (grpc's default 4 MiB receive limit)
    refuses a request message over it. That is not the gateway's reply limit: it keeps the table's 429."""
    gateway = GatewayServer(gen_dir, backend.port, [*SHOP_ONLY, "--max-body-bytes", str(8 * 1024 * 1024)])
    try:
        with httpx.Client(base_url=gateway.url, timeout=20) as client:
            response = client.post("/v1/scalars", json={"fString": "x" * (5 * 1024 * 1024)})
        body = error_body(response, 429, 8)
        assert "SERVER: Received message larger than max" in body["message"]
    finally:
        gateway.stop()
