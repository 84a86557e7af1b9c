"""The subset of `grpc.aio.Channel` the gateway runtime uses, as typing Protocols: both
`grpc.aio.Channel` and `NativeChannel` satisfy `Channel`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any, Protocol

import grpc

Metadata = Sequence[tuple[str, "str | bytes"]]


class _CallBase(Protocol):
    def cancel(self) -> bool: ...
    def done(self) -> bool: ...
    async def initial_metadata(self) -> Any: ...
    async def trailing_metadata(self) -> Any: ...
    async def code(self) -> grpc.StatusCode: ...
    async def details(self) -> str: ...


class UnaryCall(_CallBase, Protocol):
    """A call with one response message: `await call` returns it (or raises grpc.aio.AioRpcError)."""

    def __await__(self) -> Generator[Any, None, Any]: ...


class StreamCall(_CallBase, Protocol):
    """A call with a response stream: `read()` returns grpc.aio.EOF at its end."""

    async def read(self) -> Any: ...
    def __aiter__(self) -> AsyncIterator[Any]: ...


class WriterCall(_CallBase, Protocol):
    async def write(self, request: Any) -> None: ...
    async def done_writing(self) -> None: ...


class UnaryUnaryMethod(Protocol):
    def __call__(
        self, request: Any, *, timeout: float | None = ..., metadata: Metadata | None = ...
    ) -> Any: ...


class StreamMethod(Protocol):
    def __call__(self, *, timeout: float | None = ..., metadata: Metadata | None = ...) -> Any: ...


class Channel(Protocol):
    """What the generated modules and the runtime call on a channel."""

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = ...,
        response_deserializer: Callable[[bytes], Any] | None = ...,
    ) -> Any: ...

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = ...,
        response_deserializer: Callable[[bytes], Any] | None = ...,
    ) -> Any: ...

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = ...,
        response_deserializer: Callable[[bytes], Any] | None = ...,
    ) -> Any: ...

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = ...,
        response_deserializer: Callable[[bytes], Any] | None = ...,
    ) -> Any: ...

    async def close(self, grace: float | None = None) -> None: ...
