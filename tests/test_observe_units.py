"""The observability modules of the runtime on their own: request ids, the Prometheus collector's exact
exposition (names, labels, Go's buckets and code names), and the access log's JSON line."""

from __future__ import annotations

import io
import json
import logging
import re
import types

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from protoc_gen_pygateway.runtime import accesslog, metrics, observe


def test_request_id_taken_when_valid() -> None:
    headers = [(b"host", b"x"), (b"x-request-id", b"abc-123 tenant/7"), (b"x-request-id", b"second")]
    assert observe.request_id_of(headers) == "abc-123 tenant/7"
    assert observe.request_id_of([(b"x-request-id", b"a" * 128)]) == "a" * 128


def test_request_id_generated_when_absent_or_empty() -> None:
    for headers in ([], [(b"x-request-id", b"")], [(b"x-request-id", b"   ")]):
        rid = observe.request_id_of(headers)
        assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert observe.request_id_of([]) != observe.request_id_of([])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"a" * 129, "longer than 128 characters"),
        (b"caf\xc3\xa9", "not printable ASCII"),
        (b"a\tb", "not printable"),
    ],
)
def test_request_id_replaced_and_logged_when_invalid(
    value: bytes, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pygateway"):
        rid = observe.request_id_of([(b"x-request-id", value)])
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    [record] = caplog.records
    assert reason in record.getMessage() and rid in record.getMessage()


def test_request_info_detail_is_protojson_of_google_rpc_request_info() -> None:
    from google.protobuf import any_pb2, json_format
    from google.rpc import error_details_pb2  # type: ignore[import-untyped,unused-ignore]

    detail = observe.request_id_info("req-1")
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.RequestInfo(request_id="req-1"))
    assert detail == json_format.MessageToDict(packed)


