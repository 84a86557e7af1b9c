"""Upstream channels for `create_app`: a grpc.aio channel, or one opened later in the serving event loop.

grpc.aio channels belong to the event loop that creates them: a channel created at import time (the
module-level `app = ...` that `uvicorn module:app` imports before its loop runs) fails every call with
"attached to a different loop" (a 500). `create_app("host:port")` or `create_app(function)` defer the
channel to `LazyChannel`: opened on the app's `lifespan.startup`, else on the first call, inside the
running loop (again in a new loop if the app is served by another one later), closed on
`lifespan.shutdown`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, final

import grpc
import grpc.aio

from .transport import open_channel

if TYPE_CHECKING:
    from .options import GatewayOptions

__all__ = ["ChannelSource", "LazyChannel", "upstream_channel"]

ChannelSource: TypeAlias = "grpc.aio.Channel | str | Callable[[], grpc.aio.Channel]"
"""What `create_app` takes: a channel, an upstream `host:port` (an insecure channel over
`GatewayOptions.transport`: native when hpack is installed, else grpcio), or a function
returning a channel (TLS, channel options), called in the serving loop."""


@final
class LazyChannel(grpc.aio.Channel):
    """A grpc.aio channel made by `open_channel()` on first use inside the running event loop."""

    def __init__(self, open_channel: Callable[[], grpc.aio.Channel]) -> None:
        self._open = open_channel
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def channel(self) -> grpc.aio.Channel:
        """The channel of the running loop, opened now if this loop has none yet."""
        loop = asyncio.get_running_loop()
        if self._channel is None or self._loop is not loop:
            self._channel, self._loop = self._open(), loop
        return self._channel

    async def close(self, grace: float | None = None) -> None:
        channel, self._channel, self._loop = self._channel, None, None
        if channel is not None:
            await channel.close(grace)

    async def __aenter__(self) -> LazyChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(None)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.channel().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.channel().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.channel().channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _LazyCallable(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _LazyCallable(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _LazyCallable(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _LazyCallable(self, "stream_stream", method, args, kwargs)


class _LazyCallable:
    """A multicallable of a LazyChannel: made on the real channel at the first call (and again when the
    channel changed), then called directly."""

    __slots__ = ("_args", "_callable", "_channel", "_kind", "_kwargs", "_method", "_source")

    def __init__(
        self, source: LazyChannel, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._source = source
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs
        self._channel: grpc.aio.Channel | None = None
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._source.channel()
        if channel is not self._channel:
            self._callable = getattr(channel, self._kind)(self._method, *self._args, **self._kwargs)
            self._channel = channel
        return self._callable(*args, **kwargs)


def upstream_channel(
    source: grpc.aio.Channel | str | Callable[[], grpc.aio.Channel], options: GatewayOptions | None = None
) -> grpc.aio.Channel:
    """`source` itself when it is a channel; else a LazyChannel opening it in the serving loop (a
    "host:port" over `options.transport`, None: `default_transport()`)."""
    if isinstance(source, grpc.aio.Channel) or hasattr(source, "unary_unary"):
        return source  # type: ignore[return-value]  # a channel, or one by duck typing (a test double)
    if isinstance(source, str):
        target, transport = source, options.transport if options is not None else None
        return LazyChannel(lambda: open_channel(target, transport))  # type: ignore[arg-type,return-value]
    if callable(source):
        return LazyChannel(source)
    raise TypeError(
        "create_app needs a grpc.aio channel, a 'host:port' or a function returning a channel, "
        f"not {source!r}"
    )
