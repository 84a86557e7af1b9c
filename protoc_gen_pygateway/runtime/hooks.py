"""Run-time hooks (grpc-gateway's ServeMux options, the Python way): their types and how they are applied.

Set them on `GatewayOptions`; every hook is optional and a gateway without hooks never runs any of this
(the routing loop checks one attribute, `Gateway.hooks`, which is None then). Hooks may be plain
functions or coroutine functions where the type says `... | Awaitable[...]`.

The generated header policy still wins over every hook: metadata a hook returns that is hop-by-hop,
named by the request's `Connection` header, reserved (`grpc-*`, `:*`, `content-type`, `te`, `host`,
`user-agent`, `x-forwarded-*` unless the gateway set it itself) or not a valid gRPC key/value is dropped
and logged once per key; response headers a hook names that are hop-by-hop (or Content-Length, which the
gateway computes) are dropped the same way.
"""

from __future__ import annotations

import base64
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .asgi import _JSON, logger
from .errors import _pairs
from .metadata import _PRINTABLE, _VALID_KEY, HOP_BY_HOP, response_metadata_headers

if TYPE_CHECKING:
    import grpc.aio
    from google.protobuf import message

    from .asgi import Metadata
    from .errors import HttpError
    from .options import GatewayOptions, HeaderPolicy
    from .request import Request


@dataclass
class ErrorReply:
    """An error answer about to be sent; `error_handler`/`routing_error_handler` may change any field.

    `body` None means the google.rpc.Status JSON of `code`, `message` and `details` (for a stream that
    failed before its first message: its NDJSON error line or SSE error event); set `body` (and
    `content_type`) to send something else. `headers` are extra response headers (`Allow`,
    `Grpc-Metadata-*`, `WWW-Authenticate`, ...), as (lowercase name, value) bytes pairs.
    """

    #: HTTP status (404, 503, ...).
    status: int
    #: google.rpc.Code number.
    code: int
    message: str
    #: google.protobuf.Any details (from the upstream's `grpc-status-details-bin`).
    details: list[Any] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: The upstream's error (error_handler only), else None.
    rpc_error: grpc.aio.AioRpcError | None = None
    body: bytes | None = None
    content_type: bytes = b"application/json"


@dataclass
class ForwardResponse:
    """A successful reply about to be sent; `forward_response` may change `status` and `headers`.

    Unary and client-streaming calls: `message` is the reply and both metadata lists are known. Server and
    bidi streams over HTTP: called once, before the response starts, with the first message (None when
    the stream is empty) and the header metadata; `trailer_metadata` is empty then. A status of 204 or
    304 sends no body.
    """

    message: message.Message | None
    #: HTTP status, 200 unless changed.
    status: int
    #: Response headers as (lowercase name, value) bytes pairs: Content-Type, Grpc-Metadata-*, ...
    headers: list[tuple[bytes, bytes]]
    header_metadata: Metadata
    trailer_metadata: Metadata


#: `incoming_metadata(request, metadata) -> metadata`: receives the metadata the generated policy made of
#: the request headers (a fresh list: change it or return another) and returns the metadata to send.
IncomingMetadataHook = Callable[["Request", "Metadata"], "Metadata | Awaitable[Metadata]"]
#: `outgoing_header(key)` / `outgoing_trailer(key)`: the response header name for a header (trailer)
#: metadata key, or None to drop it. Defaults: `Grpc-Metadata-<key>` / `Grpc-Trailer-<key>`. Called once
#: per distinct key (the answer is cached), never for reserved or hop-by-hop keys.
OutgoingMatcher = Callable[[str], "str | None"]
#: `error_handler(request, reply)` for upstream errors, `routing_error_handler(request, reply)` for the
#: gateway's 404/405/415: change `reply` in place and return None, or return another ErrorReply.
ErrorHook = Callable[["Request", ErrorReply], "ErrorReply | Awaitable[ErrorReply | None] | None"]
#: `forward_response(request, response)`: change `response.status`/`response.headers` in place.
ForwardResponseHook = Callable[["Request", ForwardResponse], "Awaitable[None] | None"]

