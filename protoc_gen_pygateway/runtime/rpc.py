"""gRPC-Web and Connect calls at `POST /pkg.Service/Method` (and Connect's GET), beside the REST routes.

Dispatch (`choose`, called by the routing loop for a path that names a method of a served module):

- `application/grpc-web*` -> gRPC-Web; `application/connect+*` -> a Connect stream; `application/proto`
  -> Connect unary. `application/json` is Connect unary when the request carries
  `Connect-Protocol-Version` or no REST route answers POST at that path; otherwise it is the REST route
  (an unbound method with generate_unbound_methods, or a binding the user put there).
- Any other Content-Type (or none) goes to the REST route when one answers POST there, else 415 with
  the JSON Status naming the accepted types.
- GET is Connect's GET for methods marked `idempotency_level = NO_SIDE_EFFECTS` (unless a REST GET route
  is bound at that path); other methods answer GET with 405.

Metadata follows the module's generated header policy exactly as for REST (hop-by-hop, Connection-named,
stripped and reserved keys never reach the upstream; `Grpc-Metadata-*` and the forwarded headers work as
there); in addition, as gRPC-Web and Connect clients send metadata, every other request header with a
valid metadata name becomes metadata under its own name, except the protocols' own headers and the IANA
permanent headers (those follow `forward_permanent_headers`). Header metadata of the reply becomes
response headers under its own name, trailer metadata goes to the gRPC-Web trailer frame, the Connect
end-stream message or Connect unary's `trailer-<key>` headers; reserved keys never do.

Proto messages are passed through as bytes (the upstream parses them; no decode/encode in the gateway);
JSON messages are parsed into the request type under the module's JSON options and the reply printed
with them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import message
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from . import connect, grpcweb
from .errors import HttpError, _pairs, bad_request
from .rpcrelay import _call, _started, finished_unary
from .rpcwire import (
    _ConnectFraming,
    _Failure,
    _Framing,
    _WebFraming,
    header_metadata,
    rpc_metadata,
    trailer_metadata,
)

if TYPE_CHECKING:
    from .asgi import Metadata
    from .jsonfast import FastDecoder
    from .jsonstyle import JsonStyle
    from .options import HeaderPolicy
    from .request import Request


class RpcMethod:
    """One method as gRPC-Web and Connect serve it (built by the generated module)."""

    __slots__ = (
        "connect",
        "decode",
        "grpcweb",
        "input_type",
        "json",
        "kind",
        "name",
        "no_side_effects",
        "output_type",
        "path",
        "policy",
        "raw",
    )

    def __init__(
        self,
        path: str,
        kind: str,
        raw: Any,
        input_type: type[message.Message],
        output_type: type[message.Message],
        json: JsonStyle,
        policy: HeaderPolicy,
        *,
        grpcweb: bool,
        connect: bool,
        no_side_effects: bool = False,
        decode: FastDecoder | None = None,
    ) -> None:
        #: `/pkg.Service/Method`, also the route.
        self.path = path
        self.name = path[1:].replace("/", ".")
        #: grpc multicallable kind: unary_unary, unary_stream, stream_unary, stream_stream.
        self.kind = kind
        #: The multicallable without serializers: request and reply bytes pass through.
        self.raw = raw
        self.input_type = input_type
        self.output_type = output_type
        self.json = json
        self.policy = policy
        self.grpcweb = grpcweb
        self.connect = connect
        self.no_side_effects = no_side_effects
        #: The module's generated JSON decoder of the request message, when it has one (JSON codecs).
        self.decode = decode

    def request_bytes(self, data: bytes, codec: str) -> bytes:
        if codec == "proto":
            return data
        payload = self.input_type()
        self.json.parse(payload, data, self.decode)
        try:
            return payload.SerializeToString()
        except message.EncodeError as err:  # proto2 required fields left unset
            raise bad_request(f"invalid request message: {err}") from None

    def reply_bytes(self, data: bytes, codec: str) -> bytes:
        if codec == "proto":
            return data
        return self.json.encode(self.output_type.FromString(data))


Handler = Callable[["Request", RpcMethod], Awaitable[None]]


def _unsupported(text: str) -> HttpError:
    return HttpError(415, code_pb2.INVALID_ARGUMENT, text)


def choose(request: Request, rpc: RpcMethod, rest: Callable[[str], bool]) -> Handler | None:
    """The protocol handler for a request at an RPC path, or None to let the REST routes answer it.
    `rest(method)` says whether a REST route answers that HTTP method at this path."""
    method = request.scope["method"]
    if method == "POST":
        raw = request.header(b"content-type")
        text = raw.decode("latin-1") if raw is not None else ""
        if rpc.grpcweb and grpcweb.parse_content_type(text) is not None:
            return grpcweb_call
        found = connect.parse_content_type(text) if rpc.connect else None
        if found is not None:
            if found.stream:
                return connect_stream_call
            if found.codec == "proto":
                return connect_unary_call
            if request.header(connect.PROTOCOL_VERSION_HEADER) is not None or not rest("POST"):
                return connect_unary_call
            return None
        if rest("POST"):
            return None
        raise _unsupported(f"unsupported Content-Type {text!r} for {rpc.path}: send {_accepted(rpc)}")
    if (
        method == "GET"
        and rpc.connect
        and rpc.no_side_effects
        and rpc.kind == "unary_unary"
        and not rest("GET")
    ):
        return connect_get_call
    if rest(method):
        return None
    allow = "GET, POST" if rpc.connect and rpc.no_side_effects and rpc.kind == "unary_unary" else "POST"
    raise HttpError(
        405,
        code_pb2.UNIMPLEMENTED,
        f"method {method} not allowed for {rpc.path} (allowed: {allow})",
        [(b"allow", allow.encode("latin-1"))],
    )


def _accepted(rpc: RpcMethod) -> str:
    types: list[str] = []
    if rpc.grpcweb:
        types += grpcweb.CONTENT_TYPES
    if rpc.connect:
        types += (*connect.UNARY_CONTENT_TYPES, *connect.STREAM_CONTENT_TYPES)
    return ", ".join(types)


async def _drain(request: Request) -> None:
    """Read and drop a request body the gateway refuses (bounded by max_body_bytes), so that a client
    still sending it sees the answer instead of a reset connection."""
    size = 0
    while size <= request.gateway.max_body_bytes:
        event = await request.receive()
        if event["type"] == "http.disconnect":
            return
        size += len(event.get("body", b""))
        if not event.get("more_body", False):
            return


# ---------------------------------------------------------------------------------------------- gRPC-Web


async def grpcweb_call(request: Request, rpc: RpcMethod) -> None:
    """A gRPC-Web call: unary or server streaming; client and bidi streaming are refused."""
    if request.exchange is not None:
        request.exchange.rpc_routed(rpc, "grpcweb")
    raw = request.header(b"content-type") or b""
    fmt = grpcweb.parse_content_type(raw.decode("latin-1"))
    assert fmt is not None
    framing = _WebFraming(fmt)
    if rpc.kind.startswith("stream_"):
        kind = "client" if rpc.kind == "stream_unary" else "bidirectional"
        failure = _Failure(
            code_pb2.UNIMPLEMENTED,
            f"{rpc.name} is {kind} streaming, which gRPC-Web does not carry (browsers cannot stream request "
            "bodies): use its REST/NDJSON or WebSocket route",
        )
        await _drain(request)
        await _web_trailers_only(request, framing, rpc, failure)
        return
    try:
        metadata, timeout = rpc_metadata(request, rpc.policy)
        body = await request.read_body()
        if fmt.text:
            decoder = grpcweb.TextDecoder()
            body = decoder.feed(body)
            decoder.finish()
        frames = grpcweb.FrameDecoder(request.gateway.max_body_bytes)
        found = frames.feed(body)
        frames.finish()
        payload = rpc.request_bytes(grpcweb.single_message(found), fmt.codec)
    except HttpError as err:
        await _web_trailers_only(request, framing, rpc, _Failure.of_http(err))
        return
    except grpcweb.FrameError as err:
        await _web_trailers_only(request, framing, rpc, _Failure.of_frame(err))
        return
    await _call(request, rpc, framing, payload, fmt.codec, metadata, timeout, _web_trailers_only)


async def _web_trailers_only(request: Request, framing: _Framing, rpc: RpcMethod, failure: _Failure) -> None:
    """An error before any message: gRPC-Web's trailers-only response, the status in the headers."""
    assert isinstance(framing, _WebFraming)
    if request.exchange is not None:
        request.exchange.answered(failure.code)
    headers = [
        (b"content-type", framing.content_type),
        *header_metadata(rpc.policy, failure.initial),
        *grpcweb.status_headers(failure.code, failure.message, failure.details_bin),
        *header_metadata(rpc.policy, failure.trailing),
    ]
    await request.send_response(200, b"", headers)


