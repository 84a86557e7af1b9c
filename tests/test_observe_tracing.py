"""OpenTelemetry spans (issue 14 §6), and metrics exposed from the user's own app (§5).

The generated gateway runs in this process under a real uvicorn (h11) on a loopback port, in a thread,
built with `GatewayOptions(tracer_provider=..., metrics=Metrics(registry))` against the example grpc.aio
backend; spans go to the OpenTelemetry SDK's InMemorySpanExporter, and the backend records the metadata
it received (the upstream span's `traceparent`).
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from tests.conftest import free_port
from tests.stream_support import wait_until

BOOK = "/v1/shelves/fiction/books/dune"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class InThread:
    """uvicorn serving `build()`'s app (built on the first request, inside uvicorn's loop) in a thread."""

    def __init__(self, build: Any) -> None:
        import uvicorn

        self.build = build
        self.app: Any = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self, host="127.0.0.1", port=self.port, http="h11", ws="none", lifespan="off", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.server.started, timeout=10)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = self.build()
        await self.app(scope, receive, send)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def backend(gen_dir: Path) -> Iterator[Any]:
    from demo.backend import BackgroundBackend

    with BackgroundBackend() as running:
        yield running


@pytest.fixture(scope="module")
def traced(gen_dir: Path, backend: Any) -> Iterator[tuple[InThread, InMemorySpanExporter, Any]]:
    import grpc.aio

    rt = importlib.import_module("pygateway_runtime")
    metrics_module = importlib.import_module("pygateway_runtime.metrics")
    shop = importlib.import_module("shop.v1.shop_pb2_gateway_shop_service")
    feed = importlib.import_module("shop.v1.feed_pb2_gateway_feed_service")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = metrics_module.Metrics(CollectorRegistry())

    def build() -> Any:
        channel = grpc.aio.insecure_channel(backend.target)
        options = rt.GatewayOptions(tracer_provider=provider, metrics=metrics)
        app = rt.combine(shop.create_app(channel), feed.create_app(channel), options=options)
        # The documented way to expose the metrics from one's own app: wrap it (or mount
        # prometheus_client.make_asgi_app(registry) where the app's framework mounts things).
        return metrics_module.MetricsEndpoint(app, metrics)

    server = InThread(build)
    yield server, exporter, metrics
    server.stop()


def sampled(traceparent: str, trace_id: str, span_id: int) -> bool:
    """`traceparent` names this trace and span, sampled (newer SDKs also set the random-trace-id flag)."""
    version, trace, span, flags = str(traceparent).split("-")
    return (version, trace, span) == ("00", trace_id, f"{span_id:016x}") and int(flags, 16) & 1 == 1


def spans_of(exporter: InMemorySpanExporter, count: int) -> list[Any]:
    assert wait_until(lambda: len(exporter.get_finished_spans()) >= count, timeout=5)
    spans = list(exporter.get_finished_spans())
    assert len(spans) == count, [s.name for s in spans]
    return spans


def test_server_span_with_upstream_child_and_traceparent_upstream(traced: Any, backend: Any) -> None:
    server, exporter, _ = traced
    exporter.clear()
    backend.reset()
    headers = {
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
        "tracestate": "vendor=opaque",
        "X-Request-ID": "t-1",
    }
    response = httpx.get(server.url + BOOK, headers=headers, timeout=10)
    assert response.status_code == 200
    client, root = sorted(spans_of(exporter, 2), key=lambda s: s.kind != SpanKind.CLIENT)
    assert root.kind == SpanKind.SERVER and root.name == "GET /v1/{name=shelves/*/books/*}"
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT_ID
    assert root.attributes["http.route"] == "/v1/{name=shelves/*/books/*}"
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["pygateway.request_id"] == "t-1"
    assert client.kind == SpanKind.CLIENT and client.name == "shop.v1.ShopService/GetBook"
    assert client.parent is not None and client.parent.span_id == root.context.span_id
    assert client.attributes["rpc.system"] == "grpc" and client.attributes["rpc.grpc.status_code"] == 0
    call = backend.recorder.last("GetBook")
    # The incoming context is replaced by the upstream span's, never forwarded beside it.
    [traceparent] = call.metadata_values("traceparent")
    assert sampled(traceparent, TRACE_ID, client.context.span_id)
    assert call.metadata_values("tracestate") == ["vendor=opaque"]


def test_new_trace_without_traceparent_and_error_status(traced: Any, backend: Any) -> None:
    server, exporter, _ = traced
    exporter.clear()
    backend.reset()
    response = httpx.get(server.url + "/v1/shelves/fiction/books/missing", timeout=10)
    assert response.status_code == 404
    client, root = sorted(spans_of(exporter, 2), key=lambda s: s.kind != SpanKind.CLIENT)
    assert root.parent is None
    assert client.context.trace_id == root.context.trace_id
    assert client.status.status_code == StatusCode.ERROR and client.attributes["rpc.grpc.status_code"] == 5
    assert root.status.status_code != StatusCode.ERROR  # a 404 is no server error
    [traceparent] = backend.recorder.last("GetBook").metadata_values("traceparent")
    assert sampled(traceparent, f"{root.context.trace_id:032x}", client.context.span_id)


def test_stream_span_and_routing_error_span(traced: Any) -> None:
    server, exporter, _ = traced
    exporter.clear()
    lines = httpx.get(server.url + "/v1/shelves/fiction/events:watch?count=2", timeout=10).text.splitlines()
    assert len(lines) == 2
    client, root = sorted(spans_of(exporter, 2), key=lambda s: s.kind != SpanKind.CLIENT)
    assert client.name == "shop.v1.FeedService/Watch" and client.parent.span_id == root.context.span_id
    assert root.name == "GET /v1/{shelf=shelves/*}/events:watch"
    exporter.clear()
    assert httpx.get(server.url + "/v1/nothing-here", timeout=10).status_code == 404
    [only] = spans_of(exporter, 1)  # no route: a server span, no upstream call
    assert (
        only.kind == SpanKind.SERVER
        and only.name == "GET"
        and only.attributes["http.response.status_code"] == 404
    )


def test_grpcweb_and_connect_spans(traced: Any, backend: Any) -> None:
    """gRPC-Web and Connect calls get the same spans, named by the method's path, and the upstream gets
    the client span's context."""
    from protoc_gen_pygateway.runtime import connect, grpcweb

    server, exporter, _ = traced
    shop = importlib.import_module("shop.v1.shop_pb2")
    feed = importlib.import_module("shop.v1.feed_pb2")
    book = shop.GetBookRequest(name="shelves/fiction/books/dune").SerializeToString()
    watch = feed.WatchRequest(shelf="shelves/fiction", count=2).SerializeToString()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    for path, content_type, body, upstream in (
        (
            "/shop.v1.ShopService/GetBook",
            "application/grpc-web+proto",
            grpcweb.message_frame(book),
            "GetBook",
        ),
        ("/shop.v1.ShopService/GetBook", "application/proto", book, "GetBook"),
        ("/shop.v1.FeedService/Watch", "application/connect+proto", connect.envelope(0, watch), "Watch"),
    ):
        exporter.clear()
        backend.reset()
        headers = {"Content-Type": content_type, "traceparent": traceparent}
        assert httpx.post(server.url + path, content=body, headers=headers, timeout=10).status_code == 200
        client, root = sorted(spans_of(exporter, 2), key=lambda s: s.kind != SpanKind.CLIENT)
        assert root.name == f"POST {path}" and root.attributes["http.route"] == path
        assert f"{root.context.trace_id:032x}" == TRACE_ID
        assert client.name == path[1:] and client.parent.span_id == root.context.span_id
        [sent] = backend.recorder.last(upstream).metadata_values("traceparent")
        assert sampled(sent, TRACE_ID, client.context.span_id)


def test_metrics_served_from_the_users_app(traced: Any) -> None:
    server, _, _ = traced
    assert httpx.get(server.url + BOOK, timeout=10).status_code == 200
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert 'grpc_client_handled_total{grpc_code="OK",grpc_method="GetBook"' in response.text
    assert httpx.post(server.url + "/metrics", timeout=10).status_code == 405
    assert json.loads(httpx.post(server.url + "/metrics", timeout=10).text)["code"] == 12


def test_tracing_off_imports_no_opentelemetry(gen_dir: Path) -> None:
    """Off by default: a gateway built without tracing or metrics never imports either package."""
    import subprocess
    import sys

    code = (
        "import sys, grpc.aio, asyncio\n"
        "import pygateway_runtime as rt\n"
        "from shop.v1 import shop_pb2_gateway_shop_service as shop\n"
        "async def main():\n"
        "    shop.create_app(grpc.aio.insecure_channel('127.0.0.1:1'))\n"
        "asyncio.run(main())\n"
        "bad = [m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus_client'))]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(gen_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
