"""Run-time hooks (issue 14 §1), end to end: the generated gateway with GatewayOptions hooks, served by a
real uvicorn (h11) on a thread of this process (so that the hooks run in the gateway), against the real
grpc.aio backend, driven by httpx. Also Starlette middleware and mounts around the gateway."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e_support import error_body
from tests.ops_support import serve_app

pytestmark = pytest.mark.timeout(60)

BOOK = "/v1/shelves/fiction/books/dune"
BOOKS = "/v1/shelves/fiction/books"
WATCH = "/v1/shelves/fiction/events:watch"


@pytest.fixture(scope="module")
def rt(gen_dir: Any) -> Any:
    return importlib.import_module("pygateway_runtime")


def combined(rt: Any, options: Any) -> Callable[[grpc.aio.Channel], Any]:
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    admin = importlib.import_module("shop.v1.shop_pb2_gateway_shelf_admin_service")
    feed = importlib.import_module("shop.v1.feed_pb2_gateway_feed_service")
    return lambda channel: rt.combine(
        shop.create_app(channel), admin.create_app(channel), feed.create_app(channel), options=options
    )


@pytest.fixture
def serve(rt: Any, backend: Any) -> Iterator[Callable[..., httpx.Client]]:
    """serve(**options) -> an httpx client of the gateway built with GatewayOptions(**options)."""
    backend.reset()
    stack: list[Any] = []

    def start(**options: Any) -> httpx.Client:
        server = serve_app(combined(rt, rt.GatewayOptions(**options)), backend.target)
        running = server.__enter__()
        client = httpx.Client(base_url=running.url, timeout=10)
        stack.append((server, client))
        return client

    yield start
    for server, client in reversed(stack):
        client.close()
        server.__exit__(None, None, None)


def test_incoming_metadata_adds_and_maps(serve: Any, backend: Any, rt: Any) -> None:
    async def auth(request: Any, metadata: list[tuple[str, str | bytes]]) -> list[tuple[str, str | bytes]]:
        await asyncio.sleep(0)  # an async hook (e.g. token introspection)
        token = request.header(b"authorization")
        if token != b"Bearer good":
            raise rt.HttpError(401, 16, "bad token")
        metadata.append(("x-user-id", "u-42"))
        tenant = request.header(b"x-tenant")  # a header the generated policy does not forward
        if tenant is not None:
            metadata.append(("tenant", tenant.decode("latin-1")))
        metadata.append(("x-blob-bin", b"\x00\xff"))
        return metadata

    client = serve(incoming_metadata=auth)
    response = client.get(BOOK, headers={"Authorization": "Bearer good", "X-Tenant": "acme"})
    assert response.status_code == 200, response.text
    call = backend.recorder.last("GetBook")
    assert call.metadata_values("x-user-id") == ["u-42"]
    assert call.metadata_values("tenant") == ["acme"]
    assert call.metadata_values("x-blob-bin") == [b"\x00\xff"]
    assert call.metadata_values("authorization") == ["Bearer good"]  # the policy's own mapping kept
    assert call.metadata_values("x-forwarded-for") == ["127.0.0.1"]  # the gateway's own, kept

    body = error_body(client.get(BOOK, headers={"Authorization": "Bearer bad"}), 401, 16)
    assert body["message"] == "bad token"
    # Streams and client streams use the hook too.
    with client.stream("GET", WATCH, params={"count": 1}, headers={"Authorization": "Bearer good"}) as stream:
        assert stream.status_code == 200
        stream.read()
    assert backend.recorder.last("Watch").metadata_values("x-user-id") == ["u-42"]
    upload = client.post(
        "/v1/uploads",
        content=b'{"name":"a","data":"x"}\n',
        headers={"Authorization": "Bearer good", "Content-Type": "application/x-ndjson"},
    )
    assert upload.status_code == 200, upload.text
    assert backend.recorder.last("Upload").metadata_values("x-user-id") == ["u-42"]
    # WebSocket too (the hook's HttpError refuses the handshake).
    ws_url = str(client.base_url).replace("http://", "ws://") + WATCH + "?count=1"
    with connect(ws_url, additional_headers={"Authorization": "Bearer good"}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["result"]["seq"] == "0"
    assert backend.recorder.last("Watch").metadata_values("x-user-id") == ["u-42"]
    bad = {"Authorization": "Bearer bad"}
    with pytest.raises(InvalidStatus) as refused, connect(ws_url, additional_headers=bad, open_timeout=10):
        pass
    assert refused.value.response.status_code == 401


def test_incoming_metadata_policy_still_wins(
    serve: Any, backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Metadata a hook returns that is hop-by-hop, Connection-nominated, reserved or invalid never reaches
    the backend, and each key is logged once."""

    def smuggle(request: Any, metadata: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [
            *metadata,
            ("connection", "close"),
            ("upgrade", "h2c"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("x-secret", "nominated"),  # the request's Connection header names it
            ("grpc-timeout", "1S"),
            ("grpc-status", "0"),
            (":authority", "evil"),
            ("host", "evil"),
            ("content-type", "text/plain"),
            ("x-forwarded-for", "6.6.6.6"),  # the gateway derives it itself; a hook may not forge it
            ("Bad Key", "x"),
            ("x-text", "caf\u00e9"),  # not printable ASCII
            ("x-text-bin", "not bytes"),
            ("x-fine", "ok"),
        ]

    client = serve(incoming_metadata=smuggle)
    with caplog.at_level(logging.WARNING, logger="pygateway"):
        for _ in range(3):
            response = client.get(BOOK, headers={"Connection": "keep-alive, x-secret"})
            assert response.status_code == 200, response.text
    call = backend.recorder.last("GetBook")
    keys = [key for key, _ in call.metadata]
    for key in (
        "connection",
        "upgrade",
        "keep-alive",
        "te",
        "transfer-encoding",
        "http2-settings",
        "x-secret",
    ):
        assert key not in keys
    assert call.metadata_values("x-forwarded-for") == ["127.0.0.1"]
    assert call.metadata_values("x-fine") == ["ok"]
    assert "x-text" not in keys and "x-text-bin" not in keys and "bad key" not in keys
    assert call.deadline_seconds is None  # grpc-timeout from a hook is not a deadline
    warnings = [r.getMessage() for r in caplog.records if "incoming_metadata hook" in r.getMessage()]
    for key in (
        "connection",
        "upgrade",
        "x-secret",
        "grpc-status",
        ":authority",
        "host",
        "x-forwarded-for",
        "Bad Key",
    ):
        matching = [w for w in warnings if f"{key!r}" in w]
        assert len(matching) == 1, (key, warnings)  # logged once over three requests
    assert any("Connection header" in w for w in warnings if "'x-secret'" in w)


def test_outgoing_header_and_trailer_matchers(serve: Any) -> None:
    def header(key: str) -> str | None:
        return "x-initial" if key == "x-echo-initial" else None

    def trailer(key: str) -> str | None:
        return {"x-echo-trailer": "x-trailer", "x-echo-bin": "connection"}.get(key)  # connection: refused

    client = serve(outgoing_header=header, outgoing_trailer=trailer)
    response = client.get("/v1/metadata")
    assert response.status_code == 200
    assert response.headers["x-initial"] == "yes"
    assert response.headers["x-trailer"] == "yes"
    assert "grpc-metadata-x-echo-initial" not in response.headers
    assert "grpc-trailer-x-echo-trailer" not in response.headers
    assert "grpc-trailer-x-echo-bin" not in response.headers
    assert "close" not in response.headers.get("connection", "")  # the matcher's 'connection' was refused
    # Streams: header metadata renamed; a trailer the matcher drops is also left out of the final event.
    with client.stream("GET", WATCH, params={"count": 1}, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status_code == 200
        assert "grpc-metadata-x-feed-initial" not in stream.headers
        text = stream.read().decode()
    assert "event: end" in text and '{"trailers":{}}' in text, text


def test_outgoing_matchers_keep_stream_trailers_they_name(serve: Any) -> None:
    client = serve(outgoing_header=lambda key: "x-feed" if key == "x-feed-initial" else None)
    with client.stream("GET", WATCH, params={"count": 1}, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.headers["x-feed"] == "yes"
        text = stream.read().decode()
    assert '{"trailers":{"x-feed-trailer":"done"}}' in text, text


def test_error_handlers(serve: Any, backend: Any) -> None:
    seen: list[tuple[str, int, int]] = []

    def upstream(request: Any, reply: Any) -> None:
        seen.append(("upstream", reply.status, reply.code))
        assert reply.rpc_error is not None
        if reply.code == 5:  # NOT_FOUND -> 410 with our own body
            reply.status = 410
            reply.body = json.dumps({"gone": reply.message}).encode()
            reply.headers.append((b"x-error-hook", b"1"))
            reply.headers.append((b"transfer-encoding", b"chunked"))  # refused: hop-by-hop

    async def routing(request: Any, reply: Any) -> Any:
        seen.append(("routing", reply.status, reply.code))
        return type(reply)(
            status=reply.status, code=reply.code, message="routing: " + reply.message, headers=reply.headers
        )

    client = serve(error_handler=upstream, routing_error_handler=routing)
    response = client.get("/v1/shelves/fiction/books/missing")
    assert response.status_code == 410
    assert "missing" in response.json()["gone"]
    assert response.headers["x-error-hook"] == "1"
    assert "chunked" not in response.headers.get("transfer-encoding", "")
    # Another upstream error, left as it is (the hook returns None without changes).
    error_body(client.post("/v1/fail", json={"code": 9, "message": "precondition"}), 400, 9)
    # A stream failing before its first message: the handler sees it too, the body is its error line.
    with client.stream("GET", WATCH, params={"count": 3, "failCode": 5, "failAfter": 0}) as stream:
        assert stream.status_code == 410
        stream.read()

    body = error_body(client.get("/v2/nothing"), 404, 5)
    assert body["message"].startswith("routing: no route")
    response = client.delete("/v1/shelves")
    body = error_body(response, 405, 12)
    assert body["message"].startswith("routing: method DELETE not allowed")
    assert response.headers["allow"] == "POST"
    body = error_body(client.post(BOOKS, content=b"x=1", headers={"Content-Type": "text/plain"}), 415, 3)
    assert body["message"].startswith("routing: unsupported Content-Type")
    assert [kind for kind, _, _ in seen] == [
        "upstream",
        "upstream",
        "upstream",
        "routing",
        "routing",
        "routing",
    ]
    assert [status for kind, status, _ in seen if kind == "routing"] == [404, 405, 415]


def test_forward_response(serve: Any) -> None:
    def created(request: Any, response: Any) -> None:
        name = request.route.name if request.route is not None else ""
        if name == "shop.v1.ShopService.CreateBook":
            response.status = 201
            response.headers.append((b"location", f"/v1/{response.message.name}".encode()))
        elif name == "shop.v1.ShopService.DeleteBook":
            response.status = 204
        elif name == "shop.v1.FeedService.Upload":  # client streaming: one reply
            response.headers.append((b"x-chunks", str(response.message.chunks).encode()))
        elif name == "shop.v1.FeedService.Watch":
            response.headers.append((b"x-first-seq", str(response.message.seq).encode()))
        elif name == "shop.v1.ShopService.EchoMetadata":
            initial = dict(response.header_metadata)
            trailing = dict(response.trailer_metadata)
            response.headers.append(
                (b"x-seen", f"{initial.get('x-echo-initial')}/{trailing.get('x-echo-trailer')}".encode())
            )
            response.headers.append((b"content-length", b"1"))  # refused: the gateway computes it

    client = serve(forward_response=created)
    response = client.post(BOOKS, json={"title": "Hooked"})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/v1/shelves/fiction/books/hooked"
    assert response.json()["name"] == "shelves/fiction/books/hooked"
    response = client.delete("/v1/shelves/fiction/books/hooked")
    assert response.status_code == 204 and response.content == b""
    response = client.get("/v1/metadata")
    assert response.headers["x-seen"] == "yes/yes"
    assert response.json()["metadata"]  # the body is intact (its Content-Length was not replaced)
    with client.stream("GET", WATCH, params={"count": 2}) as stream:
        assert stream.status_code == 200
        assert stream.headers["x-first-seq"] == "0"
        assert len([line for line in stream.iter_lines() if line]) == 2
    upload = client.post(
        "/v1/uploads",
        content=b'{"name":"a"}\n{"name":"b"}\n',
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert upload.status_code == 200 and upload.headers["x-chunks"] == "2"
    assert client.get(BOOK).status_code == 200  # other routes untouched


def test_starlette_middleware_and_mount(rt: Any, backend: Any) -> None:
    """A Starlette app wrapping the gateway: BaseHTTPMiddleware, a pure ASGI middleware and a Mount, under
    uvicorn; unary calls and a stream pass through intact."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.routing import Mount

    class Stamp(BaseHTTPMiddleware):
        async def dispatch(self, request: Any, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-stamp"] = "starlette"
            return response

    class PureAsgi:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def sending(event: Any) -> None:
                if event["type"] == "http.response.start":
                    event = {**event, "headers": [*event["headers"], (b"x-pure", b"asgi")]}
                await send(event)

            await self.app(scope, receive, sending if scope["type"] == "http" else send)

    build = combined(rt, None)

    def app(channel: grpc.aio.Channel) -> Any:
        return Starlette(
            routes=[Mount("/api", app=build(channel))], middleware=[Middleware(Stamp), Middleware(PureAsgi)]
        )

    backend.reset()
    with serve_app(app, backend.target) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.get("/api" + BOOK)
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "shelves/fiction/books/dune"
        assert response.headers["x-stamp"] == "starlette" and response.headers["x-pure"] == "asgi"
        response = client.post("/api" + BOOKS, json={"title": "Mounted"})
        assert response.status_code == 200 and response.json()["name"] == "shelves/fiction/books/mounted"
        error_body(client.get("/api/v2/nothing"), 404, 5)
        with client.stream("GET", "/api" + WATCH, params={"count": 3, "intervalMs": 50}) as stream:
            assert stream.status_code == 200 and stream.headers["x-stamp"] == "starlette"
            lines = [json.loads(line) for line in stream.iter_lines() if line]
        assert [line["result"]["seq"] for line in lines] == ["0", "1", "2"]
