"""Example grpc.aio backend for shop.v1.FeedService (testdata/protos/shop/v1/feed.proto): every streaming
RPC kind, recorded in demo.backend's `Recorder` like the shop services.

`demo.backend.start_backend()` serves it next to the shop services (see that module for the stubs it
needs). What tests can rely on:

* Every call is recorded when its handler starts (method, metadata, deadline; client/bidi streams record
  an empty request message), then `x-backend-delay-ms` is honoured as in demo.backend.
* `Call.cancelled` becomes True whenever the RPC is cancelled while the handler runs (client gone,
  deadline passed), `Call.messages` holds each request message as it arrives (client/bidi streams) and
  `Call.messages_sent` counts the response messages written.
* Watch / WatchTitles: `count` events (5 when 0, at most 1,000,000) with `seq` 0..count-1, `interval_ms`
  apart; initial metadata `x-feed-initial: yes`, trailing metadata `x-feed-trailer: done` (also when the
  stream fails). `fail_code` != 0 makes the stream fail with that code after `min(fail_after, count)`
  events, with message "failed after N events" and an ErrorInfo (reason "STREAM_FAILED", metadata
  `events`: N) in `grpc-status-details-bin`. Shelf "shelves/missing" is NOT_FOUND before any event.
* Upload: counts chunks, sums the UTF-8 length of `data`, collects names; a chunk named "fail" aborts
  with INVALID_ARGUMENT "bad chunk".
* Chat: each request is echoed at once as ChatMessage(user="echo", seq=i); a first request with `room`
  set is preceded by ChatMessage(user="system", text="joined {room}", seq=-1). Text "fail" aborts with
  FAILED_PRECONDITION.
"""

# gRPC handler names are the RPC names (CamelCase).
# ruff: noqa: N802

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from demo.backend import (
    _SHELF_NAME,
    _STATUS_BY_NUMBER,
    ERROR_DOMAIN,
    Call,
    Context,
    MetadataItems,
    Recorder,
    _begin,
)

try:
    # Generated at build time: untyped for mypy unless GEN (with --pyi_out) is on MYPYPATH.
    from shop.v1 import feed_pb2, feed_pb2_grpc  # type: ignore[import-not-found, unused-ignore]
except ImportError as exc:  # pragma: no cover - environment problem, not a code path
    raise ImportError(
        "demo.feed_backend needs the generated shop.v1 feed stubs on sys.path: run `python -m "
        "protoc_gen_pygateway.protoc -Itestdata/protos --python_out=GEN --grpc_python_out=GEN "
        "testdata/protos/shop/v1/shop.proto testdata/protos/shop/v1/feed.proto` and add GEN to sys.path"
    ) from exc

__all__ = [
    "DEFAULT_COUNT",
    "FAIL_REASON",
    "INITIAL_METADATA",
    "MAX_COUNT",
    "MISSING_SHELF",
    "TRAILING_METADATA",
    "FeedServicer",
    "add_feed_service",
]

DEFAULT_COUNT = 5
"""Events Watch sends when `count` is 0."""
MAX_COUNT = 1_000_000
"""Larger counts are capped to this."""
MAX_INTERVAL_MS = 600_000
MAX_PADDING = 64 * 1024 * 1024
MISSING_SHELF = "shelves/missing"
"""The one shelf Watch does not know (NOT_FOUND before any event); any other `shelves/{shelf}` works."""
FAIL_REASON = "STREAM_FAILED"
"""`ErrorInfo.reason` of a Watch failing on request (`fail_code`)."""
INITIAL_METADATA: MetadataItems = (("x-feed-initial", "yes"),)
TRAILING_METADATA: MetadataItems = (("x-feed-trailer", "done"),)

_FEED = "/shop.v1.FeedService/"
_M = TypeVar("_M", bound=Message)


def _copy(message: _M) -> _M:
    result = type(message)()
    result.CopyFrom(message)
    return result


