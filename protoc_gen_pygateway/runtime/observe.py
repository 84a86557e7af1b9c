"""Following one request across layers: its request id, and what metrics, tracing and the access log see
of it.

Request ids are on by default (`GatewayOptions(request_id=False)` turns them off): a request's
`X-Request-ID` (printable ASCII, at most 128 characters; otherwise replaced by a new one and logged) or a
new random one (32 hex digits) is forwarded as metadata `x-request-id`, returned as the response's
`X-Request-ID` (streams: in the response headers, before the first message), carried in every error body
as a `google.rpc.RequestInfo` detail, and written in every access-log line.

Metrics (`metrics.py`), tracing (`tracing.py`) and the access log (`accesslog.py`) are off by default;
`Observers.build` returns None then, and a request costs one `is None` test. When one is on, each request
gets an `Exchange` that the routing loop and the call helpers report to, with one exception: when metrics
are the only observer (`Observers.tally`), a request to a unary route, or to no route, is tallied on its
`Request` (arrival, status, the upstream call's start, end and code) and handed to `Metrics.tallied` at
its end. An Exchange and its reports cost about 2 us of CPU per request in the served gateway, the bulk of
the metrics' cost (docs/observability.md, Cost); streams, gRPC-Web and Connect still get one.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported only for types: the modules themselves load only when their feature is on
    from .accesslog import AccessLog
    from .metrics import Metrics, RpcStats
    from .tracing import Tracing

__all__ = [
    "MAX_REQUEST_ID",
    "REQUEST_ID_HEADER",
    "Exchange",
    "Observers",
    "new_request_id",
    "request_id_info",
    "request_id_of",
]

logger = logging.getLogger("pygateway")
_now = time.perf_counter

Event = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Event]]
Send = Callable[[Event], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
#: Longest request id taken from a request (longer ones are replaced).
MAX_REQUEST_ID = 128
_VALID_ID = re.compile(r"[\x20-\x7e]{1,128}")
_REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"


def new_request_id() -> str:
    """32 random hex digits (128 bits from the OS's CSPRNG; os.urandom is the cheapest source, ~0.4 us)."""
    return os.urandom(16).hex()


def request_id_of(headers: Any) -> str:
    """The request's id: its first X-Request-ID when valid, else a new one (an invalid one is logged).

    Valid: 1 to 128 printable ASCII characters (what gRPC metadata can carry and logs can show). An empty
    value counts as none.
    """
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            text: str = bytes(value).decode("latin-1").strip()
            if _VALID_ID.fullmatch(text):
                return text
            if not text:
                break
            replacement = new_request_id()
            reason = "longer than 128 characters" if len(text) > MAX_REQUEST_ID else "not printable ASCII"
            logger.warning(
                "X-Request-ID %s refused (%s): request id %s used instead",
                ascii(text[:64]),
                reason,
                replacement,
            )
            return replacement
    return new_request_id()


def request_id_info(request_id: str) -> dict[str, Any]:
    """The `google.rpc.RequestInfo` detail of an error body, as protojson prints it in a Status."""
    return {"@type": _REQUEST_INFO, "requestId": request_id}


class Observers:
    """What a gateway reports requests to: metrics, tracing, the access log (each optional)."""

    __slots__ = ("access_log", "metrics", "tally", "tracing")

    def __init__(
        self, metrics: Metrics | None, tracing: Tracing | None, access_log: AccessLog | None
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.access_log = access_log
        #: The metrics when they are the only observer: unary requests are then tallied (module doc).
        self.tally = metrics if tracing is None and access_log is None else None

    @classmethod
    def build(cls, options: Any) -> Observers | None:
        """From GatewayOptions: None when nothing observes (the per-request cost is then one test)."""
        metrics = getattr(options, "metrics", None)
        tracing: Tracing | None = None
        if getattr(options, "tracing", False) or getattr(options, "tracer_provider", None) is not None:
            from .tracing import Tracing

            tracing = Tracing(getattr(options, "tracer_provider", None))
        access: AccessLog | None = None
        wanted = getattr(options, "access_log", False)
        if wanted:
            from .accesslog import AccessLog

            access = AccessLog(wanted if isinstance(wanted, logging.Logger) else None)
        if metrics is None and tracing is None and access is None:
            return None
        return cls(metrics, tracing, access)


class Exchange:
    """One request or stream as the observers see it; created by the routing loop only when some
    observer is on. The routing loop wraps the server's `send`/`receive` with `send`/`receive` here
    (status, bytes, WebSocket messages), and the call helpers report the upstream call."""

    # __slots__, every field set in __init__, and a unary call reports twice (unary_started, unary_ended)
    # instead of four times: in the served gateway an exchange and its calls cost about 2 us per request
    # before any counting (docs/observability.md, Cost), so its path is kept short.
    __slots__ = (
        "_receive",
        "_send",
        "code",
        "counting",
        "end",
        "grpc_type",
        "matched",
        "method",
        "metrics",
        "observers",
        "outcome",
        "protocol",
        "request_bytes",
        "request_id",
        "request_messages",
        "response_bytes",
        "response_messages",
        "route",
        "rpc",
        "rpc_code",
        "rpc_ended",
        "rpc_name",
        "rpc_started",
        "scope",
        "span",
        "start",
        "status",
        "stream",
        "upstream_span",
    )

    def __init__(
        self,
        observers: Observers,
        scope: Any,
        receive: Receive,
        send: Send,
        request_id: str | None,
        start: float = 0.0,
    ) -> None:
        #: When the request arrived (`start`: a tallied request's arrival, when it turned out to need an
        #: exchange: a stream, gRPC-Web, Connect).
        self.start = start or _now()
        self.end = 0.0
        self.observers = observers
        self.metrics = observers.metrics
        self.scope = scope
        self.method: str = scope.get("method") or "GET"
        self._receive = receive
        self._send = send
        self.request_id = request_id
        #: Whether the routing loop must wrap send/receive with this exchange's (bytes, WebSocket
        #: messages): only the access log reports them; the status is reported without it.
        self.counting = observers.access_log is not None
        #: The matched template (gRPC-Web and Connect: the `/pkg.Service/Method` path).
        self.route: str | None = None
        self.matched: Any = None  # the matched routing.Route (gRPC-Web and Connect: the rpc.RpcMethod)
        self.protocol = "rest"  # what served it: rest, grpcweb or connect
        self.rpc_name = ""  # the route's method, "pkg.Service.Method"
        self.grpc_type = ""
        self.status = 0
        self.code: int | None = None  # the gRPC code of the answer (the upstream's or the gateway's own)
        self.rpc_code = -1  # the upstream call's final code, -1 until it ended
        self.stream: str | None = None  # set for streams: ndjson, sse, websocket, grpcweb, connect
        self.outcome: str | None = None
        self.request_bytes = 0  # counted only with the access log on (`counting`)
        self.response_bytes = 0
        self.request_messages = 0
        self.response_messages = 0
        self.rpc: RpcStats | None = None  # streams: the call's stats, updated as messages flow
        self.rpc_started = 0.0
        self.rpc_ended = 0.0
        self.upstream_span: Any = None
        self.span: Any = None
        if observers.tracing is not None:
            self.span = observers.tracing.server_span(scope, self.method, request_id)

    @property
    def path(self) -> str:
        return str(self.scope.get("path", ""))

    # -- the server's send and receive, counted

    async def send(self, event: Event) -> None:
        kind = event["type"]
        if kind == "http.response.body":
            self.response_bytes += len(event.get("body", b""))
        elif kind == "http.response.start":
            self.status = event["status"]
        elif kind == "websocket.send":
            self.response_messages += 1
            self.response_bytes += len(event.get("text") or "") or len(event.get("bytes") or b"")
        elif kind == "websocket.accept":
            self.status = 101
        elif kind == "websocket.http.response.start":
            self.status = event["status"]
        await self._send(event)

    async def receive(self) -> Event:
        event = await self._receive()
        kind = event["type"]
        if kind == "http.request":
            self.request_bytes += len(event.get("body", b""))
        elif kind == "websocket.receive":
            self.request_bytes += len(event.get("text") or "") or len(event.get("bytes") or b"")
        return event

    # -- reports from the routing loop and the call helpers

    def routed(self, route: Any) -> None:
        """The request matched `route` (a routing.Route: its template and "pkg.Service.Method" name)."""
        self.matched = route
        self.route = route.template
        self.rpc_name = route.name
        if self.span is not None:
            self.observers.tracing.routed(self.span, self.method, route.template)  # type: ignore[union-attr]

    def rpc_routed(self, rpc: Any, protocol: str) -> None:
        """The request is served as gRPC-Web or Connect (`protocol`) for `rpc` (an rpc.RpcMethod)."""
        self.matched = rpc
        self.route = rpc.path
        self.rpc_name = rpc.name
        self.protocol = protocol
        if self.span is not None:
            self.observers.tracing.routed(self.span, self.method, rpc.path)  # type: ignore[union-attr]

    def call_started(self, grpc_type: str, metadata: list[tuple[str, str | bytes]]) -> None:
        """The route's upstream call is about to start with `metadata` (with tracing on, the request's
        trace context in it is replaced by the upstream span's)."""
        self.grpc_type = grpc_type
        self.rpc_started = _now()
        if self.metrics is not None and grpc_type != "unary":
            self.rpc = rpc = self.metrics.rpc(self.rpc_name, grpc_type)
            rpc.started += 1
        tracing = self.observers.tracing
        if tracing is not None:
            self.upstream_span = tracing.client_span(self.span, self.rpc_name, grpc_type, metadata)

    def message_sent(self) -> None:
        """One request message was written to the upstream call."""
        self.request_messages += 1
        if self.rpc is not None:
            self.rpc.sent += 1

    def message_received(self) -> None:
        """One reply message came from the upstream call."""
        if self.stream != "websocket" or not self.counting:  # else counted by `send`
            self.response_messages += 1
        if self.rpc is not None:
            self.rpc.received += 1

    def call_ended(self, code: int) -> None:
        """The upstream call ended with gRPC status `code` (the first report counts)."""
        if self.code is None:
            self.code = code
        if self.rpc_started <= 0 or self.rpc_code >= 0:
            return
        self.rpc_code = code if 0 <= code < 17 else 2  # 2: UNKNOWN
        self.rpc_ended = _now()
        if self.upstream_span is not None:
            self.observers.tracing.end_client(self.upstream_span, code)  # type: ignore[union-attr]
            self.upstream_span = None

    def unary_started(self, metadata: list[tuple[str, str | bytes]]) -> None:
        """A unary call with its one request message is about to start (`call_started` and
        `message_sent` in one report: the routing loop's hottest path, measured)."""
        self.grpc_type = "unary"
        self.request_messages += 1
        self.rpc_started = _now()
        tracing = self.observers.tracing
        if tracing is not None:
            self.upstream_span = tracing.client_span(self.span, self.rpc_name, "unary", metadata)

    def unary_ended(self, code: int) -> None:
        """The unary call ended with `code`; OK means its reply came (`message_received` and
        `call_ended` in one report)."""
        if code == 0:
            self.response_messages += 1
        self.call_ended(code)

    def stream_opened(self, stream: str) -> None:
        self.stream = stream
        if self.metrics is not None:
            self.metrics.stream_opened(stream)

    def stream_refused(self, stream: str) -> None:
        """A new stream refused because a graceful shutdown began: counted as a stream that ended with
        outcome `shutdown` (what its client sees: UNAVAILABLE "gateway shutting down")."""
        self.stream_opened(stream)
        self.stream_ended("shutdown")

    def stream_ended(self, outcome: str) -> None:
        """How the stream ended (the first report wins)."""
        if self.outcome is None:
            self.outcome = outcome

    def answered(self, code: int) -> None:
        """The gateway answered with a Status of its own (a refusal, an error line)."""
        if self.code is None:
            self.code = code

    @classmethod
    def of_tallied(cls, observers: Observers, request: Any) -> Exchange:
        """The exchange of a tallied request that turned out to need one (routed to a stream, gRPC-Web
        or Connect); the request is no longer tallied."""
        exchange = cls(
            observers, request.scope, request.receive, request.send, request.request_id, request.start
        )
        request.exchange = exchange
        request.start = 0.0
        exchange.status = request.status
        return exchange

    def unobserved(self) -> None:
        """Leave this exchange out of the metrics, the trace and the access log (a scrape of the metrics)."""
        self.metrics = None
        self.span = None  # started, never ended: not exported
        self.observers = _UNOBSERVED

    def finish(self) -> None:
        """The exchange is over: close what is open and report it."""
        if self.rpc_started > 0 and self.rpc_code < 0:  # never reported as ended: cut short
            self.call_ended(1)  # CANCELLED
        if self.stream is not None and self.outcome is None:
            self.outcome = "client_gone"  # cut short without a report: the handler was cancelled
        if not self.status:
            self.status = 499  # nothing was answered: the client closed the request (nginx's code)
        self.end = end = _now()
        if self.span is not None:
            self.observers.tracing.end_server(self.span, self.status, self.code)  # type: ignore[union-attr]
        if self.observers.access_log is not None:
            self.observers.access_log.write(self, end - self.start)
        metrics = self.metrics
        if metrics is not None:
            if self.stream is not None:  # at once: the open-streams gauge, on the event loop
                metrics.stream_ended(self.stream, self.outcome or "ok")
            # Counted later, in a batch: what it keeps of the request until then is its numbers.
            self.scope = self._receive = self._send = None  # type: ignore[assignment]
            metrics.finished(self)


_UNOBSERVED = Observers(None, None, None)


# ------------------------------------------------------------------------------------- the serve command


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The serve command's observability flags (all off by default)."""
    add = parser.add_argument
    add("--access-log", action="store_true", help="one JSON line per request or stream on stderr")
    add("--metrics", action="store_true", help="GET /metrics, Prometheus (needs the [metrics] extra)")
    add("--tracing", action="store_true", help="OpenTelemetry spans, global provider (needs [otel])")


def serve_setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a flag whose package is missing (naming the extra); send the access log to stderr."""
    for flag, package, extra in (
        ("metrics", "prometheus_client", "metrics"),
        ("tracing", "opentelemetry", "otel"),
    ):
        if getattr(args, flag):
            try:
                __import__(package)
            except ImportError:
                parser.error(
                    f"--{flag} needs {package}: pip install 'protoc-gen-pygateway[{extra}]' (or {package})"
                )
    if args.access_log:
        from .accesslog import configure

        configure()


def serve_metrics(config: dict[str, Any]) -> Metrics | None:
    """`--metrics`: the gateway's metrics, in prometheus_client's default registry (else None)."""
    if not config.get("metrics"):
        return None
    from .metrics import Metrics

    return Metrics()
