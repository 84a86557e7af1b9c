"""The header sanitization policy, decided at generation time from the options.

The generated module receives the result as literals (frozenset/tuple) that its handlers consult; nothing
here runs at request time. Facts: RFC 9110 §7.6.1 (hop-by-hop), grpc-gateway's runtime/context.go
(permanent headers as `grpcgateway-<name>`), gRPC's reserved metadata keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from .options import Options, OptionsError

#: RFC 9110 §7.6.1 connection-specific fields, plus the obsolete Proxy-Connection and HTTP2-Settings
#: (RFC 7540 §3.2.1: sent only with `Upgrade: h2c`). gRPC servers reset streams whose metadata carries
#: `connection`, so none of these may become metadata, whatever prefix smuggles them in.
HOP_BY_HOP: tuple[str, ...] = (
    "connection",
    "http2-settings",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
)

#: IANA permanent message headers grpc-gateway forwards as `grpcgateway-<name>`.
PERMANENT_HEADERS: tuple[str, ...] = (
    "accept",
    "accept-charset",
    "accept-language",
    "accept-ranges",
    "cache-control",
    "content-type",
    "cookie",
    "date",
    "expect",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-schedule-tag-match",
    "if-unmodified-since",
    "max-forwards",
    "origin",
    "pragma",
    "referer",
    "user-agent",
    "via",
    "warning",
)

#: Forwarded as metadata under their own names by default, so that one request can be followed across the
#: ingress, the gateway and the backend: W3C Trace Context (https://www.w3.org/TR/trace-context/) and the
#: request id (the gateway validates it, or generates one, at run time: see pygateway_runtime's observe
#: module). `strip_header=NAME` turns one off (it then joins the never-forwarded, never-returned set).
CORRELATION_HEADERS: tuple[str, ...] = ("traceparent", "tracestate", "x-request-id")

#: Metadata keys a client may not set through `Grpc-Metadata-*`: gRPC's own (HTTP/2 framing and call
#: semantics) and the ones the gateway derives itself.
RESERVED_KEYS: tuple[str, ...] = (
    "content-type",
    "host",
    "te",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-host",
)
#: Key prefixes reserved the same way: `grpc-*` (no exception is forwarded; Grpc-Timeout becomes the
#: call deadline instead) and HTTP/2 pseudo-headers.
RESERVED_PREFIXES: tuple[str, ...] = ("grpc-", ":")


@dataclass(frozen=True)
class HeaderPolicy:
    """What a generated module writes as its header literals."""

    #: Never metadata (under any prefix) and never in a response. Sorted for deterministic output.
    forbidden: tuple[str, ...]
    #: Incoming header name -> metadata key, for headers forwarded without the Grpc-Metadata- prefix.
    forwarded: tuple[tuple[str, str], ...]
    reserved_keys: tuple[str, ...]
    reserved_prefixes: tuple[str, ...]


def check_options(options: Options) -> None:
    """Reject a forward_header that could never take effect (strict like parse_options): hop-by-hop and
    stripped headers are never forwarded, and gRPC drops or owns the reserved metadata keys."""
    for name in options.forward_header:
        if name in HOP_BY_HOP:
            raise OptionsError(f"option forward_header: {name!r} is hop-by-hop and is never forwarded")
        if name in options.strip_header:
            raise OptionsError(f"option forward_header: {name!r} is also given to strip_header")
        if name in RESERVED_KEYS or name.startswith(RESERVED_PREFIXES):
            raise OptionsError(f"option forward_header: {name!r} is a reserved gRPC metadata key")


def build_policy(options: Options) -> HeaderPolicy:
    forbidden = sorted(set(HOP_BY_HOP) | set(options.strip_header))
    forwarded: dict[str, str] = {"authorization": "authorization"}
    forwarded.update((name, name) for name in CORRELATION_HEADERS)
    if options.forward_permanent_headers:
        forwarded.update((name, f"grpcgateway-{name}") for name in PERMANENT_HEADERS)
    forwarded.update((name, name) for name in options.forward_header)
    for name in forbidden:
        forwarded.pop(name, None)
    reserved = set(RESERVED_KEYS)
    return HeaderPolicy(
        forbidden=tuple(forbidden),
        forwarded=tuple(sorted(forwarded.items())),
        reserved_keys=tuple(sorted(reserved)),
        reserved_prefixes=RESERVED_PREFIXES,
    )
