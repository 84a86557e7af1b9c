"""Graceful shutdown of the serve command (a subprocess) on SIGTERM, with uvicorn and granian: it stops
accepting connections, lets unary calls in flight finish, ends open streams at once with a final
UNAVAILABLE "gateway shutting down" status (NDJSON line, SSE `event: error`, WebSocket message + close
1001), cancels what still runs after `--grace-period`, and exits 0. Also `Gateway.shutdown()` in process:
`combine()`d gateways shut down together.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import GatewayServer
from tests.e2e_support import without_request_info
from tests.stream_support import RawStream, chunk, start_request, wait_until

pytestmark = pytest.mark.timeout(60)

BOOK = "/v1/shelves/fiction/books/dune"
WATCH = "/v1/shelves/fiction/events:watch"
LONG_WATCH = WATCH + "?count=1000&intervalMs=100"
#: server name -> serve arguments selecting it. The default is uvicorn with the gateway's protocol and
#: wsproto (the feed service has WebSocket routes); `--server granian` keeps embedded granian + WebSocket.
SERVERS = {
    "default": [],
    "granian": ["--server", "granian"],
    "granian-no-ws": ["--websocket", "off"],
    "asyncio-loop": ["--loop", "asyncio"],
}
#: the servers with WebSocket on
WS_SERVERS = ["default", "granian"]
SHUTDOWN_STATUS = {"code": 14, "message": "gateway shutting down", "details": []}


def plain(message: Any) -> Any:
    """A final line or message with its error's google.rpc.RequestInfo detail checked and removed."""
    return {**message, "error": without_request_info(message["error"])}


PROMPTLY = 1.0  # open streams end within this many seconds of SIGTERM


class Unary(threading.Thread):
    """One unary GET in a thread: `status`, `body` and `done_at` (monotonic) once answered."""

    def __init__(self, url: str, delay_ms: int) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.delay_ms = delay_ms
        self.status = 0
        self.body: Any = None
        self.done_at = 0.0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            response = httpx.get(
                self.url, headers={"Grpc-Metadata-X-Backend-Delay-Ms": str(self.delay_ms)}, timeout=20
            )
            self.status, self.body = response.status_code, response.json()
        except Exception as exc:  # reported by the test
            self.error = exc
        self.done_at = time.monotonic()


def open_stream(port: int, target: str, headers: list[tuple[str, str]] | None = None) -> RawStream:
    stream = RawStream(port, timeout=10)
    stream.send(start_request("GET", target, headers or []))
    assert stream.read_head() == 200
    first = stream.line()
    assert first is not None and b'"seq":"0"' in first
    return stream


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def calls_in_flight(backend: Any, method: str, count: int) -> bool:
    return wait_until(lambda: len(backend.recorder.for_method(method)) >= count, timeout=5)


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_finishes_unary_calls_and_ends_streams(gen_dir: Path, backend: Any, server: str) -> None:
    backend.reset()
    gateway = GatewayServer(gen_dir, backend.port, SERVERS[server])
    try:
        ndjson = open_stream(gateway.port, LONG_WATCH)
        sse = open_stream(gateway.port, LONG_WATCH, [("Accept", "text/event-stream")])
        unary = Unary(gateway.url + BOOK, 1000)
        unary.start()
        assert calls_in_flight(backend, "GetBook", 1)
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)

        # NDJSON: the final line is the shutdown status, promptly; the chunked body is complete.
        lines = ndjson.timed_json_lines()
        assert ndjson.ended
        ended_at, final = lines[-1]
        assert plain(final) == {"error": SHUTDOWN_STATUS, "trailers": {}}
        assert all("result" in item for _, item in lines[:-1])
        assert ended_at - signalled < PROMPTLY, (
            f"NDJSON stream ended {ended_at - signalled:.2f}s after SIGTERM"
        )
        # SSE: `event: error` with the same status.
        events = [e.strip("\n") for e in sse.rest().decode().split("\n\n") if e.strip()]
        sse_ended = time.monotonic() - signalled
        assert sse.ended
        name, _, data = events[-1].partition("\ndata: ")
        assert name == "event: error"
        assert plain(json.loads(data)) == {"error": SHUTDOWN_STATUS, "trailers": {}}
        assert sse_ended < PROMPTLY
        ndjson.close()
        sse.close()
        # The upstream streams were cancelled.
        watches = backend.recorder.for_method("Watch")
        assert len(watches) == 2
        assert wait_until(lambda: all(call.cancelled for call in watches), timeout=2)

        # No new connections.
        assert wait_until(lambda: refused(gateway.port), timeout=2), "still accepting connections"

        # The unary call in flight finished normally, then the process exited 0.
        unary.join(10)
        assert unary.error is None and unary.status == 200, (unary.status, unary.body, unary.error)
        assert unary.body["title"] == "Dune"
        assert unary.done_at - signalled > 0.5  # it really was in flight
        assert gateway.process.wait(10) == 0
        exited = time.monotonic() - signalled
        print(
            f"{server}: streams ended {ended_at - signalled:.3f}s (NDJSON) / {sse_ended:.3f}s (SSE) after "
            f"SIGTERM, unary answered {unary.done_at - signalled:.2f}s, exit 0 after {exited:.2f}s"
        )
        assert exited < unary.done_at - signalled + 2.0
    finally:
        gateway.stop()


