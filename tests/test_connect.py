"""The Connect protocol: the wire format (protoc_gen_pygateway/runtime/connect.py) and, end to end, the
generated gateway answering Connect requests from httpx (the Node clients: test_js_clients.py)."""

from __future__ import annotations

import base64
import importlib
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2  # type: ignore[import-untyped,unused-ignore]

from protoc_gen_pygateway.runtime import connect, grpcweb
from tests.conftest import GatewayServer

GET_BOOK = "/shop.v1.ShopService/GetBook"
ECHO = "/shop.v1.ShopService/EchoMetadata"
FAIL = "/shop.v1.ShopService/Fail"
PING = "/shop.v1.ShopService/Ping"
WATCH = "/shop.v1.FeedService/Watch"


def test_code_tables_cover_every_error_code() -> None:
    assert sorted(connect.CODE_NAMES) == list(range(1, 17)) == sorted(connect.HTTP_STATUS)
    assert connect.CODE_NAMES[1] == "canceled"
    # The spec's table (after RFC 003).
    assert [connect.HTTP_STATUS[c] for c in range(1, 17)] == [
        499,
        500,
        400,
        504,
        404,
        409,
        403,
        429,
        400,
        409,
        400,
        501,
        500,
        503,
        500,
        401,
    ]


def test_content_types() -> None:
    assert connect.parse_content_type("application/proto") == connect.ConnectFormat(False, "proto")
    assert connect.parse_content_type("application/json; charset=utf-8") == connect.ConnectFormat(
        False, "json"
    )
    assert connect.parse_content_type("application/json; charset=latin-1") is None
    assert connect.parse_content_type("application/connect+json") == connect.ConnectFormat(True, "json")
    assert connect.parse_content_type("application/connect+proto") == connect.ConnectFormat(True, "proto")
    assert connect.parse_content_type("application/grpc-web") is None
    assert connect.ConnectFormat(True, "proto").content_type == b"application/connect+proto"


def test_timeout_and_version() -> None:
    assert connect.parse_timeout_ms("1500") == 1.5
    assert connect.parse_timeout_ms("9999999999") == 9999999.999
    for bad in ("0", "-1", "1.5", "12345678901", "", "1s"):
        with pytest.raises(connect.ConnectError, match="Connect-Timeout-Ms"):
            connect.parse_timeout_ms(bad)
    connect.check_protocol_version(b"1")
    connect.check_protocol_version(None)
    with pytest.raises(connect.ConnectError, match="missing"):
        connect.check_protocol_version(None, required=True)
    with pytest.raises(connect.ConnectError, match="only 1"):
        connect.check_protocol_version(b"2")
    connect.check_encoding(b"identity", "Content-Encoding")
    with pytest.raises(connect.ConnectError, match="gzip") as err:
        connect.check_encoding(b"gzip", "Content-Encoding")
    assert err.value.code == 12 and err.value.http_status == 501


def test_get_query() -> None:
    got = connect.parse_get_query(b"message=%7B%22name%22%3A%22a%22%7D&encoding=json&connect=v1&extra=1")
    assert got.format == connect.ConnectFormat(False, "json") and got.message == b'{"name":"a"}'
    raw = b"\x0a\x03abc\xff"
    query = "message=" + base64.urlsafe_b64encode(raw).decode().rstrip("=") + "&encoding=proto&base64=1"
    assert connect.parse_get_query(query.encode()).message == raw
    padded = (
        "message=" + base64.urlsafe_b64encode(raw).decode().replace("=", "%3D") + "&encoding=proto&base64=1"
    )
    assert connect.parse_get_query(padded.encode()).message == raw
    cases = [
        (b"message=x", 3, 400, "missing encoding"),
        (b"encoding=json", 3, 400, "missing message"),
        (b"message=x&encoding=xml", 3, 415, "encoding 'xml'"),
        (b"message=x&encoding=json&compression=gzip", 12, 501, "compression 'gzip'"),
        (b"message=x&encoding=json&connect=v2", 3, 400, "only v1"),
        (b"message=*&encoding=proto&base64=1", 3, 400, "not base64"),
        (b"message=%ff&encoding=json", 3, 400, "not UTF-8"),
        (b"message=a&message=b&encoding=json", 3, 400, "more than once"),
    ]
    for query, code, status, text in cases:
        with pytest.raises(connect.ConnectError, match=text) as err:
            connect.parse_get_query(query)
        assert (err.value.code, err.value.http_status) == (code, status), query


