"""The native gRPC client: `NativeChannel`, HTTP/2 on an `asyncio.Protocol` in the running loop.

Why it exists: grpcio's aio client completes every operation on its poller thread and hops to the event
loop (grpc/grpc#22258), several context switches per call. Here frames are parsed in `data_received` on
the loop itself, writes are coalesced per loop iteration, and no thread is involved (measured in
bench/native_client.py and docs/native-transport.md).

The channel quacks like `grpc.aio.Channel` for what the gateway runtime uses: `unary_unary`,
`unary_stream`, `stream_unary`, `stream_stream` return multicallables; their calls behave as grpc.aio's
(`await call`, `read()` -> `EOF`, `async for`, `write`, `done_writing`, `initial_metadata()`,
`trailing_metadata()`, `code()`, `details()`, `cancel()`), failures raise `NativeRpcError`, a subclass
of `grpc.aio.AioRpcError`, and a locally cancelled call raises `asyncio.CancelledError`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from typing import Any

import grpc

from . import frames as h2
from .multicallable import (
    StreamStreamMultiCallable,
    StreamUnaryMultiCallable,
    UnaryStreamMultiCallable,
    UnaryUnaryMultiCallable,
)
from .options import _Options
from .pool import _parse_target, _Pool
from .rpcwire import NativeRpcError

__all__ = ["NativeChannel"]


# ---------------------------------------------------------------------------------------------- channel


class NativeChannel(_Pool):
    """A gRPC channel to `target` ("host:port", "dns:///host:port", "[v6]:port"): one HTTP/2 connection
    per resolved address, calls spread round-robin over the ready ones.

    - Calls beyond every connection's MAX_CONCURRENT_STREAMS wait in a FIFO queue (bounded by their
      deadline), never fail.
    - Connection failures back off per address (`grpc.initial_reconnect_backoff_ms` growing 1.6x, 20%
      jitter, up to `grpc.max_reconnect_backoff_ms`; one attempt lasts at most
      `grpc.min_reconnect_backoff_ms`). While no address can be tried, calls fail at once UNAVAILABLE
      (grpc's behaviour without wait_for_ready).
    - DNS is resolved again on every connection loss, on GOAWAY and every `pygateway.native.dns_refresh_s`
      (30 s) while calls are made.
    - `ssl_context` turns on TLS; ALPN "h2" is set on it and required of the server.

    Build it inside the event loop that will use it (it belongs to that loop).
    """

    def __init__(
        self,
        target: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        opts = _Options(options)
        host, port = _parse_target(target)
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["h2"])
        super().__init__(host, port, opts, ssl_context)
        self._tls = ssl_context is not None
        host = self._host if ":" not in self._host else f"[{self._host}]"
        self._authority = self._opts.authority or f"{host}:{self._port}"

    # multicallables (grpc.aio.Channel's signatures)

    def unary_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> UnaryUnaryMultiCallable:
        return UnaryUnaryMultiCallable(self, method, request_serializer, response_deserializer, True)

    def unary_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> UnaryStreamMultiCallable:
        return UnaryStreamMultiCallable(self, method, request_serializer, response_deserializer, False)

    def stream_unary(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> StreamUnaryMultiCallable:
        return StreamUnaryMultiCallable(self, method, request_serializer, response_deserializer, True)

    def stream_stream(
        self,
        method: str,
        request_serializer: Any = None,
        response_deserializer: Any = None,
        _registered_method: bool | None = False,
    ) -> StreamStreamMultiCallable:
        return StreamStreamMultiCallable(self, method, request_serializer, response_deserializer, False)

    async def __aenter__(self) -> NativeChannel:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        """Close: with `grace`, calls in flight get that long to finish; then every call left is
        cancelled and the connections end with GOAWAY."""
        self._closed = True
        self._loop_now()
        if grace:
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (
                self._waiting or any(a.conn and a.conn.calls for a in self._addresses)
            ):
                await asyncio.sleep(0.01)
        for call in list(self._waiting):
            call._finish(grpc.StatusCode.CANCELLED, "Channel closed!")
        self._waiting.clear()
        for address in self._addresses:
            if address.connecting is not None:
                address.connecting.cancel()
            if address.conn is not None:
                for call in list(address.conn.calls.values()):
                    call._fail_stream(grpc.StatusCode.CANCELLED, "Channel closed!", h2.CANCEL)
                address.conn.close()
        if self._resolving is not None:
            self._resolving.cancel()
        await asyncio.sleep(0)

    async def channel_ready(self) -> None:
        """Wait until a connection is ready (raises NativeRpcError UNAVAILABLE if none can be made)."""
        while True:
            if any(a.conn is not None and a.conn.available() for a in self._addresses):
                return
            await self._connect_some(wait=True)
            if not any(a.conn is not None and a.conn.available() for a in self._addresses):
                raise NativeRpcError(grpc.StatusCode.UNAVAILABLE, self._unavailable_text())
