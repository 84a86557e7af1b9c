"""Unary calls: one request message, one JSON reply."""

from __future__ import annotations

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
from .metadata import request_metadata, response_metadata_headers

if TYPE_CHECKING:
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
    exchange = request.exchange
    if exchange is not None:
        exchange.call_started("unary", metadata)
        exchange.message_sent()
    call = method(payload, metadata=tuple(metadata), timeout=timeout)
    try:
        reply = await call
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
    except grpc.aio.AioRpcError as err:
        if exchange is not None:
            exchange.call_ended(err.code().value[0])
        await request.send_rpc_error(err, policy, None)
        return
    if exchange is not None:
        exchange.message_received()
        exchange.call_ended(0)
    headers = [_JSON, *response_metadata_headers(policy, initial or (), trailing or ())]
    await request.send_response(200, encode(reply), headers)