#: Statuses `routing_error_handler` sees: no route, wrong method, unsupported media type.
ROUTING_STATUSES = frozenset({404, 405, 415})

#: Never sent by a hook: RFC 9110 §7.6.1 hop-by-hop headers and the framing the gateway computes.
_NEVER_SENT = HOP_BY_HOP
#: An HTTP field name (RFC 9110 §5.6.2 token).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(rb"^[^\r\n\0]*$")
#: Keys/names already warned about (bounded: a hook echoing client input cannot grow it without limit).
_WARNED: set[str] = set()
_WARN_LIMIT = 1024
_CACHE_LIMIT = 1024


def _warn_once(what: str, text: str) -> None:
    if what in _WARNED or len(_WARNED) >= _WARN_LIMIT:
        return
    _WARNED.add(what)
    logger.warning("%s (logged once)", text)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _connection_named(request: Request) -> set[str]:
    named: set[str] = set()
    for name, value in request.scope["headers"]:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    return named


class Hooks:
    """The hooks of one Gateway, applied by the call helpers; built only when some hook is set."""

    __slots__ = (
        "_header_names",
        "_trailer_names",
        "error_handler",
        "forward_response",
        "incoming_metadata",
        "outgoing_header",
        "outgoing_trailer",
        "renames",
        "routing_error_handler",
        "shapes_replies",
    )

    def __init__(self, options: GatewayOptions) -> None:
        self.incoming_metadata = options.incoming_metadata
        self.outgoing_header = options.outgoing_header
        self.outgoing_trailer = options.outgoing_trailer
        self.error_handler = options.error_handler
        self.routing_error_handler = options.routing_error_handler
        self.forward_response = options.forward_response
        #: Whether an outgoing matcher is set (else response_metadata_headers applies as it is).
        self.renames = self.outgoing_header is not None or self.outgoing_trailer is not None
        #: Whether successful replies go through `send_reply_message` (matchers or forward_response set).
        self.shapes_replies = self.renames or self.forward_response is not None
        self._header_names: dict[str, bytes | None] = {}
        self._trailer_names: dict[str, bytes | None] = {}

    @staticmethod
    def of(options: GatewayOptions) -> Hooks | None:
        """The Hooks of `options`, or None when no hook is set (the gateway then skips every hook check)."""
        hooks = (
            options.incoming_metadata,
            options.outgoing_header,
            options.outgoing_trailer,
            options.error_handler,
            options.routing_error_handler,
            options.forward_response,
        )
        return Hooks(options) if any(hook is not None for hook in hooks) else None

    # ------------------------------------------------------------------------------------- metadata in

    async def incoming(self, request: Request, policy: HeaderPolicy, metadata: Metadata) -> Metadata:
        """The metadata to send: the hook's answer, filtered again by the generated policy."""
        hook = self.incoming_metadata
        if hook is None:
            return metadata
        returned = await _maybe_await(hook(request, list(metadata)))
        if returned is None:
            return metadata
        own = set(metadata)  # what the gateway derived itself (x-forwarded-*, ...) passes as it is
        named: set[str] | None = None
        result: Metadata = []
        for pair in returned:
            if pair in own:
                result.append(pair)
                continue
            key, value = pair
            if named is None:
                named = _connection_named(request)
            reason = _refusal(key, value, policy, named)
            if reason is None:
                result.append((key, value))
            else:
                _warn_once(f"in:{key!r}", f"incoming_metadata hook: metadata {key!r} dropped: {reason}")
        return result

    # ------------------------------------------------------------------------------------ metadata out

    def outgoing(
        self,
        policy: HeaderPolicy,
        initial: Iterable[tuple[str, str | bytes]],
        trailing: Iterable[tuple[str, str | bytes]],
    ) -> list[tuple[bytes, bytes]]:
        """response_metadata_headers with the outgoing matchers' names."""
        headers: list[tuple[bytes, bytes]] = []
        for pairs, trailer in ((initial, False), (trailing, True)):
            for key, value in pairs:
                if policy.blocked(key) or not _VALID_KEY.match(key):
                    continue
                name = self._name(key, trailer, policy)
                if name is None:
                    continue
                encoded = _encoded_value(value)
                if encoded is not None:
                    headers.append((name, encoded))
        return headers

    def keeps_trailer(self, key: str, policy: HeaderPolicy) -> bool:
        """Whether the trailer matcher lets trailer `key` out (also into a stream's JSON `trailers`)."""
        return self.outgoing_trailer is None or self._name(key, True, policy) is not None

    def _name(self, key: str, trailer: bool, policy: HeaderPolicy) -> bytes | None:
        cache = self._trailer_names if trailer else self._header_names
        if key in cache:
            return cache[key]
        matcher = self.outgoing_trailer if trailer else self.outgoing_header
        prefix = "grpc-trailer-" if trailer else "grpc-metadata-"
        name: str | None = prefix + key if matcher is None else matcher(key)
        result: bytes | None = None
        if name is not None:
            lowered = name.lower()
            if not isinstance(name, str) or not _TOKEN.match(name):
                _warn_once(
                    f"out:{key!r}", f"outgoing matcher: header name {name!r} for {key!r} is not a token"
                )
            elif lowered in _NEVER_SENT or lowered in policy.forbidden or lowered == "content-type":
                _warn_once(f"out:{key!r}", f"outgoing matcher: header {name!r} for {key!r} is never sent")
            else:
                result = lowered.encode("latin-1")
        if len(cache) < _CACHE_LIMIT:
            cache[key] = result
        return result

    def headers(
        self,
        policy: HeaderPolicy,
        initial: Iterable[tuple[str, str | bytes]],
        trailing: Iterable[tuple[str, str | bytes]],
    ) -> list[tuple[bytes, bytes]]:
        """Response headers of the call's metadata: the matchers' names, else the generated defaults."""
        if self.renames:
            return self.outgoing(policy, initial, trailing)
        return response_metadata_headers(policy, initial, trailing)

    # ---------------------------------------------------------------------------------------- replies

    async def error(self, request: Request, reply: ErrorReply, routing: bool) -> ErrorReply:
        """`reply` as the error handler leaves or replaces it (a failing handler is logged, and `reply`
        goes out as the gateway built it)."""
        hook = self.routing_error_handler if routing else self.error_handler
        if hook is None:
            return reply
        original = ErrorReply(**{name: getattr(reply, name) for name in reply.__dataclass_fields__})
        original.headers = list(reply.headers)
        try:
            returned = await _maybe_await(hook(request, reply))
        except Exception:  # noqa: BLE001 - a user hook's failure, logged with its traceback
            logger.exception(
                "%s failed; the gateway's own error is sent",
                "routing_error_handler" if routing else "error_handler",
            )
            return original
        result = reply if returned is None else returned
        if not isinstance(result, ErrorReply) or not (
            isinstance(result.status, int) and 200 <= result.status <= 599
        ):
            _warn_once(
                "error-reply",
                "error handler returned no ErrorReply with a status 200-599; the gateway's own sent",
            )
            return original
        result.headers = _safe_headers(result.headers, "error handler", original.headers)
        return result

    async def routing_error(self, request: Request, err: HttpError) -> None:
        """A 404/405/415 through `routing_error_handler` (when set), then sent."""
        reply = ErrorReply(err.status, err.code, err.message, [], list(err.headers))
        await send_reply(request, await self.error(request, reply, routing=True))

    async def upstream_error(self, request: Request, reply: ErrorReply) -> None:
        """An upstream error answered as a whole response, through `error_handler`, then sent."""
        await send_reply(request, await self.error(request, reply, routing=False))

    async def send_reply_message(
        self,
        request: Request,
        policy: HeaderPolicy,
        reply: message.Message,
        encode: Callable[[Any], bytes],
        initial: Any,
        trailing: Any,
    ) -> None:
        """A unary (or client-streaming) reply with the outgoing matchers and `forward_response`."""
        initial_pairs, trailing_pairs = _pairs(initial), _pairs(trailing)
        headers = [_JSON, *self.headers(policy, initial_pairs, trailing_pairs)]
        status = 200
        if self.forward_response is not None:
            response = ForwardResponse(reply, 200, headers, initial_pairs, trailing_pairs)
            await self.forward(request, response)
            status, headers = response.status, response.headers
        if status in (204, 304):  # no body, and no Content-Length either (RFC 9110 §8.6)
            request.started = True
            request.status = status  # what send_response records, for the metrics
            if request.exchange is not None:
                request.exchange.status = status
            await request.send({"type": "http.response.start", "status": status, "headers": headers})
            await request.send({"type": "http.response.body", "body": b""})
            return
        await request.send_response(status, encode(reply), headers)

    async def forward(self, request: Request, response: ForwardResponse) -> None:
        hook = self.forward_response
        if hook is None:
            return
        before = list(response.headers)
        await _maybe_await(hook(request, response))
        if not (isinstance(response.status, int) and 200 <= response.status <= 599):
            _warn_once(
                "status", f"forward_response hook: status {response.status!r} is not 200-599; 200 sent"
            )
            response.status = 200
        response.headers = _safe_headers(response.headers, "forward_response hook", before)


