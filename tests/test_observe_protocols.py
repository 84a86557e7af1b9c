"""Metrics, request ids and the access log for gRPC-Web and Connect (issue 15: "with a `protocol` label"),
new streams refused during a graceful shutdown in the stream metrics, and the WebSocket handshake's
X-Request-ID under each server (issue 14).

Real components: the example grpc.aio backend (recording every call's metadata), the serve command as a
subprocess (`--access-log --metrics`) and, for the shutdown, the generated gateway under a real uvicorn
on a thread of this process (so that the test can begin the shutdown itself while connections stay
open); httpx and websockets clients. Metrics are scraped and compared as exact deltas.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import logging
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from protoc_gen_pygateway.runtime import connect, grpcweb
from tests.ops_support import serve_app
from tests.stream_support import wait_until
from tests.test_observe_e2e import (
    BOOK,
    BOOK_ROUTE,
    MISSING,
    WATCH,
    WATCH_ROUTE,
    Serve,
    access_line,
    scrape,
    value,
)

pytestmark = pytest.mark.timeout(120)

GET_BOOK = "/shop.v1.ShopService/GetBook"
RPC_WATCH = "/shop.v1.FeedService/Watch"
DUNE = "shelves/fiction/books/dune"
NOWHERE = "shelves/fiction/books/missing"
REQUEST_INFO = "google.rpc.RequestInfo"
STREAMS = ("ndjson", "sse", "websocket", "httpbody", "grpcweb", "connect")


def pb2(name: str) -> Any:
    return importlib.import_module(f"shop.v1.{name}")


def book_request(name: str) -> bytes:
    return bytes(pb2("shop_pb2").GetBookRequest(name=name).SerializeToString())


def watch_request(**fields: int) -> bytes:
    return bytes(pb2("feed_pb2").WatchRequest(shelf="shelves/fiction", **fields).SerializeToString())


def web_frames(body: bytes, text: bool = False) -> tuple[list[bytes], dict[str, str]]:
    """A gRPC-Web body's messages and trailer frame."""
    if text:
        decoder = grpcweb.TextDecoder()
        body = decoder.feed(body)
        decoder.finish()
    found = grpcweb.FrameDecoder(1 << 30).feed(body)
    messages = [payload for flag, payload in found if flag == 0]
    trailers = [payload for flag, payload in found if flag == 0x80]
    return messages, dict(grpcweb.parse_trailer_block(trailers[0])) if trailers else {}


def connect_envelopes(body: bytes) -> tuple[list[bytes], dict[str, Any]]:
    """A Connect stream body's messages and its end-stream JSON."""
    messages, end, offset = [], None, 0
    while offset < len(body):
        flags, length = struct.unpack_from(">BI", body, offset)
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flags & connect.END_STREAM:
            end = json.loads(payload)
        else:
            messages.append(payload)
    assert end is not None, body
    return messages, end


def request_info(error: dict[str, Any]) -> str:
    """The request id in a Connect error's google.rpc.RequestInfo detail (its last), checked in both its
    binary `value` and its `debug` form."""
    from google.rpc import error_details_pb2  # type: ignore[import-untyped,unused-ignore]

    last = error["details"][-1]
    assert last["type"] == REQUEST_INFO, error
    raw = base64.b64decode(last["value"] + "=" * (-len(last["value"]) % 4))
    rid = error_details_pb2.RequestInfo.FromString(raw).request_id
    assert last["debug"] == {"requestId": rid}
    return str(rid)


@pytest.fixture(scope="module")
def backend(gen_dir: Path) -> Iterator[Any]:
    from demo.backend import BackgroundBackend

    with BackgroundBackend() as running:
        yield running


@pytest.fixture(scope="module")
def served(gen_dir: Path, backend: Any, tmp_path_factory: Any) -> Iterator[Serve]:
    """The shipped default server (uvicorn with the gateway's protocol and wsproto)."""
    server = Serve(gen_dir, backend.target, tmp_path_factory.mktemp("protocols") / "serve.log", "default")
    yield server
    server.stop()


# ------------------------------------------------------------------------------- the known mix, scraped


