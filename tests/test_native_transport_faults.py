"""The native transport against a scripted fake server (tests/native_fake.py, a real loopback socket):
GOAWAY and REFUSED_STREAM retries, the peer's MAX_CONCURRENT_STREAMS and flow-control windows,
compressed replies refused, CONTINUATION floods and oversized header lists, non-gRPC replies,
a silent server, keepalive pings, and connection-level garbage — each ends in a gRPC status."""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import grpc
import h2.events
import pytest

from protoc_gen_pygateway.runtime.native import NativeChannel
from protoc_gen_pygateway.runtime.native import options as native_options
from tests.native_fake import SERVER_SETTINGS, FakeServer, H2Peer, grpc_message, raw_frame
from tests.native_support import run

FAST = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 1000)]


async def expect_status(awaitable: Any, code: grpc.StatusCode, text: str = "") -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() is code, (info.value.code(), info.value.details())
    details = info.value.details() or ""
    assert text in details, details
    return details


def test_goaway_retries_unprocessed_calls_on_a_new_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        if index == 0:
            await peer.wait_request(2)
            first = sorted(peer.ended)[0]
            peer.respond(first, [b"from-0"])
            peer.conn.close_connection(last_stream_id=first)  # GOAWAY: `second` was never processed
            peer.flush()
            await peer.next_events()
            await asyncio.sleep(0.2)
            return
        while True:
            await peer.next_events()
            for sid in sorted(peer.ended):
                peer.respond(sid, [b"from-%d" % index])
                peer.ended.discard(sid)

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target, options=FAST) as channel:
            method = channel.unary_unary("/t/M")
            results = await asyncio.gather(method(b"a", timeout=5), method(b"b", timeout=5))
            assert sorted(results) == [b"from-0", b"from-1"]
            assert server.connections == 2
            assert not server.errors

    run(main())


def test_goaway_fails_client_streams_that_cannot_be_replayed() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        while not any(isinstance(e, h2.events.RequestReceived) for e in await peer.next_events()):
            pass
        peer.conn.close_connection(last_stream_id=0)
        peer.flush()
        await asyncio.sleep(1)

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target, options=FAST) as channel:
            call = channel.stream_unary("/t/M")()
            await call.write(b"x")
            await expect_status(call, grpc.StatusCode.UNAVAILABLE, "going away")

    run(main())


def test_refused_stream_is_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        refused = False
        while True:
            await peer.next_events()
            for sid in sorted(peer.ended):
                peer.ended.discard(sid)
                if not refused:
                    refused = True
                    peer.conn.reset_stream(sid, error_code=7)  # REFUSED_STREAM
                    peer.flush()
                else:
                    peer.respond(sid, [bytes(peer.bodies[sid][5:])])

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            assert await channel.unary_unary("/t/M")(b"again", timeout=5) == b"again"
            assert not server.errors

    run(main())


def test_peer_max_concurrent_streams_queues_calls() -> None:
    state = {"open": 0, "peak": 0}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer, max_concurrent_streams=2)
        pending: list[int] = []
        while True:
            for ev in await peer.next_events():
                if isinstance(ev, h2.events.RequestReceived):
                    state["open"] += 1
                    state["peak"] = max(state["peak"], state["open"])
                if isinstance(ev, h2.events.StreamEnded):
                    pending.append(ev.stream_id)
            await asyncio.sleep(0.01)
            for sid in pending:
                state["open"] -= 1
                peer.respond(sid, [bytes(peer.bodies[sid][5:])])
            pending.clear()

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            method = channel.unary_unary("/t/M")
            results = await asyncio.gather(*(method(str(i).encode(), timeout=20) for i in range(30)))
            assert results == [str(i).encode() for i in range(30)]
            assert state["peak"] == 2
            assert not server.errors

    run(main())


def test_queued_calls_time_out_cheaply_behind_a_stuck_server() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer, max_concurrent_streams=1)
        while True:
            await peer.next_events()  # never answers

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            await channel.channel_ready()
            method = channel.unary_unary("/t/M")
            start = time.monotonic()
            calls = [method(b"x", timeout=0.5 + (i % 7) / 10) for i in range(5000)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, grpc.aio.AioRpcError) for r in results)
            assert {r.code() for r in results} == {grpc.StatusCode.DEADLINE_EXCEEDED}  # type: ignore[union-attr]
            assert time.monotonic() - start < 20  # bounded even on a loaded machine; no O(n^2) removal
            assert len(channel._waiting) < 100  # ended calls left the queue

    run(main())


