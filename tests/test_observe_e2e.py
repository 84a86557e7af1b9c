"""Request ids across layers, Prometheus metrics and the access log, end to end (issue 14 §4-6).

Real components: the example grpc.aio backend (which records the metadata of every call), the serve
command as a subprocess (`--access-log --metrics`, under its default server and under `--server uvicorn`),
httpx and websockets clients, and a real nginx in front (`proxy_set_header X-Request-ID $request_id`,
its access log showing `$request_id`). Metrics are checked by scraping `/metrics` after a known mix of
requests and streams and comparing exact counts, also from a gateway serving `--metrics` alone (unary
routes tallied without an Exchange).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.conftest import free_port
from tests.servers import Nginx, _Process, nginx_binary
from tests.stream_support import wait_until

SERVERS = {"default": [], "uvicorn": ["--server", "uvicorn"]}
BOOK = "/v1/shelves/fiction/books/dune"
BOOK_ROUTE = "/v1/{name=shelves/*/books/*}"
MISSING = "/v1/shelves/fiction/books/missing"
WATCH = "/v1/shelves/fiction/events:watch"
WATCH_ROUTE = "/v1/{shelf=shelves/*}/events:watch"
HEX32 = re.compile(r"[0-9a-f]{32}")
REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"


class Serve(_Process):
    """`python GEN/pygateway_serve.py ...` with stdout and stderr in a log file."""

    def __init__(
        self, gen: Path, upstream: str, log: Path, server: str, flags: list[str] | None = None
    ) -> None:
        self.server = server
        extra = [*(["--access-log", "--metrics"] if flags is None else flags), *SERVERS[server]]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, str(gen / "pygateway_serve.py"), "--upstream", upstream]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--log-level", "warning", *extra]
        env = {**os.environ, "PYTHONPATH": str(gen), "PYTHONUNBUFFERED": "1"}
        super().__init__("serve", argv, env, log)
        try:
            self.wait_ready(self.port)
        except BaseException:
            self.stop()
            raise

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def access(self) -> list[dict[str, Any]]:
        """The access log's JSON lines so far."""
        out = []
        for line in self.lines():
            if line.startswith('{"time"'):
                out.append(json.loads(line))
        return out


@pytest.fixture(scope="module")
def backend(gen_dir: Path) -> Iterator[Any]:
    from demo.backend import BackgroundBackend

    with BackgroundBackend() as running:
        yield running


@pytest.fixture(scope="module", params=sorted(SERVERS))
def served(
    request: pytest.FixtureRequest, gen_dir: Path, backend: Any, tmp_path_factory: Any
) -> Iterator[Serve]:
    log = tmp_path_factory.mktemp("observe") / f"serve-{request.param}.log"
    server = Serve(gen_dir, backend.target, log, request.param)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def nginx(served: Serve, tmp_path_factory: Any) -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        pytest.fail("nginx is required (.ci/run installs it)")
    proxy = Nginx(binary, served.port, tmp_path_factory.mktemp("nginx"), request_id=True)
    yield proxy
    proxy.stop()


