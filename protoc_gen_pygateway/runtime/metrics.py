"""Prometheus metrics of a gateway: the upstream calls under go-grpc-middleware's client metric names and
labels, the HTTP side by route, and the streams by protocol and outcome.

Optional: needs `prometheus_client` (protoc-gen-pygateway's `[metrics]` extra), imported by this module
only, which nothing imports unless metrics are turned on (`GatewayOptions(metrics=Metrics())`, serve
`--metrics`).

Upstream side (names, labels and histogram buckets as go-grpc-middleware v2's
`providers/prometheus` client metrics, so dashboards and alerts written for Go clients work):

- `grpc_client_started_total{grpc_type, grpc_service, grpc_method}`
- `grpc_client_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`
- `grpc_client_msg_received_total{grpc_type, grpc_service, grpc_method}`
- `grpc_client_msg_sent_total{grpc_type, grpc_service, grpc_method}`
- `grpc_client_handling_seconds{grpc_type, grpc_service, grpc_method}` (histogram, Go's DefBuckets)

`grpc_type` is `unary`, `client_stream`, `server_stream` or `bidi_stream`; `grpc_code` Go's code name
(`OK`, `Canceled`, `NotFound`, ...). Messages are counted as they are really sent and received (Go's v2
interceptors also count the read that reports the end of a stream, and a unary call's failed reply).

HTTP side:

- `pygateway_http_requests_total{route, method, protocol, status}`: every HTTP request and WebSocket
  exchange (`protocol` is what served it: `rest`, `grpcweb` (the -text variants too) or `connect`;
  `route` the matched template, e.g. `/v1/{name=shelves/*}`, for gRPC-Web and Connect the method's path
  `/pkg.Service/Method`, else `unmatched`; a WebSocket's status is 101 once accepted);
- `pygateway_http_request_duration_seconds{route, method, protocol}` (histogram, the same buckets);
- `pygateway_streams_open{protocol}` (gauge; `ndjson`, `sse`, `websocket`, `httpbody`, `grpcweb`,
  `connect`);
- `pygateway_streams_ended_total{protocol, outcome}`: `ok`, `upstream_error`, `client_gone`, `shutdown`
  (also a new stream refused because a shutdown began), or `bad_request` (a malformed request message
  ended it).

Why not prometheus_client's Counter/Histogram objects: their `labels()` lookup and per-value locks cost
about 1.5 us per operation, and a request makes seven; here each request updates plain integers in a few
objects resolved once per route (the gateway's counters are only touched on its event loop), and
`collect()` turns them into metric families when scraped (make bench's metrics row measures the cost).
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from .health import get_only
from .observe import _now

if TYPE_CHECKING:
    from .observe import Exchange
    from .request import Request

__all__ = ["BUCKETS", "GRPC_CODE_NAMES", "Metrics", "MetricsEndpoint"]

#: Go client_golang's prometheus.DefBuckets, which go-grpc-middleware's handling-time histogram uses.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BUCKET_NAMES = (*(repr(bound) for bound in BUCKETS), "+Inf")
_bisect = bisect.bisect_left

#: gRPC code number -> grpc-go's codes.Code.String(), the `grpc_code` label values.
GRPC_CODE_NAMES: tuple[str, ...] = (
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
)

GRPC_TYPES = ("unary", "client_stream", "server_stream", "bidi_stream")
#: The `protocol` label of pygateway_http_requests_total / _duration_seconds: what served the request.
SERVED_PROTOCOLS = ("rest", "grpcweb", "connect")
#: The `protocol` label of the stream metrics: REST's stream framings (`httpbody`: a server stream of
#: google.api.HttpBody written as one raw body), gRPC-Web and Connect streams.
PROTOCOLS = ("ndjson", "sse", "websocket", "httpbody", "grpcweb", "connect")
OUTCOMES = ("ok", "upstream_error", "client_gone", "shutdown", "bad_request")
UNMATCHED = "unmatched"
#: Exchanges counted together (see `Metrics.finished`).
BATCH = 256
#: What `Metrics.tallied` keeps of a request: route (None: unmatched), HTTP method, status, its start and
#: end, its unary call's start, end and gRPC code (-1: never ended).
_Tally = tuple[Any, str, int, float, float, float, float, int]


class _Histogram:
    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket (not cumulative); the last is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[_bisect(BUCKETS, seconds)] += 1  # le: the first bound >= the value
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        cumulative, out = 0, []
        for name, count in zip(_BUCKET_NAMES, self.counts, strict=True):
            cumulative += count
            out.append((name, float(cumulative)))
        return out


class RpcStats:
    """The counters of one upstream method and call type (one label set of the grpc_client_* metrics)."""

    __slots__ = ("handled", "handling", "labels", "received", "sent", "started")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.started = 0
        self.sent = 0
        self.received = 0
        self.handled = [0] * len(GRPC_CODE_NAMES)
        self.handling = _Histogram()


class HttpStats:
    """The counters of one route, HTTP method and protocol."""

    __slots__ = ("duration", "labels", "statuses")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels
        self.statuses: dict[int, int] = {}
        self.duration = _Histogram()

    def record(self, status: int, seconds: float) -> None:
        try:
            self.statuses[status] += 1
        except KeyError:
            self.statuses[status] = 1
        self.duration.observe(seconds)


class Metrics:
    """The gateway's metrics, registered as one collector in `registry` (prometheus_client's default
    registry unless given). Pass it as `GatewayOptions(metrics=...)`; several apps (or a `combine()`d one)
    may share it. Expose it with `MetricsEndpoint`, with prometheus_client's own `make_asgi_app()` /
    `start_http_server()` on the same registry, or with whatever already serves that registry."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._rpc: dict[tuple[str, str], RpcStats] = {}
        self._http: dict[tuple[str, str, str], HttpStats] = {}
        self._rpc_by_name: dict[str, RpcStats] = {}
        self._http_by_route: dict[Any, HttpStats] = {}
        #: gRPC-Web and Connect POSTs, by protocol, then by rpc.RpcMethod (identity).
        self._http_by_rpc: dict[str, dict[Any, HttpStats]] = {p: {} for p in SERVED_PROTOCOLS[1:]}
        self._connect_get_by_rpc: dict[Any, HttpStats] = {}  # Connect's GETs
        self.streams_open = dict.fromkeys(PROTOCOLS, 0)
        self.streams_ended: dict[tuple[str, str], int] = {}
        #: Exchanges over, not counted yet (see `finished`), and tallied requests' numbers (`tallied`).
        self._done: collections.deque[Exchange] = collections.deque()
        self._tallies: collections.deque[_Tally] = collections.deque()
        self._lock = threading.Lock()
        self.registry = registry
        if registry is not None:
            registry.register(self)

    def rpc(self, full_name: str, grpc_type: str) -> RpcStats:
        """The stats of upstream method `full_name` ("pkg.Service.Method", whose call type is always
        `grpc_type`): looked up by the name alone, a string whose hash Python keeps."""
        stats = self._rpc_by_name.get(full_name)
        if stats is None:
            stats = self._rpc_by_name[full_name] = self._rpc_stats(full_name, grpc_type)
        return stats

    def _rpc_stats(self, full_name: str, grpc_type: str) -> RpcStats:
        key = (full_name, grpc_type)
        stats = self._rpc.get(key)
        if stats is None:
            service, _, method = full_name.rpartition(".")
            stats = self._rpc[key] = RpcStats((grpc_type, service, method))
        return stats

    def http(self, route: str, method: str, protocol: str = "rest") -> HttpStats:
        key = (route, method, protocol)
        stats = self._http.get(key)
        if stats is None:
            stats = self._http[key] = HttpStats(key)
        return stats

    def route_http(self, route: Any) -> HttpStats:
        """The stats of a routing.Route (by identity: no tuple to build and hash per request)."""
        stats = self._http_by_route.get(route)
        if stats is None:
            stats = self._http_by_route[route] = self.http(route.template, route.method)
        return stats

    def rpc_http(self, rpc: Any, protocol: str, method: str) -> HttpStats:
        """The stats of an rpc.RpcMethod served as `protocol` (grpcweb, connect), route its path: looked
        up by the method's identity (two dict lookups, no label tuple built per request)."""
        if method == "POST":
            by_rpc = self._http_by_rpc[protocol]
        elif method == "GET" and protocol == "connect":
            by_rpc = self._connect_get_by_rpc
        else:  # not dispatched to these protocols today
            return self.http(rpc.path, method, protocol)
        stats = by_rpc.get(rpc)
        if stats is None:
            stats = by_rpc[rpc] = self.http(rpc.path, method, protocol)
        return stats

    def finished(self, exchange: Exchange) -> None:
        """An exchange is over (`Exchange.finish`; its stream's end is already counted): counted in the
        next batch. Counting each request on its own, in its path, cost 2-3 us of CPU per request under
        make bench (its code and data cold by then); a batch of them runs hot, for well under half of
        that. Batches are counted once BATCH exchanges wait, and before any collect (a scrape), so what
        a scrape shows is exact."""
        done = self._done
        done.append(exchange)
        if len(done) >= BATCH:
            self.flush()

    def tallied(self, request: Request) -> None:
        """A tallied request is over (a unary route's or an unmatched one, with metrics the only observer:
        observe.py): its numbers are counted in the next batch, as `finished`'s exchanges are."""
        tallies = self._tallies
        tallies.append(
            (
                request.route,
                request.scope["method"],
                request.status,
                request.start,
                _now(),
                request.rpc_started,
                request.rpc_ended,
                request.rpc_code,
            )
        )
        if len(tallies) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Count the exchanges that are over (any thread: prometheus_client may collect from its own)."""
        done, tallies = self._done, self._tallies
        with self._lock:
            # Only these loops (under the lock) pop; appends may go on meanwhile.
            count, pop = self._count, done.popleft
            while done:
                count(pop())
            count_tally, pop_tally = self._count_tally, tallies.popleft
            while tallies:
                count_tally(pop_tally())

    def _count_tally(self, tally: _Tally) -> None:
        """Count one tallied request: its HTTP request and its unary upstream call, if it made one."""
        route, method, status, start, end, rpc_started, rpc_ended, code = tally
        if route is not None and route.method == method:
            http = self._http_by_route.get(route) or self.route_http(route)
        else:
            http = self.http(route.template if route is not None else UNMATCHED, method)
        status = status or 499  # nothing was answered: the client closed the request (as Exchange.finish)
        statuses = http.statuses
        statuses[status] = statuses.get(status, 0) + 1
        http.duration.observe(end - start)
        if rpc_started > 0:
            if code < 0:  # never ended: cut short (the client left, the server cancelled the handler)
                code, rpc_ended = 1, end  # CANCELLED
            elif code >= len(GRPC_CODE_NAMES):
                code = 2  # UNKNOWN
            rpc = self._rpc_by_name.get(route.name) or self.rpc(route.name, "unary")
            rpc.started += 1
            rpc.sent += 1
            if code == 0:
                rpc.received += 1
            rpc.handled[code] += 1
            rpc.handling.observe(rpc_ended - rpc_started)

    def _count(self, exchange: Exchange) -> None:
        """Count one exchange: its HTTP request and its upstream call (unary: all of it; streams: its end,
        the rest was counted as it went)."""
        route = exchange.matched
        method = exchange.method
        if exchange.protocol != "rest":  # gRPC-Web, Connect: by the method's path (Connect GET aside)
            http = self.rpc_http(route, exchange.protocol, method)
        # A WebSocket exchange is counted under GET (its handshake), whatever the route's own method.
        elif route is not None and route.method == method:
            http = self._http_by_route.get(route) or self.route_http(route)
        else:
            http = self.http(exchange.route or UNMATCHED, method)
        statuses, status = http.statuses, exchange.status
        statuses[status] = statuses.get(status, 0) + 1
        http.duration.observe(exchange.end - exchange.start)
        if exchange.rpc_started > 0:
            rpc = exchange.rpc
            if rpc is None:  # unary: the whole call at once
                name = exchange.rpc_name
                rpc = self._rpc_by_name.get(name) or self.rpc(name, exchange.grpc_type)
                rpc.started += 1
                rpc.sent += exchange.request_messages
                rpc.received += exchange.response_messages
            rpc.handled[exchange.rpc_code] += 1
            rpc.handling.observe(exchange.rpc_ended - exchange.rpc_started)

    def stream_opened(self, protocol: str) -> None:
        self.streams_open[protocol] += 1

    def stream_ended(self, protocol: str, outcome: str) -> None:
        self.streams_open[protocol] -= 1
        key = (protocol, outcome)
        self.streams_ended[key] = self.streams_ended.get(key, 0) + 1

    def describe(self) -> Iterable[Metric]:
        return ()  # registered without a description: collect() is only called at scrape time

    def collect(self) -> Iterator[Metric]:
        self.flush()
        rpc_labels = ["grpc_type", "grpc_service", "grpc_method"]
        started = CounterMetricFamily(
            "grpc_client_started", "Total number of RPCs started on the client.", labels=rpc_labels
        )
        handled = CounterMetricFamily(
            "grpc_client_handled",
            "Total number of RPCs completed by the client, regardless of success or failure.",
            labels=[*rpc_labels, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_client_msg_received",
            "Total number of RPC stream messages received by the client.",
            labels=rpc_labels,
        )
        sent = CounterMetricFamily(
            "grpc_client_msg_sent",
            "Total number of gRPC stream messages sent by the client.",
            labels=rpc_labels,
        )
        handling = HistogramMetricFamily(
            "grpc_client_handling_seconds",
            "Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
            labels=rpc_labels,
        )
        for stats in list(self._rpc.values()):
            labels = list(stats.labels)
            started.add_metric(labels, stats.started)
            received.add_metric(labels, stats.received)
            sent.add_metric(labels, stats.sent)
            for code, count in enumerate(stats.handled):
                if count:
                    handled.add_metric([*labels, GRPC_CODE_NAMES[code]], count)
            handling.add_metric(labels, stats.handling.buckets(), stats.handling.total)
        yield from (started, handled, received, sent, handling)

        requests = CounterMetricFamily(
            "pygateway_http_requests",
            "HTTP requests (and WebSocket exchanges) answered by the gateway, by route, method, protocol "
            "and status.",
            labels=["route", "method", "protocol", "status"],
        )
        duration = HistogramMetricFamily(
            "pygateway_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte (streams: to their end).",
            labels=["route", "method", "protocol"],
        )
        for http in list(self._http.values()):
            for status, count in sorted(http.statuses.items()):
                requests.add_metric([*http.labels, str(status)], count)
            duration.add_metric(list(http.labels), http.duration.buckets(), http.duration.total)
        yield from (requests, duration)

        open_ = GaugeMetricFamily(
            "pygateway_streams_open", "Streams open now, by protocol.", labels=["protocol"]
        )
        for protocol, count in self.streams_open.items():
            open_.add_metric([protocol], count)
        ended = CounterMetricFamily(
            "pygateway_streams_ended",
            "Streams ended, by protocol and outcome.",
            labels=["protocol", "outcome"],
        )
        for (protocol, outcome), count in sorted(self.streams_ended.items()):
            ended.add_metric([protocol, outcome], count)
        yield from (open_, ended)

    async def scrape(self, request: Request) -> None:
        """The gateway's own metrics endpoint (`GatewayOptions(metrics_path=...)`): GET and HEAD answer
        with the exposition, other methods 405. A scrape is left out of the metrics, traces and log."""
        if request.exchange is not None:
            request.exchange.unobserved()
        request.start = 0.0  # not tallied either
        if not await get_only(request):
            return
        body, content_type = self.exposition(_accept(request.scope))
        await request.send_response(200, body, [(b"content-type", content_type.encode("latin-1"))])

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry's metrics and their content type: the Prometheus text format, or OpenMetrics when
        `accept` (a request's Accept header) asks for it, as prometheus_client's own endpoints do."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry or _Only(self)), content_type  # type: ignore[arg-type,unused-ignore]


class _Only:
    """A registry-like holder of one collector (for a Metrics created with registry=None)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics.collect()


class MetricsEndpoint:
    """ASGI app: `GET <root path>/metrics` answers with `metrics`' registry in the Prometheus text format,
    every other request goes to `app`. For serving the metrics beside a gateway on its own port instead,
    use prometheus_client's `start_http_server(port, registry=...)`."""

    PATH = "/metrics"

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _below_root(scope) != self.PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD"):
            body, content_type = self.metrics.exposition(_accept(scope))
            status, headers = 200, [(b"content-type", content_type.encode("latin-1"))]
        else:
            status = 405
            body = (
                b'{"code":12,"message":"method '
                + scope["method"].encode("latin-1")
                + (b' not allowed for /metrics (allowed: GET, HEAD)","details":[]}')
            )
            headers = [(b"content-type", b"application/json"), (b"allow", b"GET, HEAD")]
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _accept(scope: Any) -> str:
    accept = b", ".join(value for name, value in scope.get("headers", ()) if name == b"accept")
    return accept.decode("latin-1")


def _below_root(scope: Any) -> str:
    path: str = scope.get("path", "")
    root = scope.get("root_path") or ""
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return path
