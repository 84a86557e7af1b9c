"""gRPC-Web: the wire format (protoc_gen_pygateway/runtime/grpcweb.py) and, end to end, the generated
gateway answering gRPC-Web requests from httpx and raw sockets (the Node clients: test_js_clients.py)."""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped,unused-ignore]

from protoc_gen_pygateway.runtime import grpcweb
from tests.conftest import GatewayServer
from tests.e2e_support import http_request, raw_exchange


def test_content_types() -> None:
    assert grpcweb.parse_content_type("application/grpc-web") == grpcweb.WebFormat(False, "proto")
    assert grpcweb.parse_content_type("application/grpc-web+proto") == grpcweb.WebFormat(False, "proto")
    assert grpcweb.parse_content_type("Application/GRPC-Web+JSON; charset=utf-8") == grpcweb.WebFormat(
        False, "json"
    )
    assert grpcweb.parse_content_type("application/grpc-web-text") == grpcweb.WebFormat(True, "proto")
    assert grpcweb.parse_content_type("application/grpc-web-text+proto") == grpcweb.WebFormat(True, "proto")
    assert grpcweb.parse_content_type("application/grpc-web-text+json") == grpcweb.WebFormat(True, "json")
    for other in (
        "application/grpc",
        "application/grpc-web+thrift",
        "application/grpc-webx",
        "application/json",
    ):
        assert grpcweb.parse_content_type(other) is None
    assert grpcweb.WebFormat(True, "proto").content_type == b"application/grpc-web-text+proto"
    for raw in grpcweb.CONTENT_TYPES:
        assert grpcweb.parse_content_type(raw) is not None


def test_frames_round_trip_in_any_split() -> None:
    body = (
        grpcweb.message_frame(b"abc")
        + grpcweb.message_frame(b"")
        + grpcweb.frame(0x80, b"grpc-status: 0\r\n")
    )
    for step in (1, 2, 3, 7, len(body)):
        decoder = grpcweb.FrameDecoder(limit=100)
        frames = []
        for i in range(0, len(body), step):
            frames += decoder.feed(body[i : i + step])
        decoder.finish()
        assert frames == [(0, b"abc"), (0, b""), (0x80, b"grpc-status: 0\r\n")]


def test_frame_limits_and_truncation() -> None:
    decoder = grpcweb.FrameDecoder(limit=10)
    with pytest.raises(grpcweb.MessageTooLargeError, match="larger than 10 bytes"):
        decoder.feed(struct.pack(">BI", 0, 11))  # refused from the header, before the payload arrives
    decoder = grpcweb.FrameDecoder(limit=10)
    assert decoder.feed(b"\x00\x00\x00\x00\x05ab") == []
    with pytest.raises(grpcweb.FrameError, match="ends inside a frame"):
        decoder.finish()


def test_single_message() -> None:
    assert grpcweb.single_message([(0, b"x")]) == b"x"
    with pytest.raises(grpcweb.FrameError, match="exactly one message, got 0"):
        grpcweb.single_message([])
    with pytest.raises(grpcweb.FrameError, match="exactly one message, got 2"):
        grpcweb.single_message([(0, b"x"), (0, b"y")])
    with pytest.raises(grpcweb.FrameError, match="compressed"):
        grpcweb.single_message([(1, b"x")])
    with pytest.raises(grpcweb.FrameError, match="0x80"):
        grpcweb.single_message([(0x80, b"x")])


def test_trailer_frame() -> None:
    raw = grpcweb.trailer_frame(5, "no book 'ä' 100%", b"\x01\x02", [("x-a", "1"), ("x-b-bin", b"\xff")])
    flag, length = struct.unpack(">BI", raw[:5])
    assert flag == 0x80 and length == len(raw) - 5
    pairs = grpcweb.parse_trailer_block(raw[5:])
    assert pairs == [
        ("grpc-status", "5"),
        ("grpc-message", "no book '%C3%A4' 100%25"),
        ("grpc-status-details-bin", "AQI"),
        ("x-a", "1"),
        ("x-b-bin", "/w"),
    ]
    assert grpcweb.status_headers(0, "", None) == [(b"grpc-status", b"0")]


def test_text_decoder_handles_concatenated_padded_chunks() -> None:
    frames = [grpcweb.message_frame(b"ab"), grpcweb.message_frame(b"cde"), grpcweb.message_frame(b"")]
    text = b"".join(base64.b64encode(f) for f in frames)  # each padded on its own
    assert b"=" in text[:-2]
    for step in (1, 3, 4, 5, len(text)):
        decoder = grpcweb.TextDecoder()
        out = b"".join(decoder.feed(text[i : i + step]) for i in range(0, len(text), step))
        decoder.finish()
        assert out == b"".join(frames)


