"""google.api.HttpBody: raw request and reply bodies of any media type, unary and streamed.

Request: the generated builder calls `fill_http_body` with the raw body (any Content-Type, never parsed
as JSON; `max_body_bytes` bounds it as any body); path and query parameters still fill the rest of the
request message. Client streams (`client_stream_call(..., chunked=True)`) send the raw body as successive
messages of at most client_streams.RAW_CHUNK_BYTES, as it arrives.

Reply: `http_body_call` answers with the HttpBody's `data` as the body and its `content_type` as
Content-Type (`application/octet-stream` when empty). `http_body_stream_call` writes each streamed
message's `data` as it arrives, without framing, under the first message's content type; an error before
the first byte is the usual JSON Status with its HTTP status; an error after it ends the response
abnormally (the handler returns without the body's end: the server closes the connection, without
HTTP/1.1's last chunk or HTTP/2's END_STREAM) so that the client can tell the body is incomplete, and is
logged.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import message
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .asgi import logger
from .errors import ClientDisconnectedError, HttpError
from .lifecycle import _SHUTDOWN_TEXT, _Stop
from .metadata import request_metadata, response_metadata_headers
from .observe import _now
from .request import _unsupported
from .streams import _EOF, _STREAM_HEADERS, _cancel_on_disconnect
from .unary import _watch_disconnect

if TYPE_CHECKING:
    from .options import HeaderPolicy
    from .request import Request

_OCTET_STREAM = b"application/octet-stream"
#: A Content-Type the upstream may set: visible ASCII and spaces (no CR, LF or other controls).
_HEADER_VALUE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\Z")


def check_raw_body(request: Request) -> None:
    """Raw bodies take any Content-Type; a content-encoded body is refused (415) as on JSON routes: the
    upstream would get compressed bytes with nothing saying so."""
    encoding = request.header(b"content-encoding")
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        raise _unsupported(
            f"unsupported Content-Encoding {encoding.decode('latin-1')!r}: send the body uncompressed"
        )
    if sum(1 for key, _ in request.scope["headers"] if key == b"content-type") > 1:
        raise _unsupported("more than one Content-Type header")


def fill_http_body(target: message.Message, request: Request, data: bytes) -> None:
    """Set an HttpBody from the raw request body and the request's Content-Type (empty when absent)."""
    content_type = request.header(b"content-type")
    if content_type is not None:
        target.content_type = content_type.decode("latin-1")  # type: ignore[attr-defined]
    target.data = data  # type: ignore[attr-defined]


def _content_type(body: Any) -> bytes:
    text = body.content_type
    if not text:
        return _OCTET_STREAM
    if not _HEADER_VALUE.match(text):
        # Never a header injection: a value HTTP cannot carry is replaced, and the upstream told in the log.
        logger.warning(
            "upstream HttpBody content_type %r is not a valid header value: sent as application/octet-stream",
            text,
        )
        return _OCTET_STREAM
    return str(text).encode("ascii")


async def http_body_call(
    request: Request,
    method: Any,
    payload: message.Message,
    policy: HeaderPolicy,
    select: Callable[[Any], Any],
) -> None:
    """A unary call whose reply (or `select(reply)`, its response_body field) is an HttpBody."""
    metadata, timeout = request_metadata(request, policy)
    hooks = request.gateway.hooks
    if hooks is not None and hooks.incoming_metadata is not None:
        metadata = await hooks.incoming(request, policy, metadata)
    exchange = request.exchange
    if exchange is not None:
        exchange.unary_started(metadata)
    elif request.start:  # tallied (observe.py)
        request.rpc_started = _now()
    call = method(payload, metadata=tuple(metadata), timeout=timeout)
    try:
        reply, initial, trailing = await _watch_disconnect(request, call)
    except grpc.aio.AioRpcError as err:
        if exchange is not None:
            exchange.unary_ended(err.code().value[0])
        elif request.start:
            request.rpc_ended, request.rpc_code = _now(), err.code().value[0]
        await request.send_rpc_error(err, policy, None)
        return
    if exchange is not None:
        exchange.unary_ended(0)
    elif request.start:
        request.rpc_ended, request.rpc_code = _now(), 0
    body = select(reply)
    headers = [(b"content-type", _content_type(body)), *response_metadata_headers(policy, initial, trailing)]
    await request.send_response(200, bytes(body.data), headers)