def test_send_side_flow_control_windows_are_respected() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        # Tiny stream window; h2 raises if the client overruns it, and acknowledges as it reads.
        peer = H2Peer(reader, writer, initial_window_size=100, max_frame_size=16384)
        while True:
            await peer.next_events()
            for sid in sorted(peer.ended):
                peer.ended.discard(sid)
                body = bytes(peer.bodies[sid])
                peer.respond(sid, [str(len(body)).encode()])

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            assert await channel.unary_unary("/t/M")(b"z" * 300_000, timeout=20) == b"300005"
            call = channel.stream_unary("/t/M")()
            for _ in range(10):
                await call.write(b"y" * 20_000)
            await call.done_writing()
            assert await call == b"200050"
            assert not server.errors

    run(main())


def test_compressed_reply_is_refused_clearly() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        (sid,) = await peer.wait_request()
        peer.conn.send_headers(
            sid, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-encoding", "gzip")]
        )
        peer.conn.send_data(sid, grpc_message(b"\x1f\x8b compressed", flag=1))
        peer.conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        peer.flush()
        await peer.next_events()

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            details = await expect_status(
                channel.unary_unary("/t/M")(b"x", timeout=5), grpc.StatusCode.INTERNAL, "gzip"
            )
            assert "identity" in details

    run(main())


def test_request_advertises_identity_and_sends_metadata_encoded() -> None:
    seen: dict[str, list[tuple[str, str]]] = {}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        (sid,) = await peer.wait_request()
        seen["headers"] = peer.headers[sid]
        peer.respond(sid, [b"ok"], headers=[("resp-bin", "AAH/")], trailers=[("t", "v")])
        await peer.next_events()

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            call = channel.unary_unary("/pkg.Svc/Method")(
                b"x", timeout=3.5, metadata=(("k-bin", b"\x00\x01\xff"), ("k", "v"))
            )
            assert await call == b"ok"
            assert list(await call.initial_metadata()) == [("resp-bin", b"\x00\x01\xff")]
            assert list(await call.trailing_metadata()) == [("t", "v")]
        headers = dict(seen["headers"])
        assert (
            headers[":method"] == "POST"
            and headers[":path"] == "/pkg.Svc/Method"
            and headers[":scheme"] == "http"
        )
        assert headers["content-type"] == "application/grpc" and headers["te"] == "trailers"
        assert headers["grpc-accept-encoding"] == "identity"
        assert headers["k-bin"] == "AAH/" and headers["k"] == "v"
        unit = headers["grpc-timeout"][-1]
        assert unit in "um" and 3.4 < int(headers["grpc-timeout"][:-1]) / (1e6 if unit == "u" else 1e3) <= 3.5

    run(main())