async def send_reply(request: Request, reply: ErrorReply) -> None:
    """Send an ErrorReply: its body as given, else the google.rpc.Status JSON of its fields."""
    if reply.body is None:
        await request.send_error(reply.status, reply.code, reply.message, reply.details, extra=reply.headers)
    elif not request.started:
        await request.send_response(
            reply.status, reply.body, [(b"content-type", reply.content_type), *reply.headers]
        )


def _encoded_value(value: str | bytes) -> bytes | None:
    """A metadata value as a header value, as response_metadata_headers writes it: binary values base64,
    text only when printable ASCII."""
    if isinstance(value, bytes):
        return base64.b64encode(value)
    return value.encode("latin-1") if _PRINTABLE.match(value) else None


def _refusal(key: Any, value: Any, policy: HeaderPolicy, named: set[str]) -> str | None:
    """Why metadata a hook returned cannot be sent, or None."""
    if not isinstance(key, str) or not _VALID_KEY.match(key):
        return "not a valid gRPC metadata key (0-9 a-z . _ -)"
    if key in policy.forbidden:
        return "hop-by-hop or stripped header (generated policy)"
    if key in named:
        return "named by the request's Connection header (hop-by-hop)"
    if policy.blocked(key):
        return "reserved metadata key"
    if key.endswith("-bin"):
        return None if isinstance(value, bytes) else "a -bin key needs a bytes value"
    if not isinstance(value, str) or not _PRINTABLE.match(value):
        return "value is not printable ASCII text"
    return None


def _safe_headers(
    headers: Sequence[Any], who: str, gateway_set: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Response headers after a hook: those the gateway set (`gateway_set`) as they are, the hook's own
    without hop-by-hop names, Content-Length or malformed fields."""
    trusted = set(gateway_set)
    result: list[tuple[bytes, bytes]] = []
    for item in headers:
        if item in trusted:
            result.append(item)
            continue
        name, value = item
        raw_name = name.encode("latin-1") if isinstance(name, str) else bytes(name)
        raw_value = value.encode("latin-1") if isinstance(value, str) else bytes(value)
        text = raw_name.decode("latin-1").lower()
        if not _TOKEN.match(text) or not _HEADER_VALUE.match(raw_value):
            _warn_once(f"hdr:{text!r}", f"{who}: malformed header {text!r} dropped")
        elif text in _NEVER_SENT:
            _warn_once(
                f"hdr:{text!r}", f"{who}: header {text!r} dropped: hop-by-hop or computed by the gateway"
            )
        else:
            result.append((text.encode("latin-1"), raw_value))
    return result
