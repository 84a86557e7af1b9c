"""End to end, header policy: which request headers become gRPC metadata (asserted on what the backend
received), which never do (hop-by-hop, Connection-named, smuggled as Grpc-Metadata-*, reserved), how
upgrade requests are answered as plain HTTP, and how response metadata comes back as headers.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import GatewayServer
from tests.e2e_support import RawResponse, error_body, http_request, raw_exchange

ECHO = "/v1/metadata:echo"
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
#: Response headers a plain answer from the gateway may carry.
RESPONSE_HEADERS = {
    "date",
    "server",  # granian names itself (the serve command's choice without WebSocket routes)
    "content-type",
    "content-length",
    "grpc-metadata-x-echo-initial",
    "grpc-trailer-x-echo-trailer",
    "grpc-trailer-x-echo-bin",
    "x-request-id",  # the gateway's request id (docs/observability.md)
}


def received_metadata(backend: Any, keep_request_id: bool = False) -> dict[str, list[str | bytes]]:
    """Metadata of the only call the backend received, key -> values; grpc's own user-agent dropped, and
    the gateway's x-request-id (checked to be there once) unless `keep_request_id`."""
    calls = backend.recorder.calls
    assert len(calls) == 1, backend.recorder.methods()
    result: dict[str, list[str | bytes]] = {}
    for key, value in calls[0].metadata:
        if key == "user-agent":
            assert isinstance(value, str) and value.startswith("grpc-python"), value
            continue
        result.setdefault(key, []).append(value)
    assert len(result.get("x-request-id", [])) == 1, result
    if not keep_request_id:
        del result["x-request-id"]
    return result


def raw_echo(port: int, headers: list[tuple[str, str]], body: bytes = b'{"note": "hi"}') -> RawResponse:
    """POST /v1/metadata:echo with exactly these extra header lines; the answer must be a plain 200."""
    request = http_request("POST", ECHO, [("Content-Type", "application/json"), *headers], body)
    (response,) = raw_exchange(port, request)
    assert response.status == 200, response.body
    return response


def assert_plain_response(response: RawResponse) -> None:
    names = {name for name, _ in response.headers}
    assert names <= RESPONSE_HEADERS, names - RESPONSE_HEADERS
    assert not names & HOP_BY_HOP


# ------------------------------------------------------------------------------------------ forwarded


def test_grpc_metadata_prefix(client: httpx.Client, backend: Any) -> None:
    headers = [
        ("Grpc-Metadata-Foo", "bar"),
        ("GRPC-METADATA-Tenant-ID", "Acme Corp"),
        ("Grpc-Metadata-Multi", "a"),
        ("Grpc-Metadata-Multi", "b"),
        ("Grpc-Metadata-dotted.key_1", "v"),
    ]
    response = client.post(ECHO, json={"note": "n"}, headers=headers)
    assert response.status_code == 200
    metadata = received_metadata(backend)
    assert metadata["foo"] == ["bar"]
    assert metadata["tenant-id"] == ["Acme Corp"]
    assert metadata["multi"] == ["a", "b"]
    assert metadata["dotted.key_1"] == ["v"]
    # The backend's view, echoed back, agrees with the recorder.
    assert response.json()["metadata"]["foo"] == {"values": ["bar"]}


def test_authorization_forwarded_as_is(client: httpx.Client, backend: Any) -> None:
    assert client.get("/v1/metadata", headers={"Authorization": "Bearer t0k3n"}).status_code == 200
    metadata = received_metadata(backend)
    assert metadata["authorization"] == ["Bearer t0k3n"]
    assert "grpcgateway-authorization" not in metadata


