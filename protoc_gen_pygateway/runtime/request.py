"""One HTTP exchange as a handler sees it: bounded complete body reading, media types, responses."""

from __future__ import annotations

from collections.abc import (
    Sequence,
)
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .asgi import _JSON
from .errors import HttpError, _pairs, _rpc_failure, bad_request, error_body
from .hooks import ErrorReply
from .metadata import _printable, response_metadata_headers

if TYPE_CHECKING:
    from .app import Gateway
    from .asgi import Metadata, Receive, Scope, Send
    from .observe import Exchange
    from .options import HeaderPolicy
    from .routing import Route


#: ASGI `http_version` values whose requests frame their body with Content-Length or Transfer-Encoding.
_HTTP1 = ("1.1", "1.0")


class Request:
    """One HTTP exchange as a generated handler sees it."""

    __slots__ = (
        "captures",
        "exchange",
        "gateway",
        "receive",
        "request_id",
        "route",
        "rpc_code",
        "rpc_ended",
        "rpc_started",
        "scope",
        "send",
        "start",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, gateway: Gateway) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.gateway = gateway
        self.captures: list[str] = []
        self.route: Route | None = None
        self.started = False
        #: The request id (`observe.request_id_of`), None when request ids are off.
        self.request_id: str | None = None
        #: What the observers (metrics, tracing, access log) see of it; None when none is on, and for a
        #: unary route's request when metrics are the only observer: it is tallied here instead.
        self.exchange: Exchange | None = None
        #: The status sent by `send_response` (0 until then).
        self.status = 0
        #: The tally (observe.py, Metrics.tallied): when it arrived (perf_counter), 0.0 when not tallied;
        #: its unary upstream call's start and end (0.0 until they happen) and gRPC code (-1 until it ended).
        self.start = 0.0
        self.rpc_started = 0.0
        self.rpc_ended = 0.0
        self.rpc_code = -1

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None

    async def read_body(self) -> bytes:
        """The whole body, bounded, and complete: fewer bytes than Content-Length declared is a 400.

        uvicorn's httptools parser drops the body of requests carrying `Upgrade` yet leaves the
        Content-Length header in place; counting is how the gateway refuses to forward an emptied body.
        """
        limit = self.gateway.max_body_bytes
        declared = _declared_length(self, limit)
        if declared == 0 or (declared is None and self._framed_without_body()):
            return b""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self.receive()
            if event["type"] == "http.disconnect":
                # The body ended early (a half-closed or closed connection). Answer anyway: granian
                # would otherwise send its own 500 to a client still reading; uvicorn drops the answer.
                raise _incomplete(size, declared)
            chunk = event.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not event.get("more_body", False):
                break
        if declared is not None and size != declared:
            raise _incomplete(size, declared)
        return b"".join(chunks)

    def _framed_without_body(self) -> bool:
        """An HTTP/1.x request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112
        §6.3). Not asking the server for it saves a pass through its I/O thread: about 30 µs of CPU per
        GET under granian (make bench). HTTP/2 and HTTP/3 may send a body without Content-Length."""
        return self.scope.get("http_version", "1.1") in _HTTP1 and self.header(b"transfer-encoding") is None

    async def send_response(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        headers.append((b"content-length", str(len(body)).encode("latin-1")))
        if self.request_id is not None:
            headers.append((b"x-request-id", self.request_id.encode("latin-1")))
        self.status = status
        if self.exchange is not None:
            self.exchange.status = status
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        # A HEAD response carries the GET's headers and no body.
        await self.send(
            {"type": "http.response.body", "body": b"" if self.scope["method"] == "HEAD" else body}
        )

    async def send_error(
        self,
        status: int,
        code: int,
        text: str,
        details: Sequence[Any] = (),
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        if self.started:  # the status line is gone; nothing sensible can be added
            return
        if self.exchange is not None:
            self.exchange.answered(code)
        headers = [_JSON, *extra]
        if code == code_pb2.UNAUTHENTICATED:
            headers.append((b"www-authenticate", _printable(text).encode("latin-1")))
        await self.send_response(status, error_body(code, text, details, self.request_id), headers)

    async def send_rpc_error(
        self, err: grpc.aio.AioRpcError, policy: HeaderPolicy | None, initial: Metadata | None
    ) -> None:
        code, status, text, details, trailing = _rpc_failure(err)
        headers: list[tuple[bytes, bytes]] = []
        hooks = self.gateway.hooks
        if policy is not None:
            initial = initial or _pairs(err.initial_metadata())
            if hooks is None:
                headers = response_metadata_headers(policy, initial, trailing)
            else:
                headers = hooks.headers(policy, initial, trailing)
        if hooks is not None and hooks.error_handler is not None:
            await hooks.upstream_error(self, ErrorReply(status, code, text, list(details), headers, err))
            return
        await self.send_error(status, code, text, details, headers)


def _declared_length(request: Request, limit: int) -> int | None:
    raw = request.header(b"content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise bad_request(f"invalid Content-Length {raw.decode('latin-1')!r}")
    declared = int(raw)
    if declared > limit:
        raise _too_large(limit)
    return declared


def _incomplete(size: int, declared: int | None) -> HttpError:
    if declared is None:
        return bad_request(
            f"request body incomplete: the connection ended after {size} bytes of a chunked body"
        )
    return bad_request(
        f"request body incomplete: received {size} of {declared} bytes declared by Content-Length"
    )


def _too_large(limit: int) -> HttpError:
    return HttpError(413, code_pb2.RESOURCE_EXHAUSTED, f"request body larger than {limit} bytes")


#: Media types of request bodies, by route kind. Forms and text/plain are refused on purpose: they are
#: what a cross-site HTML form can send without a CORS preflight, and grpc-gateway's fallback of parsing
#: anything as JSON is how such a form reaches an API.
_BODY_TYPES = frozenset({"application/json"})


_STREAM_BODY_TYPES = frozenset({"application/json", "application/x-ndjson", "application/jsonl"})


def check_body_type(request: Request, streaming: bool = False) -> None:
    """Refuse (415) a request to a route with a body whose Content-Type is not JSON (NDJSON on
    client-streaming routes), or whose body is content-encoded. No Content-Type is accepted as JSON."""
    values = [bytes(value) for key, value in request.scope["headers"] if key == b"content-type"]
    encoding = request.header(b"content-encoding")
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        raise _unsupported(
            f"unsupported Content-Encoding {encoding.decode('latin-1')!r}: send the body uncompressed"
        )
    if not values:
        return
    if len(values) > 1:
        raise _unsupported("more than one Content-Type header")
    raw = values[0].decode("latin-1")
    media, _, params = raw.partition(";")
    media = media.strip().lower()
    allowed = _STREAM_BODY_TYPES if streaming else _BODY_TYPES
    expected = "application/x-ndjson or application/json" if streaming else "application/json"
    if media not in allowed and not (media.startswith("application/") and media.endswith("+json")):
        raise _unsupported(f"unsupported Content-Type {raw!r}: send {expected}")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise _unsupported(f"unsupported Content-Type {raw!r}: the body must be UTF-8")


def _unsupported(text: str) -> HttpError:
    return HttpError(415, code_pb2.INVALID_ARGUMENT, text)
