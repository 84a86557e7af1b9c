"""OpenTelemetry spans of a gateway: one server span per request or stream, the upstream call a child
client span whose W3C trace context (`traceparent`, `tracestate`) goes upstream as metadata.

Optional: needs `opentelemetry-api` (and an SDK to export spans: protoc-gen-pygateway's `[otel]` extra),
imported by this module only, which is loaded only when tracing is on (`GatewayOptions(tracing=True)` for
the global tracer provider, or `tracer_provider=...`).

Span names and attributes follow OpenTelemetry's semantic conventions: the server span is
`{METHOD} {route template}` (`http.request.method`, `url.path`, `http.route`,
`http.response.status_code`), the client span `{package.Service}/{Method}` (`rpc.system` = `grpc`,
`rpc.service`, `rpc.method`, `rpc.grpc.status_code`); both carry the request id (`pygateway.request_id`).
The incoming trace context (the headers `traceparent`/`tracestate`, read by the global propagator, W3C
Trace Context by default) is the server span's parent.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["Tracing"]

#: Header names whose values the propagator reads (the incoming trace context) and the metadata keys
#: replaced by the upstream span's context.
_CONTEXT_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


class Tracing:
    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("pygateway", tracer_provider=tracer_provider)

    def server_span(self, scope: Any, method: str, request_id: str | None) -> Any:
        carrier = {}
        for name, value in scope.get("headers", ()):
            key = name.decode("latin-1").lower()
            if key in _CONTEXT_KEYS:
                carrier[key] = value.decode("latin-1")
        parent = propagate.extract(carrier) if carrier else None
        attributes = {"http.request.method": method, "url.path": scope.get("path", "")}
        if request_id is not None:
            attributes["pygateway.request_id"] = request_id
        return self.tracer.start_span(method, context=parent, kind=SpanKind.SERVER, attributes=attributes)

    def routed(self, span: Any, method: str, template: str) -> None:
        span.update_name(f"{method} {template}")
        span.set_attribute("http.route", template)

    def client_span(
        self, parent: Any, full_name: str, grpc_type: str, metadata: list[tuple[str, Any]]
    ) -> Any:
        """Start the upstream call's span, child of `parent`, and put its trace context into `metadata`
        (instead of the forwarded incoming one)."""
        service, _, method = full_name.rpartition(".")
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            f"{service}/{method}",
            context=context,
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": service,
                "rpc.method": method,
                "pygateway.grpc_type": grpc_type,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata[:] = [(key, value) for key, value in metadata if key not in _CONTEXT_KEYS]
        metadata.extend(carrier.items())
        return span

    def end_client(self, span: Any, code: int) -> None:
        span.set_attribute("rpc.grpc.status_code", code)
        if code != 0:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def end_server(self, span: Any, status: int, code: int | None) -> None:
        span.set_attribute("http.response.status_code", status)
        if code is not None:
            span.set_attribute("rpc.grpc.status_code", code)
        if status >= 500:  # server spans: only 5xx are errors (the semantic conventions' rule)
            span.set_status(Status(StatusCode.ERROR))
        span.end()