def test_permanent_headers_get_grpcgateway_prefix(
    gateway: GatewayServer, client: httpx.Client, backend: Any
) -> None:
    headers = [
        ("Accept", "application/json"),
        ("User-Agent", "shop-cli/1.0"),
        ("Accept-Language", "en-GB"),
        ("Cache-Control", "no-cache"),
        ("Cookie", "session=1"),
        ("If-None-Match", '"etag"'),
        ("Origin", "https://shop.example.com"),
        ("Referer", "https://shop.example.com/books"),
        ("Via", "1.1 proxy"),
        ("X-Custom", "dropped"),
        ("X-Request-Id", "req-0001"),
        ("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("Tracestate", "vendor=opaque"),
        ("Accept-Encoding", "identity"),
    ]
    raw_echo(gateway.port, headers)
    assert received_metadata(backend, keep_request_id=True) == {
        "grpcgateway-accept": ["application/json"],
        "grpcgateway-user-agent": ["shop-cli/1.0"],
        "grpcgateway-accept-language": ["en-GB"],
        "grpcgateway-cache-control": ["no-cache"],
        "grpcgateway-cookie": ["session=1"],
        "grpcgateway-if-none-match": ['"etag"'],
        "grpcgateway-origin": ["https://shop.example.com"],
        "grpcgateway-referer": ["https://shop.example.com/books"],
        "grpcgateway-via": ["1.1 proxy"],
        # Correlation headers keep their names (the generated policy forwards them by default).
        "x-request-id": ["req-0001"],
        "traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
        "tracestate": ["vendor=opaque"],
        "grpcgateway-content-type": ["application/json"],
        "grpcgateway-host": ["gateway.test"],
        "x-forwarded-host": ["gateway.test"],
        "x-forwarded-for": ["127.0.0.1"],
    }


def test_binary_metadata_is_base64_decoded(
    gateway: GatewayServer, client: httpx.Client, backend: Any
) -> None:
    headers = [
        ("Grpc-Metadata-Padded-Bin", "AAE="),
        ("Grpc-Metadata-Unpadded-Bin", "AAE"),
        ("Grpc-Metadata-Plain-Bin", "AAEC"),
        ("Grpc-Metadata-Urlsafe-Bin", "_-8"),
    ]
    response = raw_echo(gateway.port, headers)
    metadata = received_metadata(backend)
    assert metadata["padded-bin"] == [b"\x00\x01"]
    assert metadata["unpadded-bin"] == [b"\x00\x01"]
    assert metadata["plain-bin"] == [b"\x00\x01\x02"]
    assert metadata["urlsafe-bin"] == [b"\xff\xef"]
    assert response.json()["metadata"]["plain-bin"] == {"values": ["AAEC"]}


def test_invalid_keys_and_values_are_dropped(
    gateway: GatewayServer, client: httpx.Client, backend: Any
) -> None:
    request = (
        b"POST /v1/metadata:echo HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 2\r\n"
        b"Grpc-Metadata-Bang!: x\r\n"
        b"Grpc-Metadata-Star*: x\r\n"
        b"Grpc-Metadata-: x\r\n"
        b"Grpc-Metadata-Tab: a\tb\r\n"
        b"Grpc-Metadata-High: caf\xc3\xa9\r\n"
        b"Grpc-Metadata-Ok: fine value ~!\r\n"
        b"\r\n{}"
    )
    (response,) = raw_exchange(gateway.port, request)
    assert response.status == 200
    assert received_metadata(backend) == {
        "ok": ["fine value ~!"],
        "grpcgateway-host": ["gateway.test"],
        "x-forwarded-host": ["gateway.test"],
        "x-forwarded-for": ["127.0.0.1"],
    }


def test_x_forwarded_host(client: httpx.Client, backend: Any) -> None:
    headers = {"X-Forwarded-Host": "shop.example.com", "Grpc-Metadata-X-Forwarded-Host": "evil.example"}
    assert client.get("/v1/metadata", headers=headers).status_code == 200
    metadata = received_metadata(backend)
    assert metadata["x-forwarded-host"] == ["shop.example.com"]
    assert metadata["grpcgateway-host"] == [client.base_url.netloc.decode()]


def test_x_forwarded_for_cannot_be_spoofed_with_grpc_metadata(client: httpx.Client, backend: Any) -> None:
    assert client.get("/v1/metadata", headers={"Grpc-Metadata-X-Forwarded-For": "6.6.6.6"}).status_code == 200
    assert received_metadata(backend)["x-forwarded-for"] == ["127.0.0.1"]


def test_x_forwarded_for_appends_peer_default_serve(client: httpx.Client, backend: Any) -> None:
    assert client.get("/v1/metadata", headers={"X-Forwarded-For": "1.2.3.4"}).status_code == 200
    assert received_metadata(backend)["x-forwarded-for"] == ["1.2.3.4, 127.0.0.1"]


@pytest.fixture(scope="module")
def no_proxy_headers(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command with uvicorn told to trust no proxy: the peer address is the socket's."""
    saved = os.environ.get("FORWARDED_ALLOW_IPS")
    os.environ["FORWARDED_ALLOW_IPS"] = ""
    try:
        server = GatewayServer(gen_dir, backend.port)
    finally:
        if saved is None:
            del os.environ["FORWARDED_ALLOW_IPS"]
        else:
            os.environ["FORWARDED_ALLOW_IPS"] = saved
    yield server
    server.stop()


def test_x_forwarded_for_appends_peer(no_proxy_headers: GatewayServer, backend: Any) -> None:
    backend.reset()
    raw_echo(no_proxy_headers.port, [("X-Forwarded-For", "1.2.3.4, 10.0.0.1")])
    assert received_metadata(backend)["x-forwarded-for"] == ["1.2.3.4, 10.0.0.1, 127.0.0.1"]


def test_connection_named_x_forwarded_for_keeps_peer(no_proxy_headers: GatewayServer, backend: Any) -> None:
    # The client's value is hop-by-hop and goes; the gateway's own record of its peer stays.
    backend.reset()
    raw_echo(no_proxy_headers.port, [("Connection", "x-forwarded-for"), ("X-Forwarded-For", "6.6.6.6")])
    assert received_metadata(backend)["x-forwarded-for"] == ["127.0.0.1"]


# ------------------------------------------------------------------------------------------ never forwarded


def test_hop_by_hop_and_smuggled_headers_never_reach_backend(
    gateway: GatewayServer, client: httpx.Client, backend: Any
) -> None:
    body = b'{"note": "hi"}'
    headers = [
        ("Content-Type", "application/json"),
        ("Connection", "keep-alive, authorization, grpc-metadata-named, x-secret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Proxy-Authenticate", "Basic"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("TE", "trailers"),
        ("Trailer", "x-checksum"),
        ("Upgrade", "h2c"),  # not named in Connection: no upgrade, but still hop-by-hop
        ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ("Authorization", "Bearer secret"),
        ("X-Secret", "s"),
        ("Grpc-Metadata-Named", "x"),
        ("Grpc-Metadata-Connection", "close"),
        ("Grpc-Metadata-Upgrade", "websocket"),
        ("Grpc-Metadata-Keep-Alive", "1"),
        ("Grpc-Metadata-Transfer-Encoding", "chunked"),
        ("Grpc-Metadata-Proxy-Connection", "x"),
        ("Grpc-Metadata-Proxy-Authorization", "x"),
        ("Grpc-Metadata-Te", "trailers"),
        ("Grpc-Metadata-Trailer", "x"),
        ("Grpc-Metadata-Http2-Settings", "x"),
        ("Grpc-Metadata-Grpc-Foo", "x"),
        ("Grpc-Metadata-Grpc-Timeout", "1S"),
        ("Grpc-Metadata-Content-Type", "text/plain"),
        ("Grpc-Metadata-Host", "evil.example"),
        ("Grpc-Metadata-User-Agent", "evil"),
        ("Grpc-Metadata-X-Forwarded-For", "6.6.6.6"),
        ("Grpc-Metadata-X-Forwarded-Host", "evil.example"),
        ("Grpc-Metadata-Kept", "yes"),
        ("Transfer-Encoding", "chunked"),
    ]
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    (response,) = raw_exchange(gateway.port, http_request("POST", ECHO, headers) + chunked)
    assert response.status == 200, response.body
    assert response.json()["note"] == "hi"
    assert_plain_response(response)
    assert received_metadata(backend) == {
        "kept": ["yes"],
        "grpcgateway-content-type": ["application/json"],
        "grpcgateway-host": ["gateway.test"],
        "x-forwarded-host": ["gateway.test"],
        "x-forwarded-for": ["127.0.0.1"],
    }
    assert backend.recorder.last("EchoMetadata").deadline_seconds is None


def test_connection_named_authorization_is_not_forwarded(client: httpx.Client, backend: Any) -> None:
    headers = {"Connection": "authorization", "Authorization": "Bearer secret"}
    assert client.get("/v1/metadata", headers=headers).status_code == 200
    metadata = received_metadata(backend)
    assert "authorization" not in metadata and "grpcgateway-authorization" not in metadata


def test_generated_module_holds_the_policy(gen_dir: Path) -> None:
    for name in ("shop_pb2_gateway_shop_service", "shop_pb2_gateway_shelf_admin_service"):
        module = importlib.import_module(f"shop.v1.{name}")
        assert isinstance(module.FORBIDDEN_HEADERS, frozenset)
        assert module.FORBIDDEN_HEADERS >= HOP_BY_HOP
        assert {"grpc-", ":"} <= set(module.RESERVED_METADATA_PREFIXES)
        assert {"content-type", "host", "user-agent", "te", "x-forwarded-for", "x-forwarded-host"} <= set(
            module.RESERVED_METADATA_KEYS
        )
        assert module.FORWARDED_HEADERS["authorization"] == "authorization"
        assert module.FORWARDED_HEADERS["accept"] == "grpcgateway-accept"
    source = (gen_dir / "shop" / "v1" / "shop_pb2_gateway_shop_service.py").read_text()
    literal = source[source.index("FORBIDDEN_HEADERS = frozenset(") :].split(")", 1)[0]
    for name in HOP_BY_HOP:
        assert f'"{name}",' in literal


# ------------------------------------------------------------------------------------------ upgrades


H2C = [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")]
WEBSOCKET = [("Upgrade", "websocket"), ("Connection", "upgrade")]
WEBSOCKET_HANDSHAKE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


SHOP_MODULES = ["shop.v1.shop_pb2_gateway_shop_service", "shop.v1.shop_pb2_gateway_shelf_admin_service"]


@pytest.fixture(scope="module")
def http_only(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command with only modules without streaming methods: WebSocket is off (`ws="none"`)."""
    server = GatewayServer(gen_dir, backend.port, extra=SHOP_MODULES)
    yield server
    server.stop()


@pytest.mark.parametrize(
    "upgrade", [H2C, WEBSOCKET, WEBSOCKET_HANDSHAKE], ids=["h2c", "websocket", "handshake"]
)
def test_upgrade_requests_are_plain_http(
    http_only: GatewayServer, client: httpx.Client, backend: Any, upgrade: list[tuple[str, str]]
) -> None:
    response = raw_echo(http_only.port, upgrade, body=b'{"note": "intact body"}')
    assert response.json()["note"] == "intact body"
    assert_plain_response(response)
    metadata = received_metadata(backend)
    assert not set(metadata) & (HOP_BY_HOP | {"sec-websocket-key", "sec-websocket-version"})
    assert backend.recorder.last("EchoMetadata").request.note == "intact body"


def test_websocket_handshake_get_is_plain_http(
    http_only: GatewayServer, client: httpx.Client, backend: Any
) -> None:
    (response,) = raw_exchange(http_only.port, http_request("GET", "/v1/metadata", WEBSOCKET_HANDSHAKE))
    assert response.status == 200
    assert_plain_response(response)
    assert response.json()["note"] == ""


@pytest.mark.parametrize("server", ["gateway", "granian"])
def test_websocket_enabled_server_refuses_handshakes_to_unary_routes(
    request: pytest.FixtureRequest, server: str, backend: Any, gen_dir: Path
) -> None:
    """With streaming modules served, WebSocket is on: a handshake to a unary route is refused. The
    default (uvicorn with the gateway's protocol) refuses with one complete JSON answer (never 101) and
    serves a keyless `Upgrade: websocket` request as plain HTTP; `--server granian` would add `Upgrade`
    headers to an HTTP refusal, so the gateway accepts and closes at once with its error message (close
    4005), and granian answers the keyless request with its own 400 before the gateway runs."""
    gateway = (
        request.getfixturevalue("gateway")
        if server == "gateway"
        else GatewayServer(gen_dir, backend.port, ["--server", "granian"])
    )
    try:
        backend.reset()
        if server == "granian":
            with connect(gateway.url.replace("http://", "ws://") + "/v1/metadata", open_timeout=5) as ws:
                refusal = json.loads(ws.recv(timeout=5))
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=5)
            assert refusal["error"]["code"] == 5 and "no WebSocket route" in refusal["error"]["message"]
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4005
        else:
            (refused,) = raw_exchange(gateway.port, http_request("GET", "/v1/metadata", WEBSOCKET_HANDSHAKE))
            assert refused.status == 404
            assert refused.json()["code"] == 5 and "no WebSocket route" in refused.json()["message"]
            assert not {name for name, _ in refused.headers} & HOP_BY_HOP
        headers = [("Content-Type", "application/json"), *WEBSOCKET]
        (answer,) = raw_exchange(gateway.port, http_request("POST", ECHO, headers, b'{"note": "x"}'))
        if server == "granian":
            assert answer.status == 400
            assert not backend.recorder.calls
        else:
            assert answer.status == 200 and answer.json()["note"] == "x"
            metadata = {key for call in backend.recorder.calls for key, _ in call.metadata}
            assert not metadata & HOP_BY_HOP
    finally:
        if server == "granian":
            gateway.stop()


def test_request_pipelined_after_upgrade_is_served(
    gateway: GatewayServer, client: httpx.Client, backend: Any
) -> None:
    first = http_request("POST", ECHO, [("Content-Type", "application/json"), *H2C], b'{"note": "one"}')
    second = http_request("POST", ECHO, [("Content-Type", "application/json")], b'{"note": "two"}')
    responses = raw_exchange(gateway.port, first + second, count=2)
    assert [r.status for r in responses] == [200, 200]
    assert [r.json()["note"] for r in responses] == ["one", "two"]
    assert [call.request.note for call in backend.recorder.calls] == ["one", "two"]


def test_upgrade_with_error_answer_is_plain_http(gateway: GatewayServer, client: httpx.Client) -> None:
    (response,) = raw_exchange(gateway.port, http_request("GET", "/nope", H2C))
    error_body(response, 404, 5)
    assert not {name for name, _ in response.headers} & HOP_BY_HOP


# ------------------------------------------------------------------------------------------ response metadata


def test_response_metadata_and_trailers(client: httpx.Client) -> None:
    response = client.get("/v1/metadata")
    assert response.status_code == 200
    grpc_headers = {k: v for k, v in response.headers.items() if k.startswith("grpc-")}
    assert grpc_headers == {
        "grpc-metadata-x-echo-initial": "yes",
        "grpc-trailer-x-echo-trailer": "yes",
        "grpc-trailer-x-echo-bin": base64.b64encode(b"\x00\x01binary").decode(),
    }


def test_error_answer_carries_no_reserved_metadata(client: httpx.Client) -> None:
    # Fail's trailers hold grpc-status-details-bin (reserved `grpc-` prefix): decoded into the body only.
    response = client.post("/v1/fail", json={"code": 5, "message": "gone", "reason": "R"})
    error_body(response, 404, 5)
    assert not [name for name in response.headers if name.startswith("grpc-")]


def test_head_answer_has_no_hop_by_hop_headers(client: httpx.Client) -> None:
    response = client.head("/v1/shelves/s1/files/a.png:stat")
    assert response.status_code == 200
    assert response.content == b""
    assert not {name for name in response.headers} & HOP_BY_HOP


def test_serve_websocket_off_keeps_every_request_plain_http(gen_dir: Path, backend: Any) -> None:
    """`--websocket off` with streaming modules served: a keyless `Upgrade: websocket` is plain HTTP."""
    backend.reset()
    server = GatewayServer(gen_dir, backend.port, extra=["--websocket", "off"])
    try:
        response = raw_echo(server.port, WEBSOCKET, body=b'{"note": "intact body"}')
        assert response.json()["note"] == "intact body"
        assert_plain_response(response)
    finally:
        server.stop()


def test_x_forwarded_for_lines_are_joined_and_host_falls_back(client: httpx.Client, backend: Any) -> None:
    """Several X-Forwarded-For lines keep every hop, in order; an unusable X-Forwarded-Host gives way to
    Host instead of dropping x-forwarded-host."""
    headers = [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2, 3.3.3.3")]
    assert client.get("/v1/metadata", headers=headers).status_code == 200
    assert received_metadata(backend)["x-forwarded-for"] == ["1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"]
    backend.reset()
    response = client.get("/v1/metadata", headers=[(b"X-Forwarded-Host", b"h\x80")])
    assert response.status_code == 200
    assert received_metadata(backend)["x-forwarded-host"] == [client.base_url.netloc.decode()]
