"""End to end over HTTP/2 (cleartext, prior knowledge): the generated app under hypercorn, against the real
backend. httpx (http2=True, http1=False) for streams, a unary call and a streamed request body; the `h2`
library directly for what httpx cannot show: HTTP trailers, full duplex on one stream, stream resets.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from tests.conftest import free_port, wait_http
from tests.stream_support import wait_until

WATCH = "/v1/shelves/fiction/events:watch"
CHAT = "/v1/chat"
SOCKET_TIMEOUT = 5.0

# The app of every gateway module in the tree, served by hypercorn's asyncio `serve()`. The grpc.aio
# channel is created inside the serving event loop (channels belong to the loop that creates them).
LAUNCHER = textwrap.dedent(
    """
    import asyncio
    import importlib
    import sys
    from pathlib import Path

    import grpc.aio
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    gen, upstream, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, str(gen))
    import pygateway_runtime
    from pygateway_runtime.serve import discover


    async def main() -> None:
        channel = grpc.aio.insecure_channel(upstream)
        apps = [importlib.import_module(name).create_app(channel) for name in discover(gen)]
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.loglevel = "WARNING"
        config.graceful_timeout = 1
        await serve(pygateway_runtime.combine(*apps), config, mode="asgi")


    asyncio.run(main())
    """
)


@dataclass
class H2Server:
    port: int
    url: str
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def h2_gateway(gen_dir: Path, backend: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[H2Server]:
    launcher = tmp_path_factory.mktemp("h2") / "launch_hypercorn.py"
    launcher.write_text(LAUNCHER)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(gen_dir)}
    argv = [sys.executable, str(launcher), str(gen_dir), f"127.0.0.1:{backend.port}", str(port)]
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
    server = H2Server(port, f"http://127.0.0.1:{port}", process)
    try:
        wait_http(server.url + "/", process)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def h2_client(h2_gateway: H2Server, backend: Any) -> Iterator[httpx.Client]:
    backend.reset()
    with httpx.Client(base_url=h2_gateway.url, http1=False, http2=True, timeout=10.0) as client:
        yield client


# ------------------------------------------------------------------------------------------ raw HTTP/2


@dataclass
class H2Response:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] | None = None
    ended: bool = False
    reset: int | None = None  # RST_STREAM error code

    @property
    def status(self) -> int:
        return int(dict(self.headers)[":status"])

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


class RawH2:
    """A minimal HTTP/2 client connection (prior knowledge) over one socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.responses: dict[int, H2Response] = {}
        self._flush()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        end_stream: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        pseudo = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "gateway.test")]
        self.conn.send_headers(stream_id, [*pseudo, *headers], end_stream=end_stream)
        self.responses[stream_id] = H2Response()
        self._flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)
        self._flush()

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, error_code=8)  # CANCEL
        self._flush()

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("the server closed the connection")
        for event in self.conn.receive_data(data):
            response = self.responses.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, h2.events.ResponseReceived) and response:
                response.headers = list(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived) and response:
                response.body += event.data or b""
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.TrailersReceived) and response:
                response.trailers = list(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.StreamEnded) and response:
                response.ended = True
            elif isinstance(event, h2.events.StreamReset) and response:
                response.reset = event.error_code
                response.ended = True
        self._flush()

    def until(self, stream_id: int, predicate: Any) -> H2Response:
        response = self.responses[stream_id]
        while not predicate(response):
            if response.ended:
                raise AssertionError(f"stream {stream_id} ended first: {response}")
            self._receive()
        return response

    def complete(self, stream_id: int) -> H2Response:
        response = self.responses[stream_id]
        while not response.ended:
            self._receive()
        return response


def lines(body: bytes) -> list[Any]:
    assert body.endswith(b"\n"), body
    return [json.loads(line) for line in body.split(b"\n")[:-1]]


# ---------------------------------------------------------------------------------------------- httpx


def test_h2_watch_ndjson(h2_client: httpx.Client, backend: Any) -> None:
    with h2_client.stream("GET", WATCH, params={"count": 6, "intervalMs": 10}) as response:
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert response.headers["grpc-metadata-x-feed-initial"] == "yes"
        assert "transfer-encoding" not in response.headers  # HTTP/2 frames the body itself
        received = [json.loads(line) for line in response.iter_lines() if line]
    assert [int(line["result"]["seq"]) for line in received] == list(range(6))
    assert all(list(line) == ["result"] for line in received)
    assert backend.recorder.last("Watch").messages_sent == 6


