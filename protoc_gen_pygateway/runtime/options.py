"""Run-time options (GatewayOptions) and the generated modules' header policy (HeaderPolicy)."""

from __future__ import annotations

import functools
import logging
from collections.abc import (
    Mapping,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # optional features: their modules load only when turned on
    from .cors import CorsPolicy
    from .health import HealthOptions
    from .hooks import (
        ErrorHook,
        ForwardResponseHook,
        IncomingMetadataHook,
        OutgoingMatcher,
    )
    from .metrics import Metrics


@dataclass(frozen=True)
class GatewayOptions:
    """Run-time options of an app built by a generated module's `create_app`."""

    #: Largest request body accepted (413 above it); None keeps the generated default.
    max_body_bytes: int | None = None
    #: Deadline for calls whose request carries no Grpc-Timeout, in seconds; None for no deadline.
    default_timeout: float | None = None
    #: How a WebSocket handshake the gateway refuses (no WebSocket route there, shutting down, a bad first
    #: request) is answered. "http": one complete HTTP response with the Status JSON, where the server
    #: offers ASGI's `websocket.http.response` (else a close before accepting: the server's own 403).
    #: "close": accept, send the `{"error": Status}` message and close with 4000 + the gRPC code — for
    #: servers that add `Upgrade`/`Connection: upgrade` headers to HTTP refusals (granian does).
    websocket_refusal: Literal["http", "close"] = "http"
    #: Request ids (see `observe`): a request's X-Request-ID (validated) or a new one, forwarded as
    #: metadata `x-request-id`, returned as X-Request-ID and carried in every error body. False: off.
    request_id: bool = True
    #: Prometheus metrics: a `pygateway_runtime.metrics.Metrics` (needs prometheus_client); None: off.
    metrics: Metrics | None = None
    #: Where the gateway itself answers `GET`/`HEAD` with `metrics` in the Prometheus text format (serve
    #: `--metrics`: "/metrics"), from its routing loop after no generated route matched (a generated route
    #: on that path wins, with a warning), so the other requests pay nothing for it; scrapes are not
    #: counted, logged or traced. None: not served (see `metrics.MetricsEndpoint` and prometheus_client).
    metrics_path: str | None = None
    #: OpenTelemetry spans from the global tracer provider (needs opentelemetry-api); see `tracing`.
    tracing: bool = False
    #: Spans from this tracer provider instead (tracing is then on).
    tracer_provider: Any = None
    #: The JSON access log (see `accesslog`): True for the `pygateway.access` logger, or a logger.
    access_log: bool | logging.Logger = False

    # Hooks, CORS, health (docs/operations.md; pygateway_runtime/hooks.py, cors.py, health.py). All off by
    # default: a gateway without them runs none of their code.
    #: `(request, metadata) -> metadata` (may be async) before every upstream call: add or map metadata.
    #: What it returns is filtered by the generated header policy again (dropped keys are logged once).
    incoming_metadata: IncomingMetadataHook | None = None
    #: `(key) -> header name | None`: the response header of header metadata `key` (default
    #: `Grpc-Metadata-<key>`); None drops it.
    outgoing_header: OutgoingMatcher | None = None
    #: `(key) -> header name | None`: the same for trailer metadata (default `Grpc-Trailer-<key>`).
    outgoing_trailer: OutgoingMatcher | None = None
    #: `(request, ErrorReply) -> ErrorReply | None` (may be async): upstream errors answered as a response.
    error_handler: ErrorHook | None = None
    #: `(request, ErrorReply) -> ErrorReply | None` (may be async): the gateway's own 404, 405 and 415.
    routing_error_handler: ErrorHook | None = None
    #: `(request, ForwardResponse) -> None` (may be async): status and headers of successful replies.
    forward_response: ForwardResponseHook | None = None
    #: Cross-origin browser access (preflights, Access-Control-Allow-Origin); None: no CORS headers.
    cors: CorsPolicy | None = None
    #: `GET /healthz` (upstream grpc.health.v1 check) and `GET /readyz`; None: not served.
    health: HealthOptions | None = None

    #: The gRPC transport of the app's channel (`open_channel(target, options.transport)`): "native"
    #: (runtime/native, HTTP/2 on the event loop; needs hpack) or "grpcio" (grpc.aio); None:
    #: `default_transport()` ($PYGATEWAY_TRANSPORT, else native when hpack is installed, else grpcio).
    #: Recorded here for whoever builds the channel; the app itself works with either channel.
    transport: Literal["grpcio", "native"] | None = None


@dataclass(frozen=True)
class HeaderPolicy:
    """A generated module's header literals (see the module for the values)."""

    #: Hop-by-hop and configured names: never metadata under any prefix, never in a response.
    forbidden: frozenset[str]
    #: Incoming header -> metadata key for headers forwarded without the Grpc-Metadata- prefix.
    forwarded: Mapping[str, str]
    #: Metadata keys a client may not set and a response never carries as Grpc-Metadata-*.
    reserved_keys: frozenset[str]
    reserved_prefixes: tuple[str, ...]

    def blocked(self, key: str) -> bool:
        return key in self.forbidden or key in self.reserved_keys or key.startswith(self.reserved_prefixes)

    @functools.cached_property
    def plan(self) -> dict[bytes, str]:
        """What `request_metadata` does with each header it knows, by the raw lowercase name ASGI gives:
        `""` drops it, `"<special>"` names a header it reads itself, anything else is its metadata key.
        Computed once per module, so that a request costs one dict lookup per header."""
        plan = {name.encode("latin-1"): key for name, key in self.forwarded.items()}
        for name in ("grpc-timeout", "x-forwarded-for", "x-forwarded-host", "host"):
            plan[name.encode("latin-1")] = f"<{name}>"
        if "x-request-id" in self.forwarded:  # the request id (validated or generated) stands in for it
            plan[b"x-request-id"] = "<x-request-id>"
        for name in self.forbidden:
            plan[name.encode("latin-1")] = ""
        return plan