def test_error_json_with_details() -> None:
    info = error_details_pb2.ErrorInfo(reason="R", domain="d")
    detail = any_pb2.Any()
    detail.Pack(info)
    data = json.loads(connect.error_json(5, "no such book", [detail]))
    assert data["code"] == "not_found" and data["message"] == "no such book"
    [item] = data["details"]
    assert item["type"] == "google.rpc.ErrorInfo"
    assert "=" not in item["value"]
    value = base64.b64decode(item["value"] + "=" * (-len(item["value"]) % 4))
    assert error_details_pb2.ErrorInfo.FromString(value) == info
    assert item["debug"] == {"reason": "R", "domain": "d"}
    assert json.loads(connect.error_json(14, "")) == {"code": "unavailable"}
    with_id = json.loads(connect.error_json(14, "", (), "order-42"))
    [detail] = with_id["details"]
    assert detail["type"] == "google.rpc.RequestInfo" and detail["debug"] == {"requestId": "order-42"}
    value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    assert error_details_pb2.RequestInfo.FromString(value).request_id == "order-42"


def test_end_stream_and_trailers() -> None:
    raw = connect.end_stream(None, {})
    assert raw == b"\x02\x00\x00\x00\x02{}"
    raw = connect.end_stream(
        connect.error_data(14, "overloaded"),
        connect.metadata_data([("a", "1"), ("a", "2"), ("b-bin", b"\xff")]),
    )
    flags, length = struct.unpack(">BI", raw[:5])
    assert flags == connect.END_STREAM and length == len(raw) - 5
    assert json.loads(raw[5:]) == {
        "error": {"code": "unavailable", "message": "overloaded"},
        "metadata": {"a": ["1", "2"], "b-bin": ["/w"]},
    }
    assert connect.trailer_headers([("x-t", "y"), ("x-b-bin", b"\x01")]) == [
        (b"trailer-x-t", b"y"),
        (b"trailer-x-b-bin", b"AQ"),
    ]
    assert connect.envelope(0, b"ab") == b"\x00\x00\x00\x00\x02ab"


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(params=["granian", "uvicorn"])
def server(
    request: pytest.FixtureRequest, gateway: GatewayServer, uvicorn_gateway: GatewayServer
) -> GatewayServer:
    return gateway if request.param == "granian" else uvicorn_gateway


@pytest.fixture
def http(server: GatewayServer, backend: Any) -> Iterator[httpx.Client]:
    backend.reset()
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


def pb2(name: str) -> Any:
    return importlib.import_module(f"shop.v1.{name}")


UNARY = {"Content-Type": "application/json", "Connect-Protocol-Version": "1"}