def test_text_decoder_errors() -> None:
    decoder = grpcweb.TextDecoder()
    decoder.feed(b"AAA")
    with pytest.raises(grpcweb.FrameError, match="incomplete group"):
        decoder.finish()
    with pytest.raises(grpcweb.FrameError, match="not base64"):
        grpcweb.TextDecoder().feed(b"A*AA")
    with pytest.raises(grpcweb.FrameError, match="padding"):
        grpcweb.TextDecoder().feed(b"AA=AAAAA")
    assert grpcweb.encode_text(b"\x00\x00\x00\x00\x00") == b"AAAAAAA="


# ---------------------------------------------------------------------------------------------- end to end
# The generated testdata gateway (default options: rest+grpcweb+connect) under the shipped serve command
# (embedded granian) and `--server uvicorn`, in front of the real grpc.aio backend.

GET_BOOK = "/shop.v1.ShopService/GetBook"
ECHO = "/shop.v1.ShopService/EchoMetadata"
FAIL = "/shop.v1.ShopService/Fail"
WATCH = "/shop.v1.FeedService/Watch"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
}


def pb2(name: str) -> Any:
    import importlib

    return importlib.import_module(f"shop.v1.{name}")


def web_body(message: Any) -> bytes:
    return grpcweb.message_frame(message.SerializeToString())


def parse_web(body: bytes, text: bool = False) -> tuple[list[bytes], dict[str, str]]:
    """Messages and the trailer frame's pairs of a gRPC-Web response body."""
    if text:
        decoder = grpcweb.TextDecoder()
        body = decoder.feed(body)
        decoder.finish()
    frames = grpcweb.FrameDecoder(1 << 30)
    found = frames.feed(body)
    frames.finish()
    messages = [payload for flag, payload in found if flag == 0]
    trailers = [payload for flag, payload in found if flag == 0x80]
    assert len(trailers) <= 1 and all(flag in (0, 0x80) for flag, _ in found)
    if trailers:
        assert found[-1][0] == 0x80  # the trailer frame is last
    pairs = dict(grpcweb.parse_trailer_block(trailers[0])) if trailers else {}
    return messages, pairs


@pytest.fixture(params=["granian", "uvicorn"])
def server(
    request: pytest.FixtureRequest, gateway: GatewayServer, uvicorn_gateway: GatewayServer
) -> GatewayServer:
    return gateway if request.param == "granian" else uvicorn_gateway


@pytest.fixture
def web(server: GatewayServer, backend: Any) -> Iterator[httpx.Client]:
    backend.reset()
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


@pytest.mark.parametrize(
    "content_type", ["application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text"]
)
def test_unary(web: httpx.Client, content_type: str) -> None:
    shop = pb2("shop_pb2")
    body = web_body(shop.GetBookRequest(name="shelves/fiction/books/dune"))
    text = "text" in content_type
    if text:
        body = base64.b64encode(body)
    response = web.post(GET_BOOK, content=body, headers={"Content-Type": content_type, "X-Grpc-Web": "1"})
    assert response.status_code == 200
    expected = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
    assert response.headers["content-type"] == expected
    messages, trailers = parse_web(response.content, text)
    assert trailers == {"grpc-status": "0"}
    [raw] = messages
    book = shop.Book.FromString(raw)
    assert book.title == "Dune" and book.cover_thumbnail == b"\x89PNG\r\n\x1a\n\x00\xff"


def test_unary_json_codec(web: httpx.Client) -> None:
    body = grpcweb.message_frame(b'{"name": "shelves/fiction/books/dune"}')
    response = web.post(GET_BOOK, content=body, headers={"Content-Type": "application/grpc-web+json"})
    assert response.headers["content-type"] == "application/grpc-web+json"
    [raw], trailers = parse_web(response.content)
    assert trailers["grpc-status"] == "0"
    data = json.loads(raw)
    assert data["title"] == "Dune" and data["isbn"] == "9780441013593"


def test_text_request_in_padded_chunks(web: httpx.Client) -> None:
    """A -text body made of several padded base64 chunks (what browsers' grpc-web clients may send)."""
    frame = web_body(pb2("shop_pb2").GetBookRequest(name="shelves/fiction/books/dune"))
    chunks = b"".join(base64.b64encode(frame[i : i + 4]) for i in range(0, len(frame), 4))
    response = web.post(GET_BOOK, content=chunks, headers={"Content-Type": "application/grpc-web-text"})
    [raw], trailers = parse_web(response.content, text=True)
    assert trailers["grpc-status"] == "0"
    assert pb2("shop_pb2").Book.FromString(raw).title == "Dune"