@pytest.mark.parametrize("server", SERVERS)
def test_grace_period_cancels_what_still_runs(gen_dir: Path, backend: Any, server: str) -> None:
    """A unary call longer than `--grace-period 1`: cancelled when the grace period ends, answered 503
    UNAVAILABLE (not the server's own 500), upstream call cancelled, process exit 0."""
    backend.reset()
    gateway = GatewayServer(gen_dir, backend.port, [*SERVERS[server], "--grace-period", "1"])
    try:
        unary = Unary(gateway.url + BOOK, 5000)
        unary.start()
        assert calls_in_flight(backend, "GetBook", 1)
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        unary.join(10)
        answered = unary.done_at - signalled
        assert unary.error is None, unary.error
        assert unary.status == 503
        assert unary.body["code"] == 14
        assert unary.body["message"] == "gateway shutting down: grace period over"
        assert 0.9 < answered < 1.6, f"answered {answered:.2f}s after SIGTERM with a 1 s grace period"
        assert gateway.process.wait(10) == 0
        exited = time.monotonic() - signalled
        assert exited < 2.5, f"exited {exited:.2f}s after SIGTERM"
        call = backend.recorder.last("GetBook")
        assert wait_until(lambda: call.cancelled, timeout=2)
        print(f"{server}: grace 1 s: 503 after {answered:.2f}s, exit 0 after {exited:.2f}s")
    finally:
        gateway.stop()


@pytest.mark.parametrize("server", WS_SERVERS)
def test_sigterm_ends_websocket_streams_with_1001(gen_dir: Path, backend: Any, server: str) -> None:
    backend.reset()
    gateway = GatewayServer(gen_dir, backend.port, SERVERS[server])
    try:
        url = gateway.url.replace("http://", "ws://") + LONG_WATCH
        with connect(url, open_timeout=5) as ws:
            assert "result" in json.loads(ws.recv(timeout=5))
            signalled = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            messages = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    messages.append(json.loads(ws.recv(timeout=5)))
            ended = time.monotonic() - signalled
        assert plain(messages[-1]) == {"error": SHUTDOWN_STATUS, "trailers": {}}
        assert all("result" in m for m in messages[:-1])
        frame = closed.value.rcvd
        assert frame is not None and frame.code == 1001 and frame.reason == "gateway shutting down"
        assert ended < PROMPTLY
        assert gateway.process.wait(10) == 0
    finally:
        gateway.stop()