def test_h2_watch_sse(h2_client: httpx.Client) -> None:
    response = h2_client.get(WATCH, params={"count": 2}, headers={"Accept": "text/event-stream"})
    assert response.http_version == "HTTP/2"
    assert response.headers["content-type"] == "text/event-stream"
    blocks = response.text.split("\n\n")
    assert blocks[-1] == ""
    assert [json.loads(b.removeprefix("data: "))["seq"] for b in blocks[:2]] == ["0", "1"]
    assert blocks[2] == 'event: end\ndata: {"trailers":{"x-feed-trailer":"done"}}'


def test_h2_watch_error_mid_stream(h2_client: httpx.Client) -> None:
    response = h2_client.get(WATCH, params={"count": 3, "failCode": 9, "failAfter": 1})
    assert response.status_code == 200
    *events, last = lines(response.content)
    assert len(events) == 1
    assert last["error"]["code"] == 9
    assert last["trailers"] == {"x-feed-trailer": "done"}


def test_h2_unary_get(h2_client: httpx.Client) -> None:
    response = h2_client.get("/v1/shelves/fiction/books/dune")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert response.json()["title"] == "Dune"
    missing = h2_client.get("/v1/shelves/fiction/books/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == 5


def test_h2_upload(h2_client: httpx.Client) -> None:
    response = h2_client.post("/v1/uploads", content=b'{"name": "a", "data": "xy"}\n{"name": "b"}')
    assert response.http_version == "HTTP/2"
    assert response.json() == {"chunks": 2, "bytes": "2", "names": ["a", "b"]}


def test_h2_chat_streamed_request_body(h2_gateway: H2Server, backend: Any) -> None:
    backend.reset()

    async def body() -> AsyncIterator[bytes]:
        for text in ("one", "two", "three"):
            yield json.dumps({"text": text}).encode() + b"\n"
            await asyncio.sleep(0.05)

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(base_url=h2_gateway.url, http1=False, http2=True, timeout=10) as client:
            return await client.post(CHAT + "?room=h2", content=body())

    response = asyncio.run(run())
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert [line["result"] for line in lines(response.content)] == [
        {"user": "system", "text": "joined h2", "seq": "-1"},
        {"user": "echo", "text": "one", "seq": "0"},
        {"user": "echo", "text": "two", "seq": "1"},
        {"user": "echo", "text": "three", "seq": "2"},
    ]
    assert [m.room for m in backend.recorder.last("Chat").messages] == ["h2", "", ""]


HOP_BY_HOP_H2 = [
    ("te", "trailers"),  # the one connection-specific header HTTP/2 allows
    ("http2-settings", "AAMAAABkAAQAAP__"),
    ("proxy-authorization", "Basic c2VjcmV0"),
    ("trailer", "x-late"),
    ("grpc-metadata-te", "deflate"),
    ("grpc-metadata-connection", "close"),
    ("grpc-metadata-keep-alive", "timeout=5"),
    ("grpc-metadata-proxy-connection", "keep-alive"),
    ("grpc-metadata-transfer-encoding", "chunked"),
    ("grpc-metadata-upgrade", "websocket"),
    ("grpc-metadata-http2-settings", "AAMAAABkAAQAAP__"),
    ("grpc-metadata-trailer", "x-late"),
    ("grpc-metadata-x-probe", "kept"),
]
HOP_BY_HOP_KEYS = {
    "te", "http2-settings", "proxy-authorization", "trailer", "connection", "keep-alive", "proxy-connection",
    "transfer-encoding", "upgrade",
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/shelves/fiction/books/dune", None),
        ("GET", WATCH + "?count=1", None),
        ("POST", CHAT, b'{"text": "hi"}\n'),
    ],
)
def test_h2_hop_by_hop_metadata_never_reaches_backend(
    h2_client: httpx.Client, backend: Any, method: str, path: str, body: bytes | None
) -> None:
    response = h2_client.request(method, path, headers=HOP_BY_HOP_H2, content=body)
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200, response.text
    [call] = backend.recorder.calls
    keys = {key for key, _ in call.metadata}
    assert not keys & HOP_BY_HOP_KEYS, call.metadata
    assert not any(key.startswith(":") for key in keys), call.metadata
    assert call.metadata_values("x-probe") == ["kept"]


# ------------------------------------------------------------------------------------------------ raw h2