def test_metadata_never_overrides_framing_or_connection_headers() -> None:
    """Keys the transport owns are dropped from a caller's metadata: a `content-length` there would frame
    the request wrongly (RFC 9113 §8.1.1: a mismatch with the DATA is a malformed request), and the
    connection-specific fields of RFC 9113 §8.2.2 are malformed in HTTP/2 altogether. (grpcio drops
    `content-length`, `te` and `content-type` too; through the gateway these come from
    `Grpc-Metadata-Content-Length` and the like.)"""
    seen: dict[str, list[tuple[str, str]]] = {}
    owned = [
        ("content-length", "7"),
        ("Content-Length", "F3Q"),
        ("connection", "close"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "1"),
        ("proxy-connection", "x"),
        ("upgrade", "h2c"),
        ("te", "gzip"),
        ("content-type", "text/plain"),
        ("host", "elsewhere"),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        (sid,) = await peer.wait_request()
        seen["headers"] = peer.headers[sid]
        peer.respond(sid, [b"ok"])
        await peer.next_events()

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            call = channel.unary_unary("/pkg.Svc/Method")(b"x", timeout=5, metadata=[*owned, ("k", "v")])
            assert await call == b"ok"
        names = [name for name, _ in seen["headers"]]
        assert "content-length" not in names
        connection_specific = {"connection", "transfer-encoding", "keep-alive", "proxy-connection", "upgrade"}
        assert not (connection_specific | {"host"}) & set(names)
        headers = dict(seen["headers"])
        assert names.count("te") == 1 and headers["te"] == "trailers"
        assert names.count("content-type") == 1 and headers["content-type"] == "application/grpc"
        assert headers["k"] == "v"

    run(main())


def test_continuation_flood_ends_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        await peer.wait_request()
        writer.write(raw_frame(1, 0, 1, b"\x88"))  # HEADERS :status 200, no END_HEADERS
        for _ in range(10000):
            writer.write(raw_frame(9, 0, 1))  # empty CONTINUATION frames, never ending
        await writer.drain()
        await reader.read(65536)
        await asyncio.sleep(1)

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            start = time.monotonic()
            await expect_status(
                channel.unary_unary("/t/M")(b"x", timeout=10), grpc.StatusCode.INTERNAL, "CONTINUATION"
            )
            assert time.monotonic() - start < 3

    run(main())


def test_oversized_response_headers_fail_the_call_not_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        (sid,) = await peer.wait_request()
        peer.respond(sid, [b"x"], headers=[(f"h{i}", "v" * 1000) for i in range(20)])  # ~20 KB > 16 KiB
        while len(peer.ended) < 2:
            await peer.next_events()
        peer.respond(sorted(peer.ended)[1], [b"fine"])
        await peer.next_events()

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            method = channel.unary_unary("/t/M")
            await expect_status(method(b"x", timeout=5), grpc.StatusCode.INTERNAL, "header list")
            assert await method(b"y", timeout=5) == b"fine"
            assert server.connections == 1

    run(main())


@pytest.mark.parametrize(
    ("headers", "code", "text"),
    [
        ([(":status", "503")], grpc.StatusCode.UNAVAILABLE, "503"),
        ([(":status", "404"), ("content-type", "text/html")], grpc.StatusCode.UNIMPLEMENTED, "404"),
        ([(":status", "200"), ("content-type", "text/html")], grpc.StatusCode.UNKNOWN, "content-type"),
        ([(":status", "200"), ("content-type", "application/grpc")], grpc.StatusCode.UNKNOWN, "grpc-status"),
    ],
)
def test_non_grpc_replies_map_to_statuses(
    headers: list[tuple[str, str]], code: grpc.StatusCode, text: str
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        (sid,) = await peer.wait_request()
        peer.conn.send_headers(sid, headers, end_stream=True)
        peer.flush()
        await peer.next_events()

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target) as channel:
            await expect_status(channel.unary_unary("/t/M")(b"x", timeout=5), code, text)

    run(main())


def test_silent_server_fails_unavailable_within_the_connect_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        await asyncio.sleep(30)  # accepts, never speaks HTTP/2

    async def main() -> None:
        options = [("grpc.min_reconnect_backoff_ms", 500)]
        async with FakeServer(handler) as server, NativeChannel(server.target, options=options) as channel:
            start = time.monotonic()
            await expect_status(
                channel.unary_unary("/t/M")(b"x", timeout=20), grpc.StatusCode.UNAVAILABLE, "timed out"
            )
            assert time.monotonic() - start < 2

    run(main())


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        SERVER_SETTINGS + b"\x00\x00\x08\x07\x00\x00\x00\x00\x00garbage!",
        SERVER_SETTINGS + raw_frame(0, 0, 1, b"data before headers"),
        SERVER_SETTINGS + raw_frame(5, 4, 1, b"\x00\x00\x00\x02\x88"),  # PUSH_PROMISE (push disabled)
        SERVER_SETTINGS + raw_frame(1, 4, 1, b"\xff\xff\xff\xff"),  # undecodable HPACK
        SERVER_SETTINGS + raw_frame(8, 0, 0, struct.pack(">L", 2**31 - 1)),  # window overflow
    ],
    ids=["http1", "garbage", "data-before-headers", "push", "hpack", "window-overflow"],
)
def test_connection_garbage_ends_with_a_status(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        if index == 0:
            await reader.read(65536)  # before any stream
        else:
            await H2Peer(reader, writer).wait_request()  # on an open stream
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(0.5)

    async def main() -> None:
        async with FakeServer(handler) as server, NativeChannel(server.target, options=FAST) as channel:
            for _ in range(2):  # the first connection fails before any stream, the second on one
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary("/t/M")(b"x", timeout=10)
                assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
                await asyncio.sleep(0.3)  # past the reconnect backoff
            assert server.connections == 2

    run(main())


def test_keepalive_pings_only_with_open_calls_and_dead_peers_are_detected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pings: list[float] = []
    ack = {"on": True}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        peer = H2Peer(reader, writer)
        peer.conn.local_settings.acknowledge()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            for ev in peer.conn.receive_data(data):
                if isinstance(ev, h2.events.PingReceived):
                    pings.append(time.monotonic())
            out = peer.conn.data_to_send()
            if not ack["on"]:  # drop PING ACKs (type 6, flag 1): a peer that stopped answering
                out = _drop_ping_acks(out)
            writer.write(out)

    async def main() -> None:
        monkeypatch.setattr(native_options, "KEEPALIVE_FLOOR", 0.2)
        options = [("grpc.keepalive_time_ms", 200), ("grpc.keepalive_timeout_ms", 300)]
        async with FakeServer(handler) as server, NativeChannel(server.target, options=options) as channel:
            await channel.channel_ready()
            await asyncio.sleep(1.0)
            assert pings == []  # no calls open: no pings (grpc-go's PermitWithoutStream=false)
            call = channel.unary_stream("/t/M")(b"x")
            await asyncio.sleep(1.0)
            assert len(pings) >= 2  # an idle open call: pinged every interval
            assert not call.done()
            ack["on"] = False
            await expect_status(call.read(), grpc.StatusCode.UNAVAILABLE, "keepalive")

    run(main())


def _drop_ping_acks(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind, flags = data[pos + 3], data[pos + 4]
        if not (kind == 6 and flags & 1):
            out += data[pos : pos + 9 + length]
        pos += 9 + length
    return bytes(out)
