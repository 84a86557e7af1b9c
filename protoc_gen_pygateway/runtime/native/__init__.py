"""The native gRPC transport: gRPC over HTTP/2 on asyncio, owned by the gateway (issue 17).

`NativeChannel(target, ssl_context=..., options=...)` stands in for `grpc.aio.Channel` wherever the
runtime takes one; see channel.py for what it owns and docs/native-transport.md for the measurements.
Imports only the standard library, grpcio (status codes, Metadata, AioRpcError) and `hpack`.
"""

from .channel import EOF, NativeChannel, NativeRpcError
from .interface import Channel, StreamCall, UnaryCall

__all__ = ["EOF", "Channel", "NativeChannel", "NativeRpcError", "StreamCall", "UnaryCall"]
