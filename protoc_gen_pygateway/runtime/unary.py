"""Unary calls: one request message, one JSON reply."""

from __future__ import annotations

import asyncio
from collections.abc import (
    Callable,
)
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import (
    message,
)

from .asgi import _JSON
from .errors import ClientDisconnectedError
from .metadata import request_metadata, response_metadata_headers
from .observe import _now
from .streams import _cancel_on_disconnect

if TYPE_CHECKING:
    from .asgi import Metadata
    from .options import HeaderPolicy
    from .request import Request


async def unary_call(
    request: Request,
    method: grpc.aio.UnaryUnaryMultiCallable,  # type: ignore[type-arg]
    payload: message.Message,
    policy: HeaderPolicy,
    encode: Callable[[Any], bytes],
) -> None:
    """Forward one request message, answer with the JSON of the reply (or the gRPC error)."""
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
    if hooks is not None and hooks.shapes_replies:
        await hooks.send_reply_message(request, policy, reply, encode, initial, trailing)
        return
    headers = [_JSON, *response_metadata_headers(policy, initial, trailing)]
    await request.send_response(200, encode(reply), headers)


#: How long a unary call runs before a watcher task starts waiting for the client to leave. Most calls end
#: sooner, and a task per request costs ~4.6 us of CPU against ~0.7 us for a timer (uvloop, measured):
#: the client's departure is noticed at most this much later.
WATCH_AFTER_S = 0.025


async def _watch_disconnect(request: Request, call: Any) -> tuple[Any, Metadata, Metadata]:
    """The reply and metadata of a unary call, cancelling it upstream as soon as the HTTP client goes
    away (as streams do): from WATCH_AFTER_S on, a watcher waits on the ASGI receive channel for
    `http.disconnect`. Raises ClientDisconnectedError then (nothing is answered), AioRpcError when the
    call fails."""
    watcher: asyncio.Future[None] | None = None

    def watch() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(_cancel_on_disconnect(request, call))

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, watch)
    try:
        reply = await call
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
    except asyncio.CancelledError:
        if watcher is None or not watcher.done():
            raise  # the server cancels the handler (shutdown grace period over)
        raise ClientDisconnectedError from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
    return reply, list(initial or ()), list(trailing or ())