# ---------------------------------------------------------------------------------------------- Connect


def _connect_timeout(request: Request, timeout: float | None) -> float | None:
    raw = request.header(connect.TIMEOUT_HEADER)
    return connect.parse_timeout_ms(raw.decode("latin-1")) if raw is not None else timeout


async def connect_unary_call(request: Request, rpc: RpcMethod) -> None:
    """Connect unary over POST: a bare message body, the reply as the body, errors as Connect JSON."""
    if request.exchange is not None:
        request.exchange.rpc_routed(rpc, "connect")
    raw = request.header(b"content-type") or b""
    fmt = connect.parse_content_type(raw.decode("latin-1"))
    assert fmt is not None
    if rpc.kind != "unary_unary":
        await _connect_error(
            request,
            rpc,
            _Failure(
                code_pb2.UNKNOWN,
                f"{rpc.name} is a streaming method: send application/connect+{fmt.codec}",
                415,
            ),
        )
        return
    try:
        connect.check_protocol_version(request.header(connect.PROTOCOL_VERSION_HEADER))
        connect.check_encoding(request.header(b"content-encoding"), "Content-Encoding")
        metadata, timeout = rpc_metadata(request, rpc.policy)
        timeout = _connect_timeout(request, timeout)
        payload = rpc.request_bytes(await request.read_body(), fmt.codec)
    except connect.ConnectError as err:
        await _connect_error(request, rpc, _Failure(err.code, err.message, err.http_status))
        return
    except HttpError as err:
        await _connect_error(request, rpc, _Failure.of_http(err))
        return
    await _connect_unary(request, rpc, fmt.codec, payload, metadata, timeout)