def test_metrics_request_ids_and_access_log_by_protocol(served: Serve, backend: Any) -> None:
    before = scrape(served)
    url = served.url
    seen: dict[str, httpx.Response] = {}

    def call(rid: str, method: str, path: str, body: bytes = b"", **headers: str) -> httpx.Response:
        headers = {key.replace("_", "-"): value for key, value in headers.items()}
        response = httpx.request(
            method, url + path, content=body, headers={**headers, "X-Request-ID": rid}, timeout=10
        )
        assert response.headers["x-request-id"] == rid, (rid, response.headers)
        seen[rid] = response
        return response

    web = "application/grpc-web+proto"
    text = "application/grpc-web-text"
    # REST
    for rid in ("r1", "r2"):
        assert call(rid, "GET", BOOK).status_code == 200
    assert call("r3", "GET", MISSING).status_code == 404
    # gRPC-Web unary: binary, -text, and a trailers-only error (the status in the headers)
    assert web_frames(
        call("w1", "POST", GET_BOOK, grpcweb.message_frame(book_request(DUNE)), content_type=web).content
    )[1] == {"grpc-status": "0"}
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == ["w1"]
    body = base64.b64encode(grpcweb.message_frame(book_request(DUNE)))
    assert web_frames(call("w2", "POST", GET_BOOK, body, content_type=text).content, text=True)[1] == {
        "grpc-status": "0"
    }
    missing = call("w3", "POST", GET_BOOK, grpcweb.message_frame(book_request(NOWHERE)), content_type=web)
    assert (missing.status_code, missing.headers["grpc-status"], missing.content) == (200, "5", b"")
    # Connect unary: proto, a JSON error (with the request id in its details), GET; and a refusal
    assert (
        call("c1", "POST", GET_BOOK, book_request(DUNE), content_type="application/proto").status_code == 200
    )
    failed = call(
        "c2", "POST", GET_BOOK, json.dumps({"name": NOWHERE}).encode(),
        content_type="application/json", connect_protocol_version="1",
    )  # fmt: skip
    assert failed.status_code == 404 and failed.json()["code"] == "not_found"
    assert request_info(failed.json()) == "c2"
    message = base64.urlsafe_b64encode(book_request(DUNE)).decode().rstrip("=")
    assert call("c3", "GET", f"{GET_BOOK}?encoding=proto&base64=1&message={message}").status_code == 200
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == ["c3"]
    wrong = call("c4", "POST", RPC_WATCH, watch_request(count=1), content_type="application/proto")
    assert wrong.status_code == 415 and request_info(wrong.json()) == "c4"
    # gRPC-Web streams: ok (binary, -text), failing after one message, the client leaving
    frame = grpcweb.message_frame(watch_request(count=3))
    messages, trailers = web_frames(call("ws1", "POST", RPC_WATCH, frame, content_type=web).content)
    assert (len(messages), trailers["grpc-status"]) == (3, "0")
    assert backend.recorder.last("Watch").metadata_values("x-request-id") == ["ws1"]
    body = base64.b64encode(grpcweb.message_frame(watch_request(count=2)))
    assert len(web_frames(call("ws2", "POST", RPC_WATCH, body, content_type=text).content, text=True)[0]) == 2
    frame = grpcweb.message_frame(watch_request(count=3, fail_code=13, fail_after=1))
    messages, trailers = web_frames(call("ws3", "POST", RPC_WATCH, frame, content_type=web).content)
    assert (len(messages), trailers["grpc-status"]) == (1, "13")
    frame = grpcweb.message_frame(watch_request(count=100, interval_ms=200))
    headers = {"Content-Type": web, "X-Request-ID": "ws4"}
    with httpx.stream("POST", url + RPC_WATCH, content=frame, headers=headers, timeout=10) as gone:
        assert gone.headers["x-request-id"] == "ws4"  # in the head, before the first message
        next(gone.iter_raw())  # the first message, then the client leaves
    # Connect streams: ok, and failing before the first message (the end-stream error carries the id)
    envelope = connect.envelope(0, watch_request(count=2))
    messages, end = connect_envelopes(
        call("cs1", "POST", RPC_WATCH, envelope, content_type="application/connect+proto").content
    )
    assert len(messages) == 2 and "error" not in end
    envelope = connect.envelope(
        0, json.dumps({"shelf": "shelves/fiction", "count": 3, "failCode": 9, "failAfter": 0}).encode()
    )
    messages, end = connect_envelopes(
        call("cs2", "POST", RPC_WATCH, envelope, content_type="application/connect+json").content
    )
    assert messages == [] and end["error"]["code"] == "failed_precondition"
    assert request_info(end["error"]) == "cs2"
    # A REST WebSocket: the default server sends the id in the handshake response
    ws_url = url.replace("http://", "ws://") + WATCH + "?count=2"
    with ws_connect(ws_url, additional_headers={"X-Request-ID": "ws-1"}, open_timeout=10) as ws:
        assert ws.response is not None and ws.response.headers["x-request-id"] == "ws-1"
        while "end" not in json.loads(ws.recv(timeout=10)):
            pass

    def streams_closed() -> bool:
        now = scrape(served)
        return all(value(now, "pygateway_streams_open", protocol=p) == 0 for p in STREAMS)

    assert wait_until(streams_closed, timeout=10)
    after = scrape(served)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    http = "pygateway_http_requests_total"
    expected_http = {
        (BOOK_ROUTE, "GET", "rest", "200"): 2,
        (BOOK_ROUTE, "GET", "rest", "404"): 1,
        (GET_BOOK, "POST", "grpcweb", "200"): 3,
        (GET_BOOK, "POST", "connect", "200"): 1,
        (GET_BOOK, "POST", "connect", "404"): 1,
        (GET_BOOK, "GET", "connect", "200"): 1,
        (RPC_WATCH, "POST", "grpcweb", "200"): 4,
        (RPC_WATCH, "POST", "connect", "200"): 2,
        (RPC_WATCH, "POST", "connect", "415"): 1,
        (WATCH_ROUTE, "GET", "rest", "101"): 1,
    }
    for (route, method, protocol, status), count in expected_http.items():
        labels = {"route": route, "method": method, "protocol": protocol}
        assert delta(http, **labels, status=status) == count, (labels, status)
    # Nothing of these went to "unmatched" (before: gRPC-Web and Connect were counted there).
    for method in ("GET", "POST"):
        for protocol in ("rest", "grpcweb", "connect"):
            for status in ("200", "404", "415"):
                labels = {"route": "unmatched", "method": method, "protocol": protocol, "status": status}
                assert delta(http, **labels) == 0, labels
    duration = "pygateway_http_request_duration_seconds_count"
    assert delta(duration, route=GET_BOOK, method="POST", protocol="grpcweb") == 3
    assert delta(duration, route=GET_BOOK, method="POST", protocol="connect") == 2
    assert delta(duration, route=RPC_WATCH, method="POST", protocol="connect") == 3

    ended = "pygateway_streams_ended_total"
    expected_streams = {
        ("grpcweb", "ok"): 2,
        ("grpcweb", "upstream_error"): 1,
        ("grpcweb", "client_gone"): 1,
        ("connect", "ok"): 1,
        ("connect", "upstream_error"): 1,
        ("websocket", "ok"): 1,
    }
    for stream in STREAMS:
        for outcome in ("ok", "upstream_error", "client_gone", "shutdown", "bad_request"):
            count = expected_streams.get((stream, outcome), 0)
            assert delta(ended, protocol=stream, outcome=outcome) == count, (stream, outcome)

    book = {"grpc_type": "unary", "grpc_service": "shop.v1.ShopService", "grpc_method": "GetBook"}
    assert delta("grpc_client_started_total", **book) == 9  # 3 REST, 3 gRPC-Web, 3 Connect
    assert delta("grpc_client_msg_sent_total", **book) == 9
    assert delta("grpc_client_msg_received_total", **book) == 6
    assert delta("grpc_client_handled_total", **book, grpc_code="OK") == 6
    assert delta("grpc_client_handled_total", **book, grpc_code="NotFound") == 3
    assert delta("grpc_client_handling_seconds_count", **book) == 9
    watch = {"grpc_type": "server_stream", "grpc_service": "shop.v1.FeedService", "grpc_method": "Watch"}
    assert delta("grpc_client_started_total", **watch) == 7  # 4 gRPC-Web, 2 Connect, 1 WebSocket (not c4)
    assert delta("grpc_client_msg_sent_total", **watch) == 7
    assert delta("grpc_client_msg_received_total", **watch) >= 3 + 2 + 1 + 1 + 2 + 2
    assert delta("grpc_client_handled_total", **watch, grpc_code="OK") == 4
    assert delta("grpc_client_handled_total", **watch, grpc_code="Internal") == 1
    assert delta("grpc_client_handled_total", **watch, grpc_code="FailedPrecondition") == 1
    assert delta("grpc_client_handled_total", **watch, grpc_code="Canceled") == 1

    # One access-log line per exchange, with the protocol that served it.
    expected_lines = {
        # rid: (protocol, route, status, grpc_code, stream, outcome)
        "r1": ("rest", BOOK_ROUTE, 200, 0, None, None),
        "r3": ("rest", BOOK_ROUTE, 404, 5, None, None),
        "w1": ("grpcweb", GET_BOOK, 200, 0, None, None),
        "w2": ("grpcweb", GET_BOOK, 200, 0, None, None),
        "w3": ("grpcweb", GET_BOOK, 200, 5, None, None),
        "c1": ("connect", GET_BOOK, 200, 0, None, None),
        "c2": ("connect", GET_BOOK, 404, 5, None, None),
        "c3": ("connect", GET_BOOK, 200, 0, None, None),
        "c4": ("connect", RPC_WATCH, 415, 2, None, None),
        "ws1": ("grpcweb", RPC_WATCH, 200, 0, "grpcweb", "ok"),
        "ws2": ("grpcweb", RPC_WATCH, 200, 0, "grpcweb", "ok"),
        "ws3": ("grpcweb", RPC_WATCH, 200, 13, "grpcweb", "upstream_error"),
        "ws4": ("grpcweb", RPC_WATCH, 200, 1, "grpcweb", "client_gone"),
        "cs1": ("connect", RPC_WATCH, 200, 0, "connect", "ok"),
        "cs2": ("connect", RPC_WATCH, 200, 9, "connect", "upstream_error"),
        "ws-1": ("rest", WATCH_ROUTE, 101, 0, "websocket", "ok"),
    }
    for rid, expected in expected_lines.items():
        line = access_line(served, rid)
        got = (
            line["protocol"],
            line["route"],
            line["status"],
            line["grpc_code"],
            line["stream"],
            line["outcome"],
        )
        assert got == expected, (rid, line)
    assert access_line(served, "ws3")["response_messages"] == 1
    assert access_line(served, "cs1")["response_messages"] == 2
    assert access_line(served, "w1")["request_messages"] == 1