def test_h2_trailers_on_successful_stream(h2_gateway: H2Server) -> None:
    """With `TE: trailers` a successful stream's trailer metadata goes out as HTTP trailers, with the final
    gRPC code as Grpc-Status."""
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("GET", WATCH + "?count=3", [("te", "trailers")])
        response = conn.complete(stream)
    assert response.reset is None, response
    assert response.status == 200
    assert [int(line["result"]["seq"]) for line in lines(response.body)] == [0, 1, 2]
    assert response.trailers == [("grpc-trailer-x-feed-trailer", "done"), ("grpc-status", "0")]


def test_h2_trailers_without_trailer_metadata(h2_gateway: H2Server) -> None:
    """Chat sends no trailer metadata: the trailers still come (Grpc-Status alone; an empty trailer block
    would make hypercorn drop the whole connection), and the connection stays usable."""
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("POST", CHAT, [("te", "trailers")], end_stream=False)
        conn.send(stream, b'{"text": "hi"}\n', end_stream=True)
        response = conn.complete(stream)
        assert response.reset is None, response
        assert lines(response.body) == [{"result": {"user": "echo", "text": "hi", "seq": "0"}}]
        assert response.trailers == [("grpc-status", "0")]
        other = conn.request("GET", "/v1/shelves/fiction/books/dune", [("te", "trailers")])
        assert json.loads(conn.complete(other).body)["title"] == "Dune"


def test_h2_no_trailers_without_te(h2_gateway: H2Server) -> None:
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("GET", WATCH + "?count=2")
        response = conn.complete(stream)
    assert response.reset is None
    assert response.trailers is None
    assert len(lines(response.body)) == 2


def test_h2_failed_stream_with_te_trailers(h2_gateway: H2Server) -> None:
    """A failure after messages: the error line carries the trailers; the HTTP trailers repeat them."""
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("GET", WATCH + "?count=3&failCode=9&failAfter=2", [("te", "trailers")])
        response = conn.complete(stream)
    assert response.reset is None, response
    *events, last = lines(response.body)
    assert len(events) == 2
    assert last["error"]["code"] == 9
    assert last["trailers"] == {"x-feed-trailer": "done"}
    # grpc-status-details-bin (reserved) stays out: its content is in the error line.
    assert response.trailers == [("grpc-trailer-x-feed-trailer", "done"), ("grpc-status", "9")]


def test_h2_bad_request_line_trailers(h2_gateway: H2Server) -> None:
    """A bad Chat line after a reply: error line, Grpc-Status 3 (the gateway's INVALID_ARGUMENT)."""
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("POST", CHAT, [("te", "trailers")], end_stream=False)
        conn.send(stream, b'{"text": "hi"}\n')
        conn.until(stream, lambda r: b"\n" in r.body)
        conn.send(stream, b"{oops\n")
        response = conn.complete(stream)
    assert response.reset is None, response
    first, last = lines(response.body)
    assert first["result"]["text"] == "hi"
    assert last["error"]["code"] == 3
    assert response.trailers == [("grpc-status", "3")]


def test_h2_chat_full_duplex(h2_gateway: H2Server, backend: Any) -> None:
    """On one HTTP/2 stream each reply is read before the next request line is sent."""
    backend.reset()
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("POST", CHAT, [("content-type", "application/x-ndjson")], end_stream=False)
        for index, text in enumerate(["one", "two", "three"]):
            conn.send(stream, json.dumps({"text": text}).encode() + b"\n")
            response = conn.until(stream, lambda r, n=index + 1: r.body.count(b"\n") >= n)
            assert lines(response.body)[index] == {
                "result": {"user": "echo", "text": text, "seq": str(index)}
            }
        conn.send(stream, b"", end_stream=True)
        response = conn.complete(stream)
    assert response.status == 200
    assert response.reset is None
    assert len(lines(response.body)) == 3


def test_h2_stream_reset_cancels_backend(h2_gateway: H2Server, backend: Any) -> None:
    backend.reset()
    with RawH2(h2_gateway.port) as conn:
        stream = conn.request("GET", WATCH + "?count=100&intervalMs=100")
        conn.until(stream, lambda r: r.body.count(b"\n") >= 2)
        conn.reset(stream)
        call = backend.recorder.last("Watch")
        assert wait_until(lambda: call.cancelled, timeout=3), "Watch outlived its reset stream"
        # The connection itself stays usable.
        other = conn.request("GET", "/v1/shelves/fiction/books/dune")
        assert json.loads(conn.complete(other).body)["title"] == "Dune"