async def connect_get_call(request: Request, rpc: RpcMethod) -> None:
    """Connect unary over GET (side-effect-free methods): the message in the query."""
    if request.exchange is not None:
        request.exchange.rpc_routed(rpc, "connect")
    try:
        got = connect.parse_get_query(request.scope.get("query_string", b""))
        metadata, timeout = rpc_metadata(request, rpc.policy)
        timeout = _connect_timeout(request, timeout)
        payload = rpc.request_bytes(got.message, got.format.codec)
    except connect.ConnectError as err:
        await _connect_error(request, rpc, _Failure(err.code, err.message, err.http_status))
        return
    except HttpError as err:
        await _connect_error(request, rpc, _Failure.of_http(err))
        return
    await _connect_unary(request, rpc, got.format.codec, payload, metadata, timeout)


async def _connect_unary(
    request: Request, rpc: RpcMethod, codec: str, payload: bytes, metadata: Metadata, timeout: float | None
) -> None:
    exchange = _started(request, "unary", metadata)
    call = rpc.raw(payload, metadata=tuple(metadata), timeout=timeout)
    try:
        reply, initial, trailing = await finished_unary(call, exchange)
    except grpc.aio.AioRpcError as err:
        await _connect_error(request, rpc, _Failure.of_rpc(err))
        return
    try:
        body = rpc.reply_bytes(reply, codec)
    except Exception:  # noqa: BLE001 - a reply this module cannot print as JSON (e.g. an Any of an unknown type)
        await _connect_error(
            request, rpc, _Failure(code_pb2.INTERNAL, f"{rpc.name}: the reply cannot be printed as JSON")
        )
        return
    headers = [
        (b"content-type", connect.ConnectFormat(False, codec).content_type),
        *header_metadata(rpc.policy, _pairs(initial)),
        *connect.trailer_headers(trailer_metadata(rpc.policy, _pairs(trailing))),
    ]
    await request.send_response(200, body, headers)