# ------------------------------------------------------------------ new streams refused during a shutdown


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_streams_refused_by_a_shutdown_are_counted(gen_dir: Path, backend: Any) -> None:
    """Open streams (NDJSON, gRPC-Web, Connect) are ended by `Gateway.shutdown()` with outcome
    `shutdown`; then new streams of every kind are refused — and counted the same way, with one
    access-log line each."""
    rt = importlib.import_module("pygateway_runtime")
    metrics_module = importlib.import_module("pygateway_runtime.metrics")
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    feed = importlib.import_module("shop.v1.feed_pb2_gateway_feed_service")
    registry = CollectorRegistry()
    metrics = metrics_module.Metrics(registry)
    log = io.StringIO()
    logger = logging.getLogger("test.protocols.access")
    handler = logging.StreamHandler(log)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    apps: list[Any] = []

    def build(channel: Any) -> Any:
        options = rt.GatewayOptions(metrics=metrics, access_log=logger)
        app = rt.combine(shop.create_app(channel), feed.create_app(channel), options=options)
        apps.append(app)
        return app

    long_watch = {"count": 1000, "interval_ms": 100}
    web = {"Content-Type": "application/grpc-web+proto"}
    stream = {"Content-Type": "application/connect+proto"}
    with serve_app(build, backend.target) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        opened = []
        for rid, method, path, body, headers in (
            ("open-ndjson", "GET", WATCH + "?count=1000&intervalMs=100", b"", {}),
            ("open-grpcweb", "POST", RPC_WATCH, grpcweb.message_frame(watch_request(**long_watch)), web),
            ("open-connect", "POST", RPC_WATCH, connect.envelope(0, watch_request(**long_watch)), stream),
        ):
            request = client.build_request(
                method, path, content=body, headers={**headers, "X-Request-ID": rid}
            )
            response = client.send(request, stream=True)
            chunks = response.iter_raw()
            assert next(chunks)  # the first message: the stream is open
            opened.append((response, chunks))
        samples = _samples(registry)
        for name in ("ndjson", "grpcweb", "connect"):
            assert samples[("pygateway_streams_open", (("protocol", name),))] == 1
        [app] = apps
        app.shutdown()  # what SIGTERM does first; the server keeps accepting here
        for response, chunks in opened:
            rest = b"".join(chunks)
            assert b"gateway shutting down" in rest
            response.close()

        # New streams now: each refused with UNAVAILABLE "gateway shutting down".
        refused = client.get(WATCH, headers={"X-Request-ID": "new-ndjson"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == 14
        sse = client.get(WATCH, headers={"Accept": "text/event-stream", "X-Request-ID": "new-sse"})
        assert sse.status_code == 503 and "gateway shutting down" in sse.text
        upload = client.post(
            "/v1/uploads",
            content=b'{"name": "a", "data": "x"}\n',
            headers={"Content-Type": "application/x-ndjson", "X-Request-ID": "new-upload"},
        )
        assert upload.status_code == 503 and upload.json()["code"] == 14
        frame = grpcweb.message_frame(watch_request(count=2))
        response = client.post(RPC_WATCH, content=frame, headers={**web, "X-Request-ID": "new-grpcweb"})
        assert (response.status_code, response.headers["grpc-status"]) == (200, "14")
        assert response.headers["x-request-id"] == "new-grpcweb"  # trailers-only: the id in the headers
        response = client.post(
            RPC_WATCH,
            content=connect.envelope(0, watch_request(count=2)),
            headers={**stream, "X-Request-ID": "new-connect"},
        )
        _, end = connect_envelopes(response.content)
        assert end["error"] == {
            "code": "unavailable",
            "message": "gateway shutting down",
            "details": [connect.request_info_detail("new-connect")],
        }
        with pytest.raises(InvalidStatus) as handshake:
            ws_connect(
                server.url.replace("http://", "ws://") + WATCH,
                additional_headers={"X-Request-ID": "new-websocket"},
                open_timeout=10,
            )
        assert handshake.value.response.status_code == 503
        # A unary call still goes through.
        assert client.get(BOOK).status_code == 200

        def all_closed() -> bool:
            now = _samples(registry)
            return all(now[("pygateway_streams_open", (("protocol", p),))] == 0 for p in STREAMS)

        assert wait_until(all_closed, timeout=10)
        samples = _samples(registry)

    def ended(protocol: str, outcome: str) -> float:
        key = (
            "pygateway_streams_ended_total",
            tuple(sorted({"protocol": protocol, "outcome": outcome}.items())),
        )
        return samples.get(key, 0.0)

    # open and ended + refused: ndjson 1 + 2 (watch, upload), sse 1, grpcweb 1 + 1, connect 1 + 1, ws 1
    assert {p: ended(p, "shutdown") for p in STREAMS} == {
        "ndjson": 3, "sse": 1, "websocket": 1, "httpbody": 0, "grpcweb": 2, "connect": 2,
    }  # fmt: skip
    assert all(
        ended(p, o) == 0 for p in STREAMS for o in ("ok", "upstream_error", "client_gone", "bad_request")
    )
    time.sleep(0.1)
    lines = {line["request_id"]: line for line in map(json.loads, log.getvalue().splitlines())}
    for rid, protocol, stream_kind, status in (
        ("open-ndjson", "rest", "ndjson", 200),
        ("open-grpcweb", "grpcweb", "grpcweb", 200),
        ("open-connect", "connect", "connect", 200),
        ("new-ndjson", "rest", "ndjson", 503),
        ("new-sse", "rest", "sse", 503),
        ("new-upload", "rest", "ndjson", 503),
        ("new-grpcweb", "grpcweb", "grpcweb", 200),
        ("new-connect", "connect", "connect", 200),
        ("new-websocket", "rest", "websocket", 503),
    ):
        line = lines[rid]
        got = (line["protocol"], line["stream"], line["status"], line["outcome"], line["grpc_code"])
        assert got == (protocol, stream_kind, status, "shutdown", 14), line


# ------------------------------------------------------------------- the WebSocket handshake's request id


def test_granian_drops_the_websocket_handshake_headers(gen_dir: Path, backend: Any, tmp_path: Path) -> None:
    """`--server granian`: granian's ASGI `websocket.accept` takes only `subprotocol` (its Rust core
    builds the 101 response from that alone and ignores `headers`), so the handshake response has no
    X-Request-ID. The id is still forwarded upstream, in the access log and in the final error message.
    (When this test fails because the header is there, granian learned `headers`: update
    docs/observability.md.) The default server sends it (test_metrics_request_ids_and_access_log_by_protocol,
    test_observe_e2e's test_request_id_in_every_kind_of_error)."""
    server = Serve(
        gen_dir, backend.target, tmp_path / "granian.log", "default", ["--access-log", "--server", "granian"]
    )
    try:
        backend.reset()
        base = server.url.replace("http://", "ws://")
        with ws_connect(
            base + WATCH + "?count=1", additional_headers={"X-Request-ID": "g-1"}, open_timeout=10
        ) as ws:
            assert ws.response is not None and ws.response.status_code == 101
            assert "x-request-id" not in ws.response.headers, ws.response.headers
            while "end" not in json.loads(ws.recv(timeout=10)):
                pass
        assert backend.recorder.last("Watch").metadata_values("x-request-id") == ["g-1"]
        line = access_line(server, "g-1")
        assert (line["status"], line["stream"], line["outcome"]) == (101, "websocket", "ok")
        with ws_connect(
            base + "/v1/shelves/missing/events:watch",
            additional_headers={"X-Request-ID": "g-2"},
            open_timeout=10,
        ) as ws:
            assert "x-request-id" not in ws.response.headers  # type: ignore[union-attr]
            message = json.loads(ws.recv(timeout=10))
        [info] = [d for d in message["error"]["details"] if d.get("@type", "").endswith("RequestInfo")]
        assert info["requestId"] == "g-2"
    finally:
        server.stop()


# ------------------------------------------------------------------ google.api.HttpBody calls and streams


def test_http_body_calls_and_raw_streams_are_observed(tmp_path_factory: Any) -> None:
    """HttpBody replies and raw HttpBody server streams: the upstream calls in grpc_client_*, the streams
    as `httpbody` with their outcomes, the request id in a raw stream's head and in the access log."""
    import sys

    from tests.parity_backend import ParityBackend
    from tests.protoc_support import generate_tree
    from tests.test_e2e_parity import PARAMETER, PARITY

    gen = tmp_path_factory.mktemp("parity_observe")
    generate_tree(gen, [PARITY], PARAMETER)
    if str(gen) not in sys.path:
        sys.path.insert(0, str(gen))
    with ParityBackend() as backend:
        server = Serve(gen, backend.target, gen / "serve.log", "default")
        try:
            before = scrape(server)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                reply = client.get("/v1/files/f", params={"size": 10}, headers={"X-Request-ID": "hb-1"})
                assert reply.status_code == 200 and reply.headers["x-request-id"] == "hb-1"
                assert client.get("/v1/files/missing").status_code == 404
                params = {"size": 1000, "chunk": 100}
                with client.stream(
                    "GET", "/v1/streams/s", params=params, headers={"X-Request-ID": "hb-2"}
                ) as s:
                    assert s.headers["x-request-id"] == "hb-2"  # in the head, before the first chunk
                    assert len(b"".join(s.iter_bytes())) == 1000
                failed = client.get("/v1/streams/s", params={"size": 10, "failAfter": -1})
                assert failed.status_code == 404
                with pytest.raises(httpx.RemoteProtocolError):  # cut after its first bytes
                    client.get(
                        "/v1/streams/s",
                        params={"size": 400000, "chunk": 100000, "failAfter": 2},
                        headers={"X-Request-ID": "hb-3"},
                    )

            def closed() -> bool:
                return value(scrape(server), "pygateway_streams_open", protocol="httpbody") == 0

            assert wait_until(closed, timeout=10)
            after = scrape(server)

            def delta(name: str, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)

            service = "parity.v1.ParityService"
            download = {"grpc_type": "unary", "grpc_service": service, "grpc_method": "Download"}
            assert delta("grpc_client_started_total", **download) == 2
            assert delta("grpc_client_handled_total", **download, grpc_code="OK") == 1
            assert delta("grpc_client_handled_total", **download, grpc_code="NotFound") == 1
            stream = {"grpc_type": "server_stream", "grpc_service": service, "grpc_method": "DownloadStream"}
            assert delta("grpc_client_started_total", **stream) == 3
            assert delta("grpc_client_msg_received_total", **stream) >= 10 + 2
            assert delta("grpc_client_handled_total", **stream, grpc_code="OK") == 1
            assert delta("grpc_client_handled_total", **stream, grpc_code="NotFound") == 1
            ended = "pygateway_streams_ended_total"
            assert delta(ended, protocol="httpbody", outcome="ok") == 1
            assert delta(ended, protocol="httpbody", outcome="upstream_error") == 2
            line = access_line(server, "hb-2")
            assert (line["protocol"], line["stream"], line["outcome"], line["response_messages"]) == (
                "rest", "httpbody", "ok", 10,
            )  # fmt: skip
            assert access_line(server, "hb-3")["outcome"] == "upstream_error"
        finally:
            server.stop()