def test_error_is_trailers_only_with_details(web: httpx.Client) -> None:
    shop = pb2("shop_pb2")
    request = shop.FailRequest(code=5, message="no such book: ä", reason="BOOK_MISSING")
    response = web.post(FAIL, content=web_body(request), headers={"Content-Type": "application/grpc-web"})
    assert response.status_code == 200 and response.content == b""
    assert response.headers["grpc-status"] == "5"
    assert response.headers["grpc-message"] == "no such book: %C3%A4"
    raw = response.headers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    assert status.code == 5 and status.message == "no such book: ä"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "BOOK_MISSING"


def test_header_and_trailer_metadata(web: httpx.Client, backend: Any) -> None:
    shop = pb2("shop_pb2")
    headers = {
        "Content-Type": "application/grpc-web+proto",
        "X-User": "alice",
        "X-Blob-Bin": base64.b64encode(b"\x00\x01").decode(),
        "Grpc-Metadata-Classic": "yes",
        "Grpc-Timeout": "5S",
    }
    response = web.post(ECHO, content=web_body(shop.EchoMetadataRequest(note="n")), headers=headers)
    assert response.headers["x-echo-initial"] == "yes"
    [raw], trailers = parse_web(response.content)
    assert trailers["grpc-status"] == "0"
    assert trailers["x-echo-trailer"] == "yes"
    assert "x-echo-bin" in trailers
    reply = shop.EchoMetadataResponse.FromString(raw)
    assert reply.metadata["x-user"].values == ["alice"]
    assert reply.metadata["x-blob-bin"].values == [base64.b64encode(b"\x00\x01").decode()]
    assert reply.metadata["classic"].values == ["yes"]
    assert 0 < reply.deadline_seconds.value <= 5.1  # grpc rounds deadlines up
    # gRPC-Web's own headers are not metadata; the permanent ones follow the REST rule
    assert "x-grpc-web" not in reply.metadata and "content-type" not in reply.metadata
    assert reply.metadata["grpcgateway-content-type"].values == ["application/grpc-web+proto"]


