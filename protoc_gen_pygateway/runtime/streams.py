"""Streaming calls over HTTP: NDJSON and SSE framing of server streams (client streams: client_streams.py)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import (
    Callable,
    Iterable,
    Sequence,
)
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import (
    message,
)
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .errors import (
    HTTP_STATUS,
    ClientDisconnectedError,
    HttpError,
    _pairs,
    _rpc_error_data,
    _rpc_failure,
    _status_data,
)
from .hooks import ErrorReply, ForwardResponse, send_reply
from .jsonstyle import dump_json
from .lifecycle import _SHUTDOWN_TEXT, _Stop
from .metadata import (
    _VALID_KEY,
    _printable,
    request_metadata,
    response_metadata_headers,
)

if TYPE_CHECKING:
    from .options import HeaderPolicy
    from .request import Request


_NDJSON = b"application/x-ndjson"


_SSE = b"text/event-stream"


_STREAM_HEADERS = [
    # Proxies must pass each message on at once: no caching, no buffering (nginx honours the latter).
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _trailer_data(trailing: Iterable[tuple[str, str | bytes]], policy: HeaderPolicy) -> dict[str, str]:
    data: dict[str, str] = {}
    for key, value in trailing:
        if policy.blocked(key) or not _VALID_KEY.match(key):
            continue
        data[key] = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
    return data


#: grpc.aio's end-of-stream marker for `call.read()` (absent from the type stubs).
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined,unused-ignore]


class _Framing:
    content_type = _NDJSON

    def message(self, data: Any) -> bytes:
        return dump_json({"result": data}) + b"\n"

    def error(self, status: dict[str, Any], trailers: dict[str, str]) -> bytes:
        # Always with "trailers" (also when empty), as SSE and WebSocket: one shape for clients to parse.
        return dump_json({"error": status, "trailers": trailers}) + b"\n"

    def end(self, trailers: dict[str, str]) -> bytes:
        return b""


class _SseFraming(_Framing):
    content_type = _SSE

    def message(self, data: Any) -> bytes:
        return b"data: " + dump_json(data) + b"\n\n"

    def error(self, status: dict[str, Any], trailers: dict[str, str]) -> bytes:
        return b"event: error\ndata: " + dump_json({"error": status, "trailers": trailers}) + b"\n\n"

    def end(self, trailers: dict[str, str]) -> bytes:
        return b"event: end\ndata: " + dump_json({"trailers": trailers}) + b"\n\n"


_NDJSON_FRAMING = _Framing()


_SSE_FRAMING = _SseFraming()


def _framing(request: Request) -> _Framing:
    """`Accept: text/event-stream` selects SSE; anything else (x-ndjson, json, */*, none) NDJSON."""
    accept = request.header(b"accept")
    return _SSE_FRAMING if accept is not None and b"text/event-stream" in accept.lower() else _NDJSON_FRAMING


def _wants_trailers(request: Request) -> bool:
    te = request.header(b"te")
    extensions = request.scope.get("extensions") or {}
    return te is not None and b"trailers" in te.lower() and "http.response.trailers" in extensions


async def _relay(
    request: Request,
    call: Any,
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
    failure: Callable[[], HttpError | None],
    stop: _Stop,
) -> None:
    """Send a gRPC response stream as NDJSON or SSE: each message flushed as it arrives.

    Backpressure is end to end: the next message is read from gRPC only after `send` returned, and
    ASGI servers make `send` wait while the client is not reading. A gateway shutdown (`stop` fired)
    ends the stream with UNAVAILABLE "gateway shutting down".
    """
    framing = _framing(request)
    rid = request.request_id
    exchange = request.exchange
    if exchange is not None:
        exchange.stream_opened("sse" if framing is _SSE_FRAMING else "ndjson")
    try:
        first = await call.read()
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        problem = failure()
        if problem is not None:
            if exchange is not None:
                exchange.stream_ended("bad_request")
            raise problem from None
        if stop.fired:
            if exchange is not None:
                exchange.stream_ended("shutdown")
            shutdown = _status_data(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT, (), rid)
            await _stream_refusal(request, framing, code_pb2.UNAVAILABLE, shutdown)
            return
        if isinstance(err, asyncio.CancelledError):
            raise
        code, http_status, text, details, failed_trailers = _rpc_failure(err)
        if exchange is not None:
            exchange.call_ended(code)
            exchange.stream_ended("upstream_error")
        hooks = request.gateway.hooks
        if hooks is None:
            await _stream_refusal(
                request,
                framing,
                code,
                _status_data(code, text, details, rid),
                _trailer_data(failed_trailers, policy),
                response_metadata_headers(policy, _pairs(err.initial_metadata()), ()),
                http_status,
            )
            return
        head = hooks.headers(policy, _pairs(err.initial_metadata()), ())
        reply = ErrorReply(http_status, code, text, list(details), head, err)
        if hooks.error_handler is not None:
            reply = await hooks.error(request, reply, routing=False)
        if reply.body is not None:
            await send_reply(request, reply)
            return
        await _stream_refusal(
            request,
            framing,
            reply.code,
            _status_data(reply.code, reply.message, reply.details, rid),
            _trailers_json(request, failed_trailers, policy),
            reply.headers,
            reply.status,
        )
        return
    initial = await call.initial_metadata()
    trailers = _wants_trailers(request)
    hooks = request.gateway.hooks
    status = 200
    if hooks is None:
        headers = [
            (b"content-type", framing.content_type),
            *_STREAM_HEADERS,
            *response_metadata_headers(policy, initial or (), ()),
        ]
    else:
        headers = [
            (b"content-type", framing.content_type),
            *_STREAM_HEADERS,
            *hooks.headers(policy, _pairs(initial), ()),
        ]
        if hooks.forward_response is not None:
            response = ForwardResponse(None if first is _EOF else first, 200, headers, _pairs(initial), [])
            await hooks.forward(request, response)
            status, headers = response.status, response.headers
    if rid is not None:
        headers.append((b"x-request-id", rid.encode("latin-1")))
    if exchange is not None:
        exchange.status = status
    request.started = True
    await request.send(
        {"type": "http.response.start", "status": status, "headers": headers, "trailers": trailers}
    )
    final = b""
    trailing: list[tuple[str, str | bytes]] = []
    code = code_pb2.OK
    try:
        item = first
        while item is not _EOF:
            if exchange is not None:
                exchange.message_received()
            await request.send(
                {"type": "http.response.body", "body": framing.message(encode(item)), "more_body": True}
            )
            item = await call.read()
        trailing = _pairs(await call.trailing_metadata())
        final = framing.end(_trailers_json(request, trailing, policy))
        if exchange is not None:
            exchange.call_ended(code_pb2.OK)
            exchange.stream_ended("ok")
    except (grpc.aio.AioRpcError, asyncio.CancelledError) as err:
        problem = failure()  # a bad request message cancelled the call: report it, not the cancellation
        outcome = "upstream_error"
        if problem is not None:
            code, outcome = problem.code, "bad_request"
            final = framing.error(_status_data(problem.code, problem.message, (), rid), {})
        elif stop.fired:
            code, outcome = code_pb2.UNAVAILABLE, "shutdown"
            final = framing.error(_status_data(code, _SHUTDOWN_TEXT, (), rid), {})
        elif isinstance(err, asyncio.CancelledError):
            raise
        else:
            code, status_data, trailing = _rpc_error_data(err, rid)
            final = framing.error(status_data, _trailers_json(request, trailing, policy))
            if exchange is not None:
                exchange.call_ended(code)
        if exchange is not None:
            exchange.answered(code)
            exchange.stream_ended(outcome)
    # The body ends (more_body False) before the trailers message: the ASGI trailers extension's order,
    # which servers enforce (hypercorn rejects trailers sent while the body is still open).
    await request.send({"type": "http.response.body", "body": final, "more_body": False})
    if trailers:
        # Grpc-Status (the final gRPC code) is always there: it tells a complete stream from a cut one,
        # and an empty trailer block cannot be sent (hypercorn/h2 fail on it, dropping the connection).
        headers = [
            *(
                response_metadata_headers(policy, (), trailing)
                if hooks is None
                else hooks.headers(policy, (), trailing)
            ),
            (b"grpc-status", str(code).encode("latin-1")),
        ]
        await request.send({"type": "http.response.trailers", "headers": headers, "more_trailers": False})


def _trailers_json(
    request: Request, trailing: Iterable[tuple[str, str | bytes]], policy: HeaderPolicy
) -> dict[str, str]:
    """A stream's trailers as its final line/event carries them, without those the trailer matcher drops."""
    data = _trailer_data(trailing, policy)
    hooks = request.gateway.hooks
    if hooks is not None and hooks.outgoing_trailer is not None:
        data = {key: value for key, value in data.items() if hooks.keeps_trailer(key, policy)}
    return data


async def _stream_refusal(
    request: Request,
    framing: _Framing,
    code: int,
    status: dict[str, Any],
    trailers: dict[str, str] | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
    http_status: int | None = None,
) -> None:
    """A stream that failed before its first message: one complete response, status from the gRPC code,
    the body the stream's final error line (or SSE event)."""
    head = [(b"content-type", framing.content_type), *headers]
    if request.exchange is not None:
        request.exchange.answered(code)
    if code == code_pb2.UNAUTHENTICATED:
        head.append((b"www-authenticate", _printable(status["message"]).encode("latin-1")))
    body = framing.error(status, trailers or {})
    await request.send_response(http_status or HTTP_STATUS.get(code, 500), body, head)


async def _refuse_while_shutting_down(request: Request) -> bool:
    """Answer a new stream during a gateway shutdown with 503 "gateway shutting down" (True), else False."""
    if not request.gateway.shutting_down:
        return False
    framing = _framing(request)
    if request.exchange is not None:
        request.exchange.stream_refused("sse" if framing is _SSE_FRAMING else "ndjson")
    status = _status_data(code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT, (), request.request_id)
    await _stream_refusal(request, framing, code_pb2.UNAVAILABLE, status)
    return True


async def _cancel_on_disconnect(request: Request, call: Any) -> None:
    """Cancel the upstream call as soon as the HTTP client goes away."""
    while True:
        event = await request.receive()
        if event["type"] == "http.disconnect":
            call.cancel()
            return


async def server_stream_call(
    request: Request,
    method: Any,
    payload: message.Message,
    policy: HeaderPolicy,
    encode: Callable[[Any], Any],
) -> None:
    """A server-streaming call: one request message, the reply stream relayed as NDJSON or SSE."""
    metadata, timeout = request_metadata(request, policy)
    hooks = request.gateway.hooks
    if hooks is not None and hooks.incoming_metadata is not None:
        metadata = await hooks.incoming(request, policy, metadata)
    if await _refuse_while_shutting_down(request):
        return
    exchange = request.exchange
    if exchange is not None:
        exchange.call_started("server_stream", metadata)
        exchange.message_sent()
    call = method(payload, metadata=tuple(metadata), timeout=timeout)
    watcher = asyncio.ensure_future(_cancel_on_disconnect(request, call))
    try:
        with _Stop(request.gateway, call.cancel) as stop:
            await _relay(request, call, policy, encode, lambda: None, stop)
    except asyncio.CancelledError:
        if not watcher.done():
            raise
        raise ClientDisconnectedError from None  # the watcher cancelled the call: the client left
    finally:
        watcher.cancel()