async def http_body_stream_call(
    request: Request,
    method: Any,
    payload: message.Message,
    policy: HeaderPolicy,
    select: Callable[[Any], Any],
) -> None:
    """A server stream of HttpBody messages written as one raw body (see the module docstring)."""
    metadata, timeout = request_metadata(request, policy)
    hooks = request.gateway.hooks
    if hooks is not None and hooks.incoming_metadata is not None:
        metadata = await hooks.incoming(request, policy, metadata)
    exchange = request.exchange
    if request.gateway.shutting_down:
        if exchange is not None:
            exchange.stream_refused("httpbody")
        raise HttpError(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT)
    if exchange is not None:
        exchange.call_started("server_stream", metadata)
        exchange.message_sent()
        exchange.stream_opened("httpbody")
    call = method(payload, metadata=tuple(metadata), timeout=timeout)
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, call))
    try:
        with _Stop(request.gateway, call.cancel) as stop:
            await _relay_raw(request, call, policy, select, stop)
    except asyncio.CancelledError:
        if not watcher.done():
            raise
        raise ClientDisconnectedError from None  # the watcher cancelled the call: the client left
    finally:
        watcher.cancel()


async def _relay_raw(
    request: Request, call: Any, policy: HeaderPolicy, select: Callable[[Any], Any], stop: _Stop
) -> None:
    exchange = request.exchange
    try:
        first = await call.read()
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        if stop.fired:
            if exchange is not None:
                exchange.stream_ended("shutdown")
            raise HttpError(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT) from None
        if isinstance(err, asyncio.CancelledError):
            raise
        if exchange is not None:
            exchange.call_ended(err.code().value[0])
            exchange.stream_ended("upstream_error")
        await request.send_rpc_error(err, policy, None)
        return
    initial = await call.initial_metadata()
    content_type = _OCTET_STREAM if first is _EOF else _content_type(select(first))
    headers = [
        (b"content-type", content_type),
        *_STREAM_HEADERS,
        *response_metadata_headers(policy, initial or (), ()),
    ]
    if request.request_id is not None:
        headers.append((b"x-request-id", request.request_id.encode("latin-1")))
    if exchange is not None:
        exchange.status = 200
    request.started = True
    await request.send({"type": "http.response.start", "status": 200, "headers": headers})
    item = first
    try:
        while item is not _EOF:
            if exchange is not None:
                exchange.message_received()
            data = bytes(select(item).data)
            if data:  # an empty chunk would read as the end of the body to some servers
                await request.send({"type": "http.response.body", "body": data, "more_body": True})
            item = await call.read()
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        if isinstance(err, asyncio.CancelledError) and not stop.fired:
            raise  # the client went away (the watcher cancelled the call), or the server cancels us
        failed = isinstance(err, grpc.aio.AioRpcError)
        what = f"{err.code().name}: {err.details()}" if failed else _SHUTDOWN_TEXT  # type: ignore[union-attr]
        if exchange is not None:
            if failed:
                exchange.call_ended(err.code().value[0])  # type: ignore[union-attr]
            exchange.stream_ended("upstream_error" if failed else "shutdown")
        logger.warning(
            "HttpBody stream %s ended by %s after its response began: the response is cut off",
            request.scope.get("path"),
            what,
        )
        # The body stays open: the app returns without its final chunk, and the server closes the
        # connection (granian, uvicorn, hypercorn measured), so the client sees an incomplete body,
        # never a complete-looking one.
        raise _CutOffError from None
    if exchange is not None:
        exchange.call_ended(0)
        exchange.stream_ended("ok")
    await request.send({"type": "http.response.body", "body": b"", "more_body": False})


class _CutOffError(ClientDisconnectedError):
    """A raw stream that failed after its first byte: nothing more is sent (Gateway swallows it)."""