def test_hop_by_hop_and_smuggled_headers_never_reach_backend(server: GatewayServer, backend: Any) -> None:
    backend.reset()
    shop = pb2("shop_pb2")
    body = web_body(shop.EchoMetadataRequest(note="hi"))
    headers = [
        ("Content-Type", "application/grpc-web"),
        ("Connection", "keep-alive, x-secret, grpc-metadata-named"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("TE", "trailers"),
        ("Trailer", "x-checksum"),
        ("Upgrade", "h2c"),
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ("X-Secret", "s"),
        ("Grpc-Metadata-Named", "x"),
        ("Grpc-Metadata-Connection", "close"),
        ("Grpc-Metadata-Upgrade", "websocket"),
        ("Grpc-Metadata-Te", "trailers"),
        ("Grpc-Metadata-Grpc-Foo", "x"),
        ("Grpc-Foo", "x"),
        ("Connect-Foo", "x"),
        ("Grpc-Metadata-Host", "evil.example"),
        ("X-Kept", "yes"),
    ]
    (response,) = raw_exchange(server.port, http_request("POST", ECHO, headers, body))
    assert response.status == 200, response.body
    _, trailers = parse_web(response.body)
    assert trailers["grpc-status"] == "0"
    assert not {name for name, _ in response.headers} & HOP_BY_HOP
    [call] = backend.recorder.calls
    keys = {key for key, _ in call.metadata}
    assert keys == {
        "x-kept",
        "user-agent",
        "grpcgateway-content-type",
        "grpcgateway-host",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-request-id",  # the gateway's request id (observe.py), forwarded by the generated policy
    }, keys


def test_server_stream(web: httpx.Client) -> None:
    feed = pb2("feed_pb2")
    request = feed.WatchRequest(shelf="shelves/fiction", count=3)
    with web.stream(
        "POST", WATCH, content=web_body(request), headers={"Content-Type": "application/grpc-web"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["x-feed-initial"] == "yes"
        body = b"".join(r.iter_raw())
    messages, trailers = parse_web(body)
    assert [feed.Event.FromString(m).seq for m in messages] == [0, 1, 2]
    assert trailers == {"grpc-status": "0", "x-feed-trailer": "done"}


def test_server_stream_failing_midway(web: httpx.Client) -> None:
    feed = pb2("feed_pb2")
    request = feed.WatchRequest(shelf="shelves/fiction", count=5, fail_code=10, fail_after=2)
    response = web.post(WATCH, content=web_body(request), headers={"Content-Type": "application/grpc-web"})
    messages, trailers = parse_web(response.content)
    assert len(messages) == 2
    assert trailers["grpc-status"] == "10" and trailers["grpc-message"] == "failed after 2 events"
    assert trailers["x-feed-trailer"] == "done"
    assert "grpc-status-details-bin" in trailers


def test_server_stream_flushes_each_message(web: httpx.Client) -> None:
    feed = pb2("feed_pb2")
    request = feed.WatchRequest(shelf="shelves/fiction", count=2, interval_ms=400)
    with web.stream(
        "POST", WATCH, content=web_body(request), headers={"Content-Type": "application/grpc-web"}
    ) as r:
        started = time.monotonic()
        first = next(r.iter_raw())
        assert time.monotonic() - started < 0.3  # the first event before the second was even produced
        assert first[0] == 0


def test_deadline(web: httpx.Client) -> None:
    shop = pb2("shop_pb2")
    headers = {"Content-Type": "application/grpc-web", "Grpc-Timeout": "100m", "X-Backend-Delay-Ms": "2000"}
    started = time.monotonic()
    response = web.post(ECHO, content=web_body(shop.EchoMetadataRequest()), headers=headers)
    assert time.monotonic() - started < 1.5
    assert response.headers["grpc-status"] == "4"


def test_disconnect_cancels_stream(server: GatewayServer, backend: Any) -> None:
    backend.reset()
    feed = pb2("feed_pb2")
    body = web_body(feed.WatchRequest(shelf="shelves/fiction", count=100, interval_ms=50))
    request = http_request("POST", WATCH, [("Content-Type", "application/grpc-web")], body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        assert sock.recv(65536)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        calls = backend.recorder.for_method("Watch")
        if calls and calls[0].cancelled:
            break
        time.sleep(0.05)
    [call] = backend.recorder.for_method("Watch")
    assert call.cancelled and call.messages_sent < 100


@pytest.mark.parametrize("path", ["/shop.v1.FeedService/Upload", "/shop.v1.FeedService/Chat"])
def test_client_and_bidi_streaming_refused(web: httpx.Client, path: str) -> None:
    response = web.post(path, content=b"", headers={"Content-Type": "application/grpc-web"})
    assert response.status_code == 200
    assert response.headers["grpc-status"] == "12"
    assert "gRPC-Web does not carry" in response.headers["grpc-message"]


def test_bad_bodies(web: httpx.Client, server: GatewayServer) -> None:
    cases = [
        (b"\x00\x00\x00", "3", "ends inside a frame"),
        (b"", "3", "exactly one message, got 0"),
        (grpcweb.frame(1, b"x"), "3", "compressed"),
        (grpcweb.message_frame(b"a") * 2, "3", "exactly one message, got 2"),
        (struct.pack(">BI", 0, 1 << 30), "8", "larger than"),
    ]
    for body, code, text in cases:
        response = web.post(GET_BOOK, content=body, headers={"Content-Type": "application/grpc-web"})
        assert response.status_code == 200, body
        assert response.headers["grpc-status"] == code, (body, response.headers)
        assert text in response.headers["grpc-message"], (body, response.headers)
    response = web.post(GET_BOOK, content=b"A*==", headers={"Content-Type": "application/grpc-web-text"})
    assert response.headers["grpc-status"] == "3" and "base64" in response.headers["grpc-message"]


def test_unknown_content_type_is_415(web: httpx.Client) -> None:
    response = web.post(GET_BOOK, content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    body = response.json()
    assert (
        body["code"] == 3
        and "application/grpc-web" in body["message"]
        and "application/proto" in body["message"]
    )
    response = web.post(GET_BOOK, content=b"x")
    assert response.status_code == 415
    response = web.put(GET_BOOK, content=b"x", headers={"Content-Type": "application/grpc-web"})
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"
    response = web.get("/shop.v1.ShopService/EchoMetadata")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


# ------------------------------------------------------------------------------ the Upgrade request kinds

H2C = [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")]
WEBSOCKET = [("Upgrade", "websocket"), ("Connection", "upgrade")]
KEEP_ALIVE_UPGRADE = [("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade")]
WEBSOCKET_HANDSHAKE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]
UPGRADES = {
    "h2c": H2C,
    "websocket": WEBSOCKET,
    "keep-alive-upgrade": KEEP_ALIVE_UPGRADE,
    "handshake": WEBSOCKET_HANDSHAKE,
}


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def no_ws_server(request: pytest.FixtureRequest, gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command with `--websocket off` (granian, and `--server uvicorn`: h11, ws none)."""
    extra = ["--websocket", "off"] + (["--server", "uvicorn"] if request.param == "uvicorn" else [])
    server = GatewayServer(gen_dir, backend.port, extra)
    yield server
    server.stop()


def exchange_after_upgrade(port: int, backend: Any, headers: list[tuple[str, str]], protocol: str) -> None:
    """A gRPC-Web (or Connect unary) POST carrying `headers`, then a plain one pipelined on the same
    connection: both answered as plain HTTP (no 101, no hop-by-hop response headers), both bodies intact
    upstream."""
    backend.reset()
    shop = pb2("shop_pb2")
    if protocol == "grpcweb":
        kind = [("Content-Type", "application/grpc-web")]
        body = web_body
    else:
        kind = [("Content-Type", "application/proto"), ("Connect-Protocol-Version", "1")]
        body = lambda message: message.SerializeToString()  # noqa: E731
    first = http_request("POST", ECHO, [*kind, *headers], body(shop.EchoMetadataRequest(note="one")))
    second = http_request("POST", ECHO, kind, body(shop.EchoMetadataRequest(note="two")))
    responses = raw_exchange(port, first + second, count=2)
    for response, note in zip(responses, ["one", "two"], strict=True):
        assert response.status == 200, response.body
        names = {name for name, _ in response.headers}
        assert not names & HOP_BY_HOP, names
        if protocol == "grpcweb":
            [raw], trailers = parse_web(response.body)
            assert trailers["grpc-status"] == "0"
        else:
            raw = response.body
        assert shop.EchoMetadataResponse.FromString(raw).note == note
    assert [c.request.note for c in backend.recorder.calls] == ["one", "two"]
    for call in backend.recorder.calls:
        keys = {key for key, _ in call.metadata}
        assert not keys & (HOP_BY_HOP | {"sec-websocket-key", "sec-websocket-version"}), keys


@pytest.mark.parametrize("protocol", ["grpcweb", "connect"])
@pytest.mark.parametrize("kind", sorted(UPGRADES))
def test_upgrade_requests_are_plain_http(
    no_ws_server: GatewayServer, backend: Any, kind: str, protocol: str
) -> None:
    """Every Upgrade kind of the matrix on a gRPC-Web / Connect path, WebSocket off: plain HTTP."""
    exchange_after_upgrade(no_ws_server.port, backend, UPGRADES[kind], protocol)


def test_h2c_upgrade_is_plain_http_with_websocket_on(server: GatewayServer, backend: Any) -> None:
    """The shipped default (WebSocket on for the feed module) and uvicorn h11 + wsproto: h2c requests
    are plain HTTP. (WebSocket-looking POSTs get the server's own 400 there, before the app runs: the
    matrix's c2/d cells, the same for every route.)"""
    exchange_after_upgrade(server.port, backend, H2C, "grpcweb")
    exchange_after_upgrade(server.port, backend, H2C, "connect")


def test_shutdown_ends_open_streams(gen_dir: Path, backend: Any) -> None:
    """SIGTERM to the serve command: an open gRPC-Web stream gets its trailer frame with UNAVAILABLE
    "gateway shutting down", an open Connect stream its end-stream error; the process exits 0."""
    from protoc_gen_pygateway.runtime import connect

    feed = pb2("feed_pb2")
    server = GatewayServer(gen_dir, backend.port)
    try:
        request = feed.WatchRequest(shelf="shelves/fiction", count=1000, interval_ms=200)
        bodies = {
            "grpcweb": ("application/grpc-web", web_body(request)),
            "connect": ("application/connect+proto", connect.envelope(0, request.SerializeToString())),
        }
        socks = {}
        for name, (kind, body) in bodies.items():
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(http_request("POST", WATCH, [("Content-Type", kind)], body))
            assert sock.recv(65536)  # the head and the first message
            socks[name] = sock
        server.process.terminate()
        received = {}
        for name, sock in socks.items():
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
                if data.endswith(b"0\r\n\r\n"):
                    break
            sock.close()
            received[name] = data
        assert server.process.wait(15) == 0
    finally:
        server.stop()
    assert b"grpc-status: 14\r\ngrpc-message: gateway shutting down" in received["grpcweb"]
    assert (
        b'{"error":{"code":"unavailable","message":"gateway shutting down","details":[{'
        in received["connect"]
    )
    assert b'"debug":{"requestId":"' in received["connect"]  # google.rpc.RequestInfo: the request id
