"""Property-based fuzz of the native transport: a fake server (a real loopback socket) answers with
hypothesis-generated HTTP/2 frames — plausible gRPC replies, mutated ones and garbage, cut anywhere —
and the call must always end, within its deadline plus a margin, with a reply or a gRPC status
(`grpc.aio.AioRpcError`), never another exception, never a hang, never an error left in the loop."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import grpc
import hpack
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from protoc_gen_pygateway.runtime.native import NativeChannel
from tests.native_fake import FakeServer, grpc_message, raw_frame

_HEADER_SETS = st.sampled_from(
    [
        [(":status", "200"), ("content-type", "application/grpc")],
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-encoding", "gzip")],
        [(":status", "503")],
        [(":status", "200"), ("content-type", "text/plain")],
        [("grpc-status", "0")],
        [("grpc-status", "13"), ("grpc-message", "bad%20thing")],
        [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "5")],
        [("grpc-status", "x"), ("grpc-status-details-bin", "!!notbase64")],
        [(":status", "200"), ("content-type", "application/grpc"), ("k-bin", "AAE")],
    ]
)


def _headers_frame(encoder: hpack.Encoder, headers: list[tuple[str, str]], sid: int, flags: int) -> bytes:
    return raw_frame(1, flags, sid, encoder.encode(headers))


@st.composite
def server_script(draw: Any) -> tuple[list[bytes], str]:
    """(chunks, end): chunks[0] is the SETTINGS payload the server opens with (b"\\x00": none)."""
    encoder = hpack.Encoder()
    frames: list[bytes] = []
    if draw(st.booleans()):  # a whole valid reply, which the rest then follows (or garbles)
        frames.append(
            _headers_frame(encoder, [(":status", "200"), ("content-type", "application/grpc")], 1, 4)
        )
        frames.append(raw_frame(0, 0, 1, grpc_message(draw(st.binary(max_size=32)))))
        frames.append(_headers_frame(encoder, [("grpc-status", "0")], 1, 5))
    for _ in range(draw(st.integers(0, 8))):
        sid = draw(st.sampled_from([1, 1, 1, 3, 0, 2]))
        kind = draw(
            st.sampled_from(
                ["headers", "trailers", "data", "rst", "goaway", "ping", "window", "cont", "raw", "settings"]
            )
        )
        if kind == "headers":
            frames.append(
                _headers_frame(encoder, draw(_HEADER_SETS), sid, draw(st.sampled_from([4, 5, 0, 0x0C])))
            )
        elif kind == "trailers":
            frames.append(_headers_frame(encoder, [("grpc-status", str(draw(st.integers(0, 20))))], sid, 5))
        elif kind == "data":
            body = draw(st.binary(max_size=64))
            payload = grpc_message(body, draw(st.sampled_from([0, 0, 1, 2]))) if draw(st.booleans()) else body
            frames.append(raw_frame(0, draw(st.sampled_from([0, 1, 8, 9])), sid, payload))
        elif kind == "rst":
            frames.append(raw_frame(3, 0, sid, struct.pack(">L", draw(st.integers(0, 14)))))
        elif kind == "goaway":
            frames.append(
                raw_frame(7, 0, 0, struct.pack(">LL", draw(st.integers(0, 3)), draw(st.integers(0, 13))))
            )
        elif kind == "ping":
            frames.append(
                raw_frame(6, draw(st.sampled_from([0, 1])), 0, draw(st.binary(min_size=8, max_size=9)))
            )
        elif kind == "window":
            frames.append(raw_frame(8, 0, sid, struct.pack(">L", draw(st.integers(0, 2**31 - 1)))))
        elif kind == "cont":
            frames.append(raw_frame(9, draw(st.sampled_from([0, 4])), sid, draw(st.binary(max_size=16))))
        elif kind == "settings":
            frames.append(raw_frame(4, draw(st.sampled_from([0, 1])), sid, draw(st.binary(max_size=13))))
        else:
            frames.append(draw(st.binary(max_size=40)))
    data = b"".join(frames)
    if draw(st.booleans()) and data:  # cut anywhere
        data = data[: draw(st.integers(0, len(data)))]
    chunks = [data]
    if draw(st.booleans()) and len(data) > 1:
        at = draw(st.integers(1, len(data) - 1))
        chunks = [data[:at], data[at:]]
    preface = draw(
        st.sampled_from([b"", b"", b"", struct.pack(">HL", 3, 1), struct.pack(">HL", 4, 10), b"\x00"])
    )
    return [preface, *chunks], draw(st.sampled_from(["close", "close", "hang"]))


async def _one(chunks: list[bytes], end: str, streaming: bool) -> None:
    problems: list[Any] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await reader.read(65536)  # the client's preface
        preface, *rest = chunks
        if preface != b"\x00":  # a SETTINGS frame (else: the script's bytes come first)
            writer.write(raw_frame(4, 0, 0, preface))
            await reader.read(65536)  # SETTINGS ACK and the request
        for chunk in rest:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.001)
        if end == "hang":
            await asyncio.sleep(5)

    options = [("grpc.min_reconnect_backoff_ms", 500), ("grpc.initial_reconnect_backoff_ms", 100)]
    async with FakeServer(handler) as server, NativeChannel(server.target, options=options) as channel:
        start = time.monotonic()
        try:
            if streaming:
                call = channel.unary_stream("/t/M")(b"x", timeout=0.5)
                async for _ in call:
                    pass
            else:
                await channel.unary_unary("/t/M")(b"x", timeout=0.5)
            event("reply")
        except grpc.aio.AioRpcError as err:
            assert isinstance(err.code(), grpc.StatusCode)
            event(f"status {err.code().name}")
        assert time.monotonic() - start < 6.0  # deadline 0.5 s, connect timeout 0.5 s: a hang is far longer
    await asyncio.sleep(0)
    assert not problems, problems


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(script=server_script(), streaming=st.booleans())
def test_any_server_bytes_end_in_a_status(script: tuple[list[bytes], str], streaming: bool) -> None:
    chunks, end = script
    asyncio.run(asyncio.wait_for(_one(chunks, end, streaming), 10))