class FeedServicer:
    """shop.v1.FeedService; records every call in `recorder`.

    Handlers are coroutines writing with `context.write` (not async generators): grpc.aio then cancels the
    handler's own task when the RPC is cancelled, so `asyncio.CancelledError` arrives inside the handler,
    whatever it was awaiting (a sleep, a write, the next request message), and `Call.cancelled` is set.
    A cancelled client stream first looks like its normal end: see `_after_last_request`.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def Watch(self, request: feed_pb2.WatchRequest, context: Context) -> None:
        """`count` events of `shelf`; see the module docstring."""
        await self._watch("Watch", request, context)

    async def WatchTitles(self, request: feed_pb2.WatchRequest, context: Context) -> None:
        """The same stream as Watch (the gateway sends only the titles)."""
        await self._watch("WatchTitles", request, context)

    async def Upload(
        self, request_iterator: AsyncIterator[feed_pb2.UploadChunk], context: Context
    ) -> feed_pb2.UploadSummary:
        """Chunk count, UTF-8 bytes of `data` and names of all chunks."""
        call = await _begin(self.recorder, _FEED + "Upload", feed_pb2.UploadChunk(), context)
        try:
            summary = feed_pb2.UploadSummary()
            async for chunk in request_iterator:
                call.messages.append(_copy(chunk))
                if chunk.name == "fail":
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad chunk")
                summary.chunks += 1
                summary.bytes += len(chunk.data.encode())
                summary.names.append(chunk.name)
            await _after_last_request(context)
            call.messages_sent += 1
            return summary
        except asyncio.CancelledError:
            call.cancelled = True
            raise

    async def Chat(self, request_iterator: AsyncIterator[feed_pb2.ChatRequest], context: Context) -> None:
        """Echoes each message as it arrives (after a "joined" message when the first one names a room)."""
        call = await _begin(self.recorder, _FEED + "Chat", feed_pb2.ChatRequest(), context)
        try:
            index = 0
            async for request in request_iterator:
                call.messages.append(_copy(request))
                if request.message.text == "fail":
                    await context.abort(
                        grpc.StatusCode.FAILED_PRECONDITION, f"chat message {index} asked to fail"
                    )
                if index == 0 and request.room:
                    system = feed_pb2.ChatMessage(user="system", text=f"joined {request.room}", seq=-1)
                    await _write(context, call, system)
                echo = feed_pb2.ChatMessage(user="echo", text=request.message.text, seq=index)
                await _write(context, call, echo)
                index += 1
            await _after_last_request(context)
        except asyncio.CancelledError:
            call.cancelled = True
            raise

    async def _watch(self, name: str, request: feed_pb2.WatchRequest, context: Context) -> None:
        call = await _begin(self.recorder, _FEED + name, request, context)
        try:
            await self._stream_events(call, request, context)
        except asyncio.CancelledError:
            call.cancelled = True
            raise

    async def _stream_events(self, call: Call, request: feed_pb2.WatchRequest, context: Context) -> None:
        invalid = _check_watch(request)
        if invalid:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, invalid)
        if request.shelf == MISSING_SHELF:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"shelf {request.shelf!r} not found")
        count = min(request.count or DEFAULT_COUNT, MAX_COUNT)
        fail_at = min(request.fail_after, count) if request.fail_code else None
        padding = "x" * request.padding
        await context.send_initial_metadata(INITIAL_METADATA)
        context.set_trailing_metadata(TRAILING_METADATA)
        for seq in range(count):
            if seq == fail_at:
                await _fail(context, request.fail_code, seq)
            if seq:
                await asyncio.sleep(request.interval_ms / 1000)  # 0: still yields to the loop
            event = feed_pb2.Event(seq=seq, shelf=request.shelf, title=f"event {seq}", padding=padding)
            event.time.GetCurrentTime()
            await _write(context, call, event)
        if fail_at is not None:
            await _fail(context, request.fail_code, count)


def _check_watch(request: feed_pb2.WatchRequest) -> str:
    """Why `request` is invalid, or ""."""
    if not _SHELF_NAME.match(request.shelf):
        return f"shelf {request.shelf!r} is not shelves/{{shelf}}"
    if request.count < 0:
        return "count must not be negative"
    if not 0 <= request.interval_ms <= MAX_INTERVAL_MS:
        return f"interval_ms must be within 0..{MAX_INTERVAL_MS}"
    if request.fail_after < 0:
        return "fail_after must not be negative"
    if not 0 <= request.padding <= MAX_PADDING:
        return f"padding must be within 0..{MAX_PADDING}"
    return ""


async def _after_last_request(context: Context) -> None:
    """Tell a half-close from a cancellation once the request stream has ended.

    grpc.aio ends the request iterator the same way for both, and cancels the handler's task only a moment
    later: a handler returning at once would look like a normal call. Reading once more returns EOF
    straight away after a half-close, while on a cancelled call it waits until grpc.aio cancels the task
    (asyncio.CancelledError, which the handlers record).
    """
    await context.read()


async def _write(context: Context, call: Call, message: Message) -> None:
    await context.write(message)
    call.messages_sent += 1


async def _fail(context: Context, code_number: int, sent: int) -> None:
    """Abort with `code_number` (UNKNOWN when grpc does not know it) and an ErrorInfo detail."""
    code = _STATUS_BY_NUMBER.get(code_number, grpc.StatusCode.UNKNOWN)
    message = f"failed after {sent} events"
    info = error_details_pb2.ErrorInfo(
        reason=FAIL_REASON, domain=ERROR_DOMAIN, metadata={"events": str(sent)}
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    await context.abort(
        code,
        message,
        trailing_metadata=(*TRAILING_METADATA, ("grpc-status-details-bin", status.SerializeToString())),
    )


def add_feed_service(server: grpc.aio.Server, recorder: Recorder) -> FeedServicer:
    """Register a FeedServicer recording into `recorder` on `server`; returns it."""
    servicer = FeedServicer(recorder)
    add = feed_pb2_grpc.add_FeedServiceServicer_to_server
    add(servicer, server)  # type: ignore[no-untyped-call, unused-ignore]
    return servicer