async def _connect_error(request: Request, rpc: RpcMethod, failure: _Failure) -> None:
    status = failure.http_status or connect.HTTP_STATUS.get(failure.code, 500)
    if request.exchange is not None:
        request.exchange.answered(failure.code)
    headers = [
        (b"content-type", b"application/json"),
        *header_metadata(rpc.policy, failure.initial),
        *connect.trailer_headers(trailer_metadata(rpc.policy, failure.trailing)),
    ]
    body = connect.error_json(failure.code, failure.message, failure.details, request.request_id)
    await request.send_response(status, body, headers)


async def connect_stream_call(request: Request, rpc: RpcMethod) -> None:
    """A Connect server stream (enveloped request and replies, the end-stream message last); client and
    bidi streams are refused with `unimplemented`."""
    if request.exchange is not None:
        request.exchange.rpc_routed(rpc, "connect")
    raw = request.header(b"content-type") or b""
    fmt = connect.parse_content_type(raw.decode("latin-1"))
    assert fmt is not None
    framing = _ConnectFraming(fmt.codec)
    if rpc.kind == "unary_unary":
        failure = _Failure(code_pb2.UNKNOWN, f"{rpc.name} is unary: send application/{fmt.codec}", 415)
        await _connect_error(request, rpc, failure)
        return
    if rpc.kind.startswith("stream_"):
        failure = _Failure(
            code_pb2.UNIMPLEMENTED,
            f"{rpc.name} is {'client' if rpc.kind == 'stream_unary' else 'bidirectional'} streaming, which "
            "this gateway does not serve over Connect: use its REST/NDJSON or WebSocket route",
        )
        await _drain(request)
        await _connect_stream_refusal(request, framing, rpc, failure)
        return
    try:
        connect.check_protocol_version(request.header(connect.PROTOCOL_VERSION_HEADER))
        connect.check_encoding(request.header(b"connect-content-encoding"), "Connect-Content-Encoding")
        metadata, timeout = rpc_metadata(request, rpc.policy)
        timeout = _connect_timeout(request, timeout)
        frames = grpcweb.FrameDecoder(request.gateway.max_body_bytes)
        found = frames.feed(await request.read_body())
        frames.finish()
        payload = rpc.request_bytes(grpcweb.single_message(found, "Connect"), fmt.codec)
    except connect.ConnectError as err:
        await _connect_stream_refusal(request, framing, rpc, _Failure(err.code, err.message))
        return
    except HttpError as err:
        await _connect_stream_refusal(request, framing, rpc, _Failure(err.code, err.message))
        return
    except grpcweb.FrameError as err:
        await _connect_stream_refusal(request, framing, rpc, _Failure.of_frame(err))
        return
    await _call(request, rpc, framing, payload, fmt.codec, metadata, timeout, _connect_stream_refusal)


async def _connect_stream_refusal(
    request: Request, framing: _Framing, rpc: RpcMethod, failure: _Failure
) -> None:
    """A Connect stream failing before any message: 200, then only the end-stream message."""
    if request.exchange is not None:
        request.exchange.answered(failure.code)
    headers = [(b"content-type", framing.content_type), *header_metadata(rpc.policy, failure.initial)]
    body = framing.error(failure, trailer_metadata(rpc.policy, failure.trailing), request.request_id)
    await request.send_response(200, body, headers)