def test_unary_json(http: httpx.Client) -> None:
    response = http.post(GET_BOOK, json={"name": "shelves/fiction/books/dune"}, headers=UNARY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["title"] == "Dune"


def test_unary_proto(http: httpx.Client) -> None:
    shop = pb2("shop_pb2")
    body = shop.GetBookRequest(name="shelves/fiction/books/dune").SerializeToString()
    response = http.post(GET_BOOK, content=body, headers={"Content-Type": "application/proto"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/proto"
    assert shop.Book.FromString(response.content).title == "Dune"


def test_unary_get(http: httpx.Client) -> None:
    shop = pb2("shop_pb2")
    raw = shop.GetBookRequest(name="shelves/fiction/books/dune").SerializeToString()
    message = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = http.get(
        GET_BOOK, params={"connect": "v1", "encoding": "proto", "base64": "1", "message": message}
    )
    assert response.status_code == 200 and shop.Book.FromString(response.content).title == "Dune"
    response = http.get(
        GET_BOOK, params={"encoding": "json", "message": json.dumps({"name": "shelves/fiction/books/dune"})}
    )
    assert response.status_code == 200 and response.json()["title"] == "Dune"
    response = http.get(GET_BOOK, params={"encoding": "json", "message": "{}", "compression": "gzip"})
    assert response.status_code == 501 and response.json()["code"] == "unimplemented"
    # Methods without idempotency_level = NO_SIDE_EFFECTS have no GET.
    response = http.get(ECHO, params={"encoding": "json", "message": "{}"})
    assert response.status_code == 405


def test_errors_with_details(http: httpx.Client) -> None:
    response = http.post(
        FAIL, json={"code": 5, "message": "no such book", "reason": "BOOK_MISSING"}, headers=UNARY
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["code"] == "not_found" and data["message"] == "no such book"
    # The upstream's details, then the request id as a google.rpc.RequestInfo (as in REST's error bodies)
    detail, info = data["details"]
    assert info == connect.request_info_detail(response.headers["x-request-id"])
    assert detail["type"] == "google.rpc.ErrorInfo"
    assert detail["debug"]["reason"] == "BOOK_MISSING"
    value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
    assert error_details_pb2.ErrorInfo.FromString(value).reason == "BOOK_MISSING"
    for code, status in [(1, 499), (4, 504), (9, 400), (12, 501), (14, 503), (16, 401)]:
        response = http.post(FAIL, json={"code": code, "message": "m"}, headers=UNARY)
        assert response.status_code == status and response.json()["code"] == connect.CODE_NAMES[code]


def test_header_and_trailer_metadata(http: httpx.Client) -> None:
    headers = {**UNARY, "X-User": "alice", "Connect-Timeout-Ms": "5000"}
    response = http.post(ECHO, json={"note": "n"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-echo-initial"] == "yes"
    assert response.headers["trailer-x-echo-trailer"] == "yes"
    assert "trailer-x-echo-bin" in response.headers
    data = response.json()
    assert data["metadata"]["x-user"]["values"] == ["alice"]
    assert "connect-timeout-ms" not in data["metadata"] and "connect-protocol-version" not in data["metadata"]
    assert 0 < data["deadlineSeconds"] <= 5.1


def test_deadline(http: httpx.Client) -> None:
    headers = {**UNARY, "Connect-Timeout-Ms": "100", "X-Backend-Delay-Ms": "2000"}
    started = time.monotonic()
    response = http.post(ECHO, json={}, headers=headers)
    assert time.monotonic() - started < 1.5
    assert response.status_code == 504 and response.json()["code"] == "deadline_exceeded"
    response = http.post(ECHO, json={}, headers={**UNARY, "Connect-Timeout-Ms": "soon"})
    assert response.status_code == 400 and "Connect-Timeout-Ms" in response.json()["message"]


def test_bad_requests(http: httpx.Client) -> None:
    response = http.post(GET_BOOK, content=b"{", headers=UNARY)
    assert response.status_code == 400 and response.json()["code"] == "invalid_argument"
    response = http.post(GET_BOOK, content=b"{}", headers={**UNARY, "Connect-Protocol-Version": "2"})
    assert response.status_code == 400
    response = http.post(GET_BOOK, content=b"{}", headers={**UNARY, "Content-Encoding": "gzip"})
    assert response.status_code == 501 and response.json()["code"] == "unimplemented"
    response = http.post(
        GET_BOOK, content=b"x" * (5 * 1024 * 1024), headers={"Content-Type": "application/proto"}
    )
    assert response.status_code == 413 and response.json()["code"] == "resource_exhausted"


def stream_body(message: Any) -> bytes:
    return connect.envelope(0, message.SerializeToString())


def parse_stream(body: bytes) -> tuple[list[bytes], dict[str, Any]]:
    frames = grpcweb.FrameDecoder(1 << 30)
    found = frames.feed(body)
    frames.finish()
    assert found and found[-1][0] == connect.END_STREAM
    assert all(flag == 0 for flag, _ in found[:-1])
    return [payload for _, payload in found[:-1]], json.loads(found[-1][1])


def test_server_stream(http: httpx.Client) -> None:
    feed = pb2("feed_pb2")
    body = stream_body(feed.WatchRequest(shelf="shelves/fiction", count=3))
    response = http.post(WATCH, content=body, headers={"Content-Type": "application/connect+proto"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/connect+proto"
    assert response.headers["x-feed-initial"] == "yes"
    messages, end = parse_stream(response.content)
    assert [feed.Event.FromString(m).seq for m in messages] == [0, 1, 2]
    assert end == {"metadata": {"x-feed-trailer": ["done"]}}


def test_server_stream_json_failing(http: httpx.Client) -> None:
    body = connect.envelope(0, b'{"shelf": "shelves/fiction", "count": 4, "failCode": 14, "failAfter": 1}')
    response = http.post(WATCH, content=body, headers={"Content-Type": "application/connect+json"})
    messages, end = parse_stream(response.content)
    assert [json.loads(m)["seq"] for m in messages] == ["0"]
    assert end["error"]["code"] == "unavailable" and end["error"]["message"] == "failed after 1 events"
    assert [d["type"] for d in end["error"]["details"]] == ["google.rpc.ErrorInfo", "google.rpc.RequestInfo"]
    assert end["error"]["details"][1]["debug"] == {"requestId": response.headers["x-request-id"]}
    assert end["metadata"] == {"x-feed-trailer": ["done"]}
    body = connect.envelope(0, b'{"shelf": "shelves/missing"}')
    response = http.post(WATCH, content=body, headers={"Content-Type": "application/connect+json"})
    assert response.status_code == 200
    messages, end = parse_stream(response.content)
    assert messages == [] and end["error"]["code"] == "not_found"


def test_streaming_kinds_refused(http: httpx.Client) -> None:
    response = http.post(
        "/shop.v1.FeedService/Upload", content=b"", headers={"Content-Type": "application/connect+json"}
    )
    _, end = parse_stream(response.content)
    assert end["error"]["code"] == "unimplemented"
    response = http.post(WATCH, content=b"{}", headers=UNARY)
    assert response.status_code == 415


@pytest.fixture(scope="module")
def unbound_gateway(tmp_path_factory: pytest.TempPathFactory, backend: Any) -> Iterator[GatewayServer]:
    """generate_unbound_methods=true: Ping also has the REST route POST /shop.v1.ShopService/Ping."""
    from tests.protoc_support import generate_tree

    out = tmp_path_factory.mktemp("unbound")
    generate_tree(out, ["shop/v1/shop.proto", "shop/v1/feed.proto"], "generate_unbound_methods=true")
    server = GatewayServer(out, backend.port)
    yield server
    server.stop()


def test_rest_and_connect_share_the_unbound_route(unbound_gateway: GatewayServer, backend: Any) -> None:
    """The documented rule: application/json with Connect-Protocol-Version is Connect, without it REST."""
    with httpx.Client(base_url=unbound_gateway.url, timeout=10.0) as http:
        rest = http.post(PING, json={}, headers={"Content-Type": "application/json"})
        assert rest.status_code == 200 and rest.json() == {}
        wrong = http.post(PING, content=b"{", headers={"Content-Type": "application/json"})
        assert wrong.status_code == 400 and wrong.json()["code"] == 3  # REST's google.rpc.Status
        wrong = http.post(PING, content=b"{", headers=UNARY)
        assert wrong.status_code == 400 and wrong.json()["code"] == "invalid_argument"  # Connect's error
        form = http.post(PING, content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415 and form.json()["code"] == 3  # REST's own refusal
