"""End to end, the life of a streaming call: an HTTP client going away mid-stream cancels the upstream call
(NDJSON, SSE, client and bidi streams), and a client that stops reading stops the backend too (flow
control end to end: the gateway neither buffers the stream in memory nor lets the backend run ahead).
Deadlines on streams are covered in test_e2e_streaming.py.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import GatewayServer, free_port
from tests.protoc_support import ROOT
from tests.stream_support import RawStream, rss_bytes, start_request, wait_until

WATCH = "/v1/shelves/fiction/events:watch"
CANCEL_WITHIN = 2.0


def last_call(backend: Any, method: str) -> Any:
    assert wait_until(lambda: bool(backend.recorder.for_method(method)), timeout=3), f"no {method} call"
    return backend.recorder.last(method)


def test_ndjson_client_disconnect_cancels_watch(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(start_request("GET", WATCH + "?count=100&intervalMs=100"))
        assert stream.read_head() == 200
        assert [int(stream.json_line()["result"]["seq"]) for _ in range(2)] == [0, 1]
    call = last_call(backend, "Watch")
    assert wait_until(lambda: call.cancelled, timeout=CANCEL_WITHIN), "Watch outlived its client"
    assert call.messages_sent < 100


def test_sse_client_disconnect_cancels_watch(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(
            start_request("GET", WATCH + "?count=100&intervalMs=100", [("Accept", "text/event-stream")])
        )
        assert stream.read_head() == 200
        assert stream.header("content-type") == "text/event-stream"
        line = stream.line()
        assert line is not None and line.startswith(b"data: {")
    call = last_call(backend, "Watch")
    assert wait_until(lambda: call.cancelled, timeout=CANCEL_WITHIN), "Watch outlived its SSE client"


def test_disconnect_before_first_message_cancels_watch(gateway: GatewayServer, backend: Any) -> None:
    """Gone before any event was sent (the response head is not out yet)."""
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(start_request("GET", WATCH, [("Grpc-Metadata-X-Backend-Delay-Ms", "3000")]))
        assert wait_until(lambda: bool(backend.recorder.for_method("Watch")), timeout=3)
    call = backend.recorder.last("Watch")
    assert wait_until(lambda: call.cancelled, timeout=CANCEL_WITHIN), "Watch outlived its client"
    assert call.messages_sent == 0


def test_chat_client_disconnect_cancels_call(gateway: GatewayServer, backend: Any) -> None:
    """The client leaves with the request body still open, after a reply."""
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(start_request("POST", "/v1/chat", chunked=True))
        stream.send_chunk(b'{"text": "hi"}\n')
        assert stream.read_head() == 200
        assert stream.json_line() == {"result": {"user": "echo", "text": "hi", "seq": "0"}}
    call = last_call(backend, "Chat")
    assert wait_until(lambda: call.cancelled, timeout=CANCEL_WITHIN), "Chat outlived its client"


def test_chat_disconnect_after_body_cancels_call(gateway: GatewayServer, backend: Any) -> None:
    """Request body complete and replies still expected: leaving then cancels the call as well."""
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(
            start_request("POST", "/v1/chat", [("Grpc-Metadata-X-Backend-Delay-Ms", "3000")], chunked=True)
        )
        stream.send_chunk(b'{"text": "hi"}\n')
        stream.send(b"0\r\n\r\n")
        assert wait_until(lambda: bool(backend.recorder.for_method("Chat")), timeout=3)
        time.sleep(0.1)
    call = backend.recorder.last("Chat")
    assert wait_until(lambda: call.cancelled, timeout=CANCEL_WITHIN), "Chat outlived its client"
    assert call.messages_sent == 0


def test_upload_client_disconnect_mid_body_cancels_call(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(start_request("POST", "/v1/uploads", chunked=True))
        stream.send_chunk(b'{"name": "a"}\n')
        assert wait_until(lambda: bool(last_call(backend, "Upload").messages), timeout=3)
    call = backend.recorder.last("Upload")
    assert wait_until(lambda: call.cancelled, timeout=CANCEL_WITHIN), "Upload outlived its client"
    assert call.messages_sent == 0


def test_slow_reader_backpressure(gateway: GatewayServer, backend: Any) -> None:
    """2000 events of 64 KiB (~130 MB) to a client that reads a few KB and pauses: the gateway's memory
    stays flat and the backend stalls on flow control long before the end of its stream."""
    backend.reset()
    pid = gateway.process.pid
    before = rss_bytes(pid)
    with RawStream(gateway.port, timeout=10) as stream:
        stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        stream.send(start_request("GET", WATCH + "?count=2000&padding=65536"))
        assert stream.read_head() == 200
        first = stream.line()
        assert first is not None and json.loads(first)["result"]["seq"] == "0"
        time.sleep(3.0)  # not reading
        call = backend.recorder.last("Watch")
        sent = call.messages_sent
        after = rss_bytes(pid)
        assert sent < 500, f"the backend ran ahead: {sent} of 2000 events sent to a stalled client"
        growth = after - before
        assert growth < 30 * 1024 * 1024, f"gateway RSS grew by {growth / 2**20:.1f} MiB"
    # Cancelled while blocked in a write, the backend's handler fails with grpc's ExecuteBatchError rather
    # than asyncio.CancelledError, which demo/feed_backend.py does not record as `cancelled`: check that
    # the backend stopped sending instead.
    assert wait_until(stopped_sending(call), timeout=5), "Watch kept sending after its client left"
    assert call.messages_sent < 2000


def stopped_sending(call: Any, quiet: float = 0.5) -> Any:
    """A predicate: `call.messages_sent` did not change for `quiet` seconds."""
    seen = {"count": -1, "since": 0.0}

    def check() -> bool:
        now = time.monotonic()
        if call.messages_sent != seen["count"]:
            seen["count"], seen["since"] = call.messages_sent, now
            return False
        return now - seen["since"] >= quiet

    return check


def test_upstream_crash_mid_stream_ends_with_error_line(gen_dir: Path) -> None:
    """The backend process dies (SIGKILL) between messages: the stream ends with an UNAVAILABLE error line
    (status stays 200: messages were sent), the HTTP response completes and the gateway keeps serving."""
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "demo.backend", "--port", str(port), "--gen", str(gen_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    server: GatewayServer | None = None
    try:
        assert backend.stdout is not None
        assert b"listening" in backend.stdout.readline()
        server = GatewayServer(gen_dir, port)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            url = "/v1/shelves/fiction/events:watch?count=100&intervalMs=100"
            with client.stream("GET", url) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                first = json.loads(next(lines))
                assert first["result"]["seq"] == "0"
                backend.send_signal(signal.SIGKILL)
                backend.wait(10)
                rest = [json.loads(line) for line in lines if line]
            assert rest, "the stream ended without a final line"
            assert all("result" in item for item in rest[:-1])
            assert rest[-1]["error"]["code"] == 14  # UNAVAILABLE
            # The gateway still answers (a clean 503 while the upstream is down).
            down = client.get("/v1/shelves/fiction/books/dune")
            assert down.status_code == 503 and down.json()["code"] == 14
    finally:
        if server is not None:
            server.stop()
        if backend.poll() is None:
            backend.kill()
            backend.wait(10)