def access_line(server: Serve, request_id: str) -> dict[str, Any]:
    """The access-log line of `request_id` (lines are written when the exchange ends: wait for it)."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [line for line in server.access() if line["request_id"] == request_id]
        return bool(found)

    assert wait_until(seen, timeout=5), f"no access-log line for {request_id}:\n{server.log_tail()}"
    [line] = found
    return line


def request_info(body: dict[str, Any]) -> str:
    [info] = [d for d in body["details"] if d.get("@type") == REQUEST_INFO]
    return str(info["requestId"])


# ----------------------------------------------------------------------------------------- request ids


def test_one_request_id_in_nginx_gateway_backend_and_response(
    served: Serve, nginx: Nginx, backend: Any
) -> None:
    backend.reset()
    response = httpx.get(nginx.url + BOOK, headers={"X-Request-ID": "from-the-client"}, timeout=10)
    assert response.status_code == 200
    rid = response.headers["x-request-id"]
    assert HEX32.fullmatch(rid)  # nginx's $request_id replaced the client's
    assert wait_until(lambda: any(f"request_id={rid}" in line for line in nginx.access_log()))
    [logged] = [line for line in nginx.access_log() if f"request_id={rid}" in line]
    assert f'"GET {BOOK} HTTP/1.1" 200' in logged
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == [rid]
    line = access_line(served, rid)
    assert (line["route"], line["status"], line["grpc_code"], line["method"]) == (BOOK_ROUTE, 200, 0, "GET")


def test_request_id_through_nginx_on_errors_and_streams(served: Serve, nginx: Nginx, backend: Any) -> None:
    backend.reset()
    missing = httpx.get(nginx.url + MISSING, timeout=10)
    assert missing.status_code == 404
    rid = missing.headers["x-request-id"]
    assert request_info(missing.json()) == rid
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == [rid]
    assert access_line(served, rid)["grpc_code"] == 5

    with httpx.stream("GET", nginx.url + WATCH + "?count=2", timeout=10) as stream:
        rid = stream.headers["x-request-id"]  # in the head, before the first message
        lines = [json.loads(line) for line in stream.iter_lines() if line]
    assert [line["result"]["seq"] for line in lines] == ["0", "1"]  # int64: a string
    assert backend.recorder.last("Watch").metadata_values("x-request-id") == [rid]
    assert wait_until(lambda: any(f"request_id={rid}" in line for line in nginx.access_log()))
    line = access_line(served, rid)
    assert (line["protocol"], line["stream"], line["outcome"]) == ("rest", "ndjson", "ok")
    assert line["response_messages"] == 2


def test_request_id_kept_generated_or_replaced(served: Serve, backend: Any) -> None:
    backend.reset()
    kept = httpx.get(served.url + BOOK, headers={"X-Request-ID": "order-42/attempt 2"}, timeout=10)
    assert kept.headers["x-request-id"] == "order-42/attempt 2"
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == ["order-42/attempt 2"]

    generated = httpx.get(served.url + BOOK, timeout=10)
    assert HEX32.fullmatch(generated.headers["x-request-id"])
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == [
        generated.headers["x-request-id"]
    ]

    too_long = "x" * 129
    replaced = httpx.get(served.url + BOOK, headers={"X-Request-ID": too_long}, timeout=10)
    rid = replaced.headers["x-request-id"]
    assert HEX32.fullmatch(rid)
    assert backend.recorder.last("GetBook").metadata_values("x-request-id") == [rid]
    assert wait_until(lambda: any("X-Request-ID" in line and rid in line for line in served.lines()))
    [warning] = [line for line in served.lines() if "X-Request-ID" in line and rid in line]
    assert "longer than 128 characters" in warning


def test_request_id_in_every_kind_of_error(served: Serve) -> None:
    # The gateway's own refusals: no route, a bad body, a routing 405.
    for response in (
        httpx.get(served.url + "/v1/nothing-here", headers={"X-Request-ID": "r-404"}, timeout=10),
        httpx.post(
            served.url + "/v1/shelves/fiction/books",
            content=b"{bad",
            headers={"X-Request-ID": "r-400", "Content-Type": "application/json"},
            timeout=10,
        ),
        httpx.delete(served.url + "/v1/uploads", headers={"X-Request-ID": "r-405"}, timeout=10),
    ):
        rid = response.headers["x-request-id"]
        assert rid == f"r-{response.status_code}"
        assert request_info(response.json()) == rid
    # A stream failing before its first message, and after it (the error line).
    refused = httpx.get(
        served.url + "/v1/shelves/missing/events:watch", headers={"X-Request-ID": "s-1"}, timeout=10
    )
    assert refused.status_code == 404
    assert request_info(json.loads(refused.text)["error"]) == "s-1"
    failing = httpx.get(
        served.url + WATCH + "?count=3&fail_code=13&fail_after=1", headers={"X-Request-ID": "s-2"}, timeout=10
    )
    *_, last = [json.loads(line) for line in failing.text.splitlines() if line]
    assert last["error"]["code"] == 13 and request_info(last["error"]) == "s-2"
    sse = httpx.get(
        served.url + WATCH + "?count=3&fail_code=13&fail_after=1",
        headers={"X-Request-ID": "s-3", "Accept": "text/event-stream"},
        timeout=10,
    )
    assert sse.headers["x-request-id"] == "s-3"
    error_event = sse.text.split("event: error\ndata: ", 1)[1].split("\n", 1)[0]
    assert request_info(json.loads(error_event)["error"]) == "s-3"
    # WebSocket: the id in the handshake response and in the final error message.
    url = served.url.replace("http://", "ws://") + "/v1/shelves/missing/events:watch"
    with connect(url, additional_headers={"X-Request-ID": "w-1"}, open_timeout=10) as ws:
        assert ws.response is not None
        # uvicorn (the default for modules with WebSocket routes) sends the `headers` of ASGI's
        # websocket.accept; granian (2.x, `--server granian`) drops them.
        assert ws.response.headers.get("x-request-id") == "w-1"
        message = json.loads(ws.recv(timeout=10))
    assert request_info(message["error"]) == "w-1"


# ------------------------------------------------------------------------------------------------ metrics


def scrape(server: Serve) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")  # the Prometheus text format
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def rpc(grpc_type: str, service: str, method: str) -> dict[str, str]:
    return {"grpc_type": grpc_type, "grpc_service": f"shop.v1.{service}", "grpc_method": method}


def test_metrics_after_a_known_mix(served: Serve, backend: Any) -> None:
    before = scrape(served)
    ids = known_mix(served)
    check_known_mix(before, scrape(served))
    # The access log has one line per exchange, with the status the client saw.
    for rid, status in ids.items():
        assert access_line(served, rid)["status"] == status


@pytest.fixture(scope="module")
def metrics_alone(gen_dir: Path, backend: Any, tmp_path_factory: Any) -> Iterator[Serve]:
    """serve --metrics and nothing else: unary routes and unmatched requests are tallied on their Request
    instead of observed through an Exchange (runtime/observe.py), so the same mix is counted again."""
    log = tmp_path_factory.mktemp("observe") / "serve-metrics-alone.log"
    server = Serve(gen_dir, backend.target, log, "default", ["--metrics"])
    yield server
    server.stop()


def test_metrics_alone_after_the_known_mix(metrics_alone: Serve, backend: Any) -> None:
    before = scrape(metrics_alone)
    known_mix(metrics_alone)
    check_known_mix(before, scrape(metrics_alone))
    assert not any(line.startswith('{"time"') for line in metrics_alone.lines())  # no access log


def known_mix(served: Serve) -> dict[str, int]:
    """Unary calls (3 found, 2 NotFound), an unmatched path, server streams (NDJSON, SSE, failing, client
    gone), a client stream, a bidi stream and a WebSocket; returns request id -> status. Waits until no
    stream is open any more."""
    url = served.url
    ids: dict[str, int] = {}  # request id -> status, to find in the access log afterwards

    def note(response: httpx.Response) -> None:
        ids[response.headers["x-request-id"]] = response.status_code

    for _ in range(3):
        note(httpx.get(url + BOOK, timeout=10))
    for _ in range(2):
        note(httpx.get(url + MISSING, timeout=10))
    note(httpx.get(url + "/v1/nothing-here", timeout=10))
    for _ in range(2):
        note(httpx.get(url + WATCH + "?count=3", timeout=10))
    note(httpx.get(url + WATCH + "?count=2", headers={"Accept": "text/event-stream"}, timeout=10))
    note(httpx.get(url + WATCH + "?count=3&fail_code=13&fail_after=1", timeout=10))
    with httpx.stream("GET", url + WATCH + "?count=100&interval_ms=200", timeout=10) as gone:
        ids[gone.headers["x-request-id"]] = 200
        next(gone.iter_lines())  # one event, then the client leaves
    upload = b'{"name": "a", "data": "x"}\n{"name": "b", "data": "y"}\n{"name": "c", "data": "z"}\n'
    note(
        httpx.post(
            url + "/v1/uploads", content=upload, headers={"Content-Type": "application/x-ndjson"}, timeout=10
        )
    )
    chat = b'{"text": "hi"}\n{"text": "again"}\n'
    note(
        httpx.post(
            url + "/v1/chat", content=chat, headers={"Content-Type": "application/x-ndjson"}, timeout=10
        )
    )
    with connect(url.replace("http://", "ws://") + WATCH + "?count=2", open_timeout=10) as ws:
        while "end" not in json.loads(ws.recv(timeout=10)):
            pass

    def streams_closed() -> bool:
        now = scrape(served)
        return all(
            value(now, "pygateway_streams_open", protocol=p) == 0 for p in ("ndjson", "sse", "websocket")
        )

    assert wait_until(streams_closed, timeout=10)
    return ids


def check_known_mix(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> None:
    """The exact counts `known_mix` adds."""

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    book = rpc("unary", "ShopService", "GetBook")
    assert delta("grpc_client_started_total", **book) == 5
    assert delta("grpc_client_msg_sent_total", **book) == 5
    assert delta("grpc_client_msg_received_total", **book) == 3
    assert delta("grpc_client_handled_total", **book, grpc_code="OK") == 3
    assert delta("grpc_client_handled_total", **book, grpc_code="NotFound") == 2
    assert delta("grpc_client_handling_seconds_count", **book) == 5
    assert delta("grpc_client_handling_seconds_bucket", **book, le="+Inf") == 5

    watch = rpc("server_stream", "FeedService", "Watch")
    assert delta("grpc_client_started_total", **watch) == 6  # 2 + sse + failing + client gone + WebSocket
    assert delta("grpc_client_msg_sent_total", **watch) == 6
    # 3 + 3 + 2 (sse) + 1 (failing) + at least 1 (client gone) + 2 (WebSocket)
    assert delta("grpc_client_msg_received_total", **watch) >= 12
    assert delta("grpc_client_handled_total", **watch, grpc_code="OK") == 4
    assert delta("grpc_client_handled_total", **watch, grpc_code="Internal") == 1
    assert delta("grpc_client_handled_total", **watch, grpc_code="Canceled") == 1

    upload_labels = rpc("client_stream", "FeedService", "Upload")
    assert delta("grpc_client_msg_sent_total", **upload_labels) == 3
    assert delta("grpc_client_msg_received_total", **upload_labels) == 1
    assert delta("grpc_client_handled_total", **upload_labels, grpc_code="OK") == 1
    chat_labels = rpc("bidi_stream", "FeedService", "Chat")
    assert delta("grpc_client_msg_sent_total", **chat_labels) == 2
    assert delta("grpc_client_msg_received_total", **chat_labels) == 2
    assert delta("grpc_client_handled_total", **chat_labels, grpc_code="OK") == 1

    http = "pygateway_http_requests_total"
    assert delta(http, route=BOOK_ROUTE, method="GET", protocol="rest", status="200") == 3
    assert delta(http, route=BOOK_ROUTE, method="GET", protocol="rest", status="404") == 2
    assert delta(http, route="unmatched", method="GET", protocol="rest", status="404") == 1
    assert (
        delta(http, route=WATCH_ROUTE, method="GET", protocol="rest", status="200") == 5
    )  # the failing one failed after 1
    assert delta(http, route=WATCH_ROUTE, method="GET", protocol="rest", status="101") == 1  # WebSocket
    assert delta(http, route="/v1/uploads", method="POST", protocol="rest", status="200") == 1
    assert delta(http, route="/v1/chat", method="POST", protocol="rest", status="200") == 1
    duration = "pygateway_http_request_duration_seconds_count"
    assert delta(duration, route=BOOK_ROUTE, method="GET", protocol="rest") == 5

    ended = "pygateway_streams_ended_total"
    assert delta(ended, protocol="ndjson", outcome="ok") == 4  # 2 watches, upload, chat
    assert delta(ended, protocol="sse", outcome="ok") == 1
    assert delta(ended, protocol="ndjson", outcome="upstream_error") == 1
    assert delta(ended, protocol="ndjson", outcome="client_gone") == 1
    assert delta(ended, protocol="websocket", outcome="ok") == 1
    assert not any(  # every request was answered or is a counted stream: none counted as unanswered
        name == "pygateway_http_requests_total" and ("status", "499") in labels and after[(name, labels)]
        for name, labels in after
    )


def test_metrics_without_prometheus_client_fails_naming_the_extra(
    gen_dir: Path, backend: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    (blocker / "prometheus_client.py").write_text("raise ImportError('prometheus_client is blocked here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(gen_dir)])}
    argv = [sys.executable, str(gen_dir / "pygateway_serve.py"), "--upstream", backend.target, "--metrics"]
    argv += ["--listen", f"127.0.0.1:{free_port()}"]
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "--metrics needs prometheus_client" in done.stderr
    assert "protoc-gen-pygateway[metrics]" in done.stderr
    assert time.monotonic() - started < 60


def test_serve_tracing_without_an_sdk_passes_the_trace_context_on(
    gen_dir: Path, backend: Any, tmp_path: Path
) -> None:
    """`--tracing` with only opentelemetry-api configured (no SDK provider): spans are no-ops, and the
    upstream gets the incoming trace context once (the no-op span carries the parent's context)."""
    server = Serve(gen_dir, backend.target, tmp_path / "serve-tracing.log", "default", ["--tracing"])
    try:
        backend.reset()
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        response = httpx.get(server.url + BOOK, headers={"traceparent": parent}, timeout=10)
        assert response.status_code == 200
        assert backend.recorder.last("GetBook").metadata_values("traceparent") == [parent]
    finally:
        server.stop()