def _families(registry: CollectorRegistry) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = generate_latest(registry).decode()
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_exposition_names_labels_buckets() -> None:
    registry = CollectorRegistry()
    m = metrics.Metrics(registry)
    rpc = m.rpc("shop.v1.ShopService.GetBook", "unary")
    rpc.started += 2
    rpc.sent += 2
    rpc.received += 1
    rpc.handled[0] += 1
    rpc.handled[5] += 1
    rpc.handling.observe(0.005)  # on a bound: in that bucket (le)
    rpc.handling.observe(11.0)  # beyond the last bound: +Inf only
    m.http("/v1/{name=shelves/*/books/*}", "GET").record(200, 0.003)
    m.http("unmatched", "GET").record(404, 0.001)
    web = type("Rpc", (), {"path": "/shop.v1.ShopService/GetBook"})()  # hashed by identity, as RpcMethod
    m.rpc_http(web, "grpcweb", "POST").record(200, 0.002)
    for protocol, method in (("grpcweb", "POST"), ("connect", "POST"), ("connect", "GET")):  # cached
        assert m.rpc_http(web, protocol, method) is m.rpc_http(web, protocol, method)
    assert m.rpc_http(web, "connect", "GET") is not m.rpc_http(web, "connect", "POST")
    m.rpc_http(web, "connect", "POST").record(200, 0.002)
    m.rpc_http(web, "connect", "GET").record(200, 0.002)
    m.rpc_http(web, "connect", "POST").record(404, 0.002)
    m.stream_opened("sse")
    m.stream_opened("ndjson")
    m.stream_ended("ndjson", "client_gone")
    families = _families(registry)
    labels = {"grpc_type": "unary", "grpc_service": "shop.v1.ShopService", "grpc_method": "GetBook"}
    assert families["grpc_client_started"] == [("grpc_client_started_total", labels, 2.0)]
    assert families["grpc_client_msg_sent"] == [("grpc_client_msg_sent_total", labels, 2.0)]
    assert families["grpc_client_msg_received"] == [("grpc_client_msg_received_total", labels, 1.0)]
    assert families["grpc_client_handled"] == [
        ("grpc_client_handled_total", {**labels, "grpc_code": "OK"}, 1.0),
        ("grpc_client_handled_total", {**labels, "grpc_code": "NotFound"}, 1.0),
    ]
    histogram = families["grpc_client_handling_seconds"]
    buckets = [(s[1]["le"], s[2]) for s in histogram if s[0].endswith("_bucket")]
    assert [le for le, _ in buckets] == [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"
    ]  # fmt: skip
    assert [count for _, count in buckets] == [1.0] * 11 + [2.0]
    assert families["pygateway_http_requests"] == [
        (
            "pygateway_http_requests_total",
            {"route": "/v1/{name=shelves/*/books/*}", "method": "GET", "protocol": "rest", "status": "200"},
            1.0,
        ),
        (
            "pygateway_http_requests_total",
            {"route": "unmatched", "method": "GET", "protocol": "rest", "status": "404"},
            1.0,
        ),
        *(
            (
                "pygateway_http_requests_total",
                {"route": web.path, "method": method, "protocol": protocol, "status": status},
                1.0,
            )
            for method, protocol, status in (
                ("POST", "grpcweb", "200"),
                ("POST", "connect", "200"),
                ("POST", "connect", "404"),
                ("GET", "connect", "200"),
            )
        ),
    ]
    durations = [s for s in families["pygateway_http_request_duration_seconds"] if s[0].endswith("_count")]
    assert [(s[1]["route"], s[1]["method"], s[1]["protocol"], s[2]) for s in durations] == [
        ("/v1/{name=shelves/*/books/*}", "GET", "rest", 1.0),
        ("unmatched", "GET", "rest", 1.0),
        (web.path, "POST", "grpcweb", 1.0),
        (web.path, "POST", "connect", 2.0),
        (web.path, "GET", "connect", 1.0),
    ]
    for protocol in ("ndjson", "sse", "websocket", "grpcweb", "connect"):  # every protocol from the start
        assert any(s[1] == {"protocol": protocol} for s in families["pygateway_streams_open"])
    assert ("pygateway_streams_open", {"protocol": "sse"}, 1.0) in families["pygateway_streams_open"]
    assert ("pygateway_streams_open", {"protocol": "ndjson"}, 0.0) in families["pygateway_streams_open"]
    assert families["pygateway_streams_ended"] == [
        ("pygateway_streams_ended_total", {"protocol": "ndjson", "outcome": "client_gone"}, 1.0)
    ]


def test_go_code_names() -> None:
    assert metrics.GRPC_CODE_NAMES[1] == "Canceled"  # Go's spelling
    assert metrics.GRPC_CODE_NAMES[16] == "Unauthenticated"
    assert len(metrics.GRPC_CODE_NAMES) == 17


def test_access_log_line() -> None:
    stream = io.StringIO()
    logger = accesslog.configure(stream)
    try:
        observers = observe.Observers(None, None, accesslog.AccessLog(logger))
        scope = {"type": "http", "method": "GET", "path": "/v1/x", "headers": []}

        async def nothing(event: object = None) -> None:
            return None

        exchange = observe.Exchange(observers, scope, nothing, nothing, "rid-1")  # type: ignore[arg-type]
        exchange.routed(types.SimpleNamespace(template="/v1/{x}", name="pkg.Service.Method"))
        exchange.status = 200
        exchange.call_ended(0)
        exchange.finish()
    finally:
        logger.handlers.clear()
        logger.propagate = True
    line = json.loads(stream.getvalue())
    assert list(line) == [
        "time", "request_id", "method", "path", "route", "protocol", "stream", "status", "grpc_code",
        "outcome", "duration_ms", "request_bytes", "response_bytes", "request_messages", "response_messages",
    ]  # fmt: skip
    assert line["request_id"] == "rid-1" and line["route"] == "/v1/{x}" and line["status"] == 200
    assert line["grpc_code"] == 0 and line["protocol"] == "rest" and line["stream"] is None
    assert line["outcome"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
