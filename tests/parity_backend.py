"""A grpc.aio backend of parity.v1.ParityService (testdata/protos/parity/v1/parity.proto) for the
end-to-end tests of issue 13: it echoes what it received (so tests see exactly what the gateway built),
serves raw HttpBody downloads and uploads, and records when calls were cancelled.

Runs on its own event loop in a daemon thread on a loopback port; `parity_pb2`/`parity_pb2_grpc` come from
a generated tree on sys.path (the tests' fixture puts it there).
"""

# ruff: noqa: N802  (gRPC method names)
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

#: 64 KiB holding every byte value (not UTF-8): what downloads are cut from.
BLOCK = bytes(range(256)) * 256


def pattern(size: int) -> bytes:
    """The first `size` bytes of the repeated BLOCK (what a download of `size` bytes returns)."""
    whole, rest = divmod(size, len(BLOCK))
    return BLOCK * whole + BLOCK[:rest]


def window(start: int, size: int) -> bytes:
    """`pattern(start + size)[start:]`, without building the prefix."""
    offset = start % len(BLOCK)
    return (BLOCK * (-(-(offset + size) // len(BLOCK))))[offset : offset + size]


@dataclass
class Recorder:
    """What the backend saw, readable from the test thread."""

    requests: list[tuple[str, Any]] = field(default_factory=list)
    #: method name -> time.monotonic() when its handler saw the call cancelled
    cancelled: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, request: Any) -> None:
        with self.lock:
            self.requests.append((method, request))

    def calls(self, method: str) -> list[Any]:
        with self.lock:
            return [r for m, r in self.requests if m == method]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self.cancelled.clear()
            self.started.clear()


def _servicer(pb: Any, pb_grpc: Any, recorder: Recorder) -> Any:
    from google.api import httpbody_pb2

    class Servicer(pb_grpc.ParityServiceServicer):  # type: ignore[misc,name-defined]
        async def _update(self, name: str, request: Any) -> Any:
            recorder.add(name, request)
            return pb.UpdateReply(
                book=request.book,
                paths=list(request.update_mask.paths),
                mask_set=request.HasField("update_mask"),
            )

        async def UpdateBook(self, request: Any, context: Any) -> Any:
            return await self._update("UpdateBook", request)

        async def UpdateTwoMasks(self, request: Any, context: Any) -> Any:
            return await self._update("UpdateTwoMasks", request)

        async def UpdateBookStar(self, request: Any, context: Any) -> Any:
            return await self._update("UpdateBookStar", request)

        async def GetEvent(self, request: Any, context: Any) -> Any:
            recorder.add("GetEvent", request)
            return request

        async def CheckEvent(self, request: Any, context: Any) -> Any:
            recorder.add("CheckEvent", request)
            return request

        async def Download(self, request: Any, context: Any) -> Any:
            recorder.add("Download", request)
            if request.name == "missing":
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no file {request.name}")
            return httpbody_pb2.HttpBody(content_type=request.content_type, data=pattern(request.size))

        async def DownloadField(self, request: Any, context: Any) -> Any:
            recorder.add("DownloadField", request)
            body = httpbody_pb2.HttpBody(content_type=request.content_type, data=pattern(request.size))
            return pb.DownloadReply(name=request.name, file=body)

        async def Upload(self, request: Any, context: Any) -> Any:
            recorder.add("Upload", request)
            data = request.content.data
            return pb.UploadReply(
                name=request.name,
                content_type=request.content.content_type,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                tag=request.tag,
                messages=1,
                largest_message=len(data),
            )

        async def EchoRaw(self, request: Any, context: Any) -> Any:
            recorder.add("EchoRaw", request)
            return httpbody_pb2.HttpBody(content_type=request.content_type, data=request.data)

        async def DownloadStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
            recorder.add("DownloadStream", request)
            recorder.started["DownloadStream"] = time.monotonic()
            if request.fail_after < 0:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no stream {request.name}")
            chunk = request.chunk or len(BLOCK)
            sent = 0
            messages = 0
            try:
                while sent < request.size:
                    if request.fail_after and messages == request.fail_after:
                        await context.abort(grpc.StatusCode.DATA_LOSS, f"lost the rest of {request.name}")
                    size = min(chunk, request.size - sent)
                    piece = window(sent, size)
                    yield httpbody_pb2.HttpBody(
                        content_type=request.content_type if messages == 0 else "", data=piece
                    )
                    sent += size
                    messages += 1
                    if request.delay_ms:
                        await asyncio.sleep(request.delay_ms / 1000)
            except asyncio.CancelledError:
                recorder.cancelled["DownloadStream"] = time.monotonic()
                raise

        async def UploadStream(self, request_iterator: Any, context: Any) -> Any:
            digest = hashlib.sha256()
            size = count = largest = 0
            content_type = ""
            async for item in request_iterator:
                if count == 0:
                    content_type = item.content_type
                digest.update(item.data)
                size += len(item.data)
                largest = max(largest, len(item.data))
                count += 1
            # A client cancelling the call also ends the iteration (grpc.aio gives EOF): only
            # `context.cancelled()` tells a cut-off stream from a complete one.
            cancelled = context.cancelled()
            try:
                await asyncio.sleep(0.05)  # the cancellation may land just after the EOF
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                recorder.add("UploadStream", (content_type, size, count, cancelled or context.cancelled()))
            return pb.UploadReply(
                content_type=content_type,
                size=size,
                sha256=digest.hexdigest(),
                messages=count,
                largest_message=largest,
            )

        async def Plain(self, request: Any, context: Any) -> Any:
            recorder.add("Plain", request)
            if request.text == "sleep":  # hold the call for n ms, noting a cancellation
                recorder.started["Plain"] = time.monotonic()
                try:
                    await asyncio.sleep(request.n / 1000)
                except asyncio.CancelledError:
                    recorder.cancelled["Plain"] = time.monotonic()
                    raise
            return pb.Ping(text=f"plain:{request.text}", n=request.n + 1)

        async def Ticks(self, request: Any, context: Any) -> AsyncIterator[Any]:
            recorder.add("Ticks", request)
            for i in range(request.n):
                yield pb.Ping(text=request.text, n=i)

        async def Countdown(self, request: Any, context: Any) -> AsyncIterator[Any]:
            for i in range(request.n, 0, -1):
                yield pb.Ping(text=request.text, n=i)

        async def Collect(self, request_iterator: Any, context: Any) -> Any:
            texts = [item.text async for item in request_iterator]
            recorder.add("Collect", texts)
            return pb.Ping(text=",".join(texts), n=len(texts))

        async def Chat(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
            async for item in request_iterator:
                yield pb.Ping(text=f"re:{item.text}", n=item.n)

        async def Yamled(self, request: Any, context: Any) -> Any:
            recorder.add("Yamled", request)
            return pb.Ping(text=f"yamled:{request.text}", n=request.n)

        async def Both(self, request: Any, context: Any) -> Any:
            recorder.add("Both", request)
            return pb.Ping(text=f"both:{request.text}", n=request.n)

    return Servicer()


class ParityBackend:
    """`with ParityBackend() as backend:` serves on a free loopback port (`backend.port`)."""

    def __init__(self) -> None:
        self.port = 0
        self.recorder = Recorder()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> ParityBackend:
        self._thread = threading.Thread(target=self._run, name="parity-backend", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to the starting thread
            self._error = err
            self._ready.set()

    async def _serve(self) -> None:
        from parity.v1 import parity_pb2, parity_pb2_grpc

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        parity_pb2_grpc.add_ParityServiceServicer_to_server(
            _servicer(parity_pb2, parity_pb2_grpc, self.recorder), server
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._ready.set()
        await self._stopping.wait()
        await server.stop(None)
