"""The native gRPC transport: gRPC over HTTP/2 on asyncio, owned by the gateway (issue 17).

`NativeChannel(target, ssl_context=..., options=...)` stands in for `grpc.aio.Channel` wherever the
runtime takes one; see channel.py for what it owns and docs/native-transport.md for the measurements.
Imports only the standard library, grpcio (status codes, Metadata, AioRpcError) and `hpack` — the
latter (the optional extra `native`) only when `NativeChannel` is first used: `Channel` and the other
typing Protocols import without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .interface import Channel, StreamCall, UnaryCall, WriterCall

if TYPE_CHECKING:
    from .channel import NativeChannel
    from .rpcwire import EOF, NativeRpcError

__all__ = ["EOF", "Channel", "NativeChannel", "NativeRpcError", "StreamCall", "UnaryCall", "WriterCall"]


def __getattr__(name: str) -> Any:
    if name == "NativeChannel":
        from . import channel

        return getattr(channel, name)
    if name in ("EOF", "NativeRpcError"):
        from . import rpcwire

        return getattr(rpcwire, name)
    raise AttributeError(name)
