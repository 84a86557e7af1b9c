"""The Connect protocol: the wire format (protoc_gen_pygateway/runtime/connect.py) and, end to end, the
generated gateway answering Connect requests from httpx (the Node clients: test_js_clients.py)."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2  # type: ignore[import-untyped,unused-ignore]

from protoc_gen_pygateway.runtime import connect


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