@pytest.mark.parametrize("server", WS_SERVERS)
def test_sigterm_client_streams_and_streams_not_started(gen_dir: Path, backend: Any, server: str) -> None:
    """An upload still sending its body ends with 503; one whose body is complete gets its reply; a
    stream still waiting for its first message ends with a 503 whose body is the shutdown error line."""
    backend.reset()
    gateway = GatewayServer(gen_dir, backend.port, SERVERS[server])
    try:
        sending = RawStream(gateway.port, timeout=10)
        sending.send(start_request("POST", "/v1/uploads", chunked=True))
        sending.send(chunk(b'{"name": "a", "data": "x"}\n'))
        complete = RawStream(gateway.port, timeout=10)
        complete.send(
            start_request("POST", "/v1/uploads", [("Grpc-Metadata-X-Backend-Delay-Ms", "1000")], chunked=True)
        )
        complete.send(chunk(b'{"name": "b", "data": "yy"}\n') + b"0\r\n\r\n")
        waiting = RawStream(gateway.port, timeout=10)
        waiting.send(start_request("GET", WATCH, [("Grpc-Metadata-X-Backend-Delay-Ms", "5000")]))
        assert calls_in_flight(backend, "Upload", 2)
        assert calls_in_flight(backend, "Watch", 1)
        assert wait_until(lambda: any(c.messages for c in backend.recorder.for_method("Upload")), timeout=3)
        time.sleep(0.2)  # the complete upload's body is through the gateway
        gateway.process.send_signal(signal.SIGTERM)

        assert sending.read_head() == 503
        assert json.loads(sending.rest())["code"] == 14
        assert waiting.read_head() == 503
        assert waiting.header("content-type") == "application/x-ndjson"
        assert plain(json.loads(waiting.rest())) == {"error": SHUTDOWN_STATUS, "trailers": {}}
        assert complete.read_head() == 200
        assert json.loads(complete.rest()) == {"chunks": 1, "bytes": "2", "names": ["b"]}
        for stream in (sending, complete, waiting):
            stream.close()
        assert gateway.process.wait(10) == 0
    finally:
        gateway.stop()


# ---------------------------------------------------------------------------------------------- in process


async def _collect(app: Any, path: str, events: list[dict[str, Any]], first: asyncio.Event) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"count=1000&intervalMs=100",
        "root_path": "",
        "headers": [(b"host", b"gateway.test")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    never = asyncio.Event()
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await never.wait()  # the client stays
        return {"type": "http.disconnect"}

    async def send(event: dict[str, Any]) -> None:
        events.append(event)
        if event["type"] == "http.response.body" and event.get("body"):
            first.set()

    await app(scope, receive, send)


def test_combined_gateways_share_shutdown(gen_dir: Path, backend: Any) -> None:
    """Shutting down one part of a `combine()`d app ends the combined app's streams (and the other way
    round the flag reaches every part); new streams are then refused with 503."""
    runtime = importlib.import_module("pygateway_runtime")
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    feed = importlib.import_module("shop.v1.feed_pb2_gateway_feed_service")

    async def main() -> None:
        channel = grpc.aio.insecure_channel(backend.target)
        try:
            shop_app, feed_app = shop.create_app(channel), feed.create_app(channel)
            combined = runtime.combine(shop_app, feed_app)
            events: list[dict[str, Any]] = []
            first = asyncio.Event()
            task = asyncio.ensure_future(_collect(combined, WATCH, events, first))
            await asyncio.wait_for(first.wait(), 5)
            feed_app.shutdown()
            await asyncio.wait_for(task, 2)
            assert combined.shutting_down and shop_app.shutting_down
            bodies = [e for e in events if e["type"] == "http.response.body"]
            assert plain(json.loads(bodies[-1]["body"])) == {"error": SHUTDOWN_STATUS, "trailers": {}}
            assert bodies[-1]["more_body"] is False
            # A new stream during the shutdown: refused before calling the upstream.
            later: list[dict[str, Any]] = []
            await asyncio.wait_for(_collect(combined, WATCH, later, asyncio.Event()), 2)
            assert later[0]["status"] == 503
            assert plain(json.loads(later[1]["body"])) == {"error": SHUTDOWN_STATUS, "trailers": {}}
        finally:
            await channel.close()

    backend.reset()
    asyncio.run(main())
    assert len(backend.recorder.for_method("Watch")) == 1
