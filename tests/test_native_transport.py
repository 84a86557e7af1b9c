"""The native gRPC transport against a real grpc.aio server over a real loopback socket
(tests/native_backend.py in a subprocess): every call kind, metadata, errors, deadlines, cancellation,
limits, flow control, MAX_CONCURRENT_STREAMS, graceful stop, a killed server, reconnects, DNS, TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from protoc_gen_pygateway.runtime.native import EOF, NativeChannel, NativeRpcError
from protoc_gen_pygateway.runtime.native import options as native_options
from tests.native_go import go_available
from tests.native_support import Backend, free_port, make_ca, run

MB = 1024 * 1024

#: Every test runs against grpc.aio (grpc core) and grpc-go servers.
KINDS = [
    "aio",
    pytest.param(
        "go", marks=pytest.mark.skipif(not go_available(), reason="golang-go / grpc-go not installed")
    ),
]


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def backend(kind: str) -> Iterator[Backend]:
    server = Backend(go=kind == "go")
    yield server
    server.kill()


def stats(text: bytes) -> dict[str, int]:
    return {k: int(v) for k, v in (part.split("=") for part in text.decode().split())}


async def get_stats(channel: NativeChannel) -> dict[str, int]:
    return stats(await channel.unary_unary("/test.Echo/Stats")(b""))


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_unary_with_metadata_both_ways(backend: Backend, uvloop: bool) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            method = channel.unary_unary("/test.Echo/Unary")
            metadata = (("echo-text", "hello world"), ("echo-data-bin", b"\x00\x01\xfe\xff"), ("other", "x"))
            call = method(b"payload", metadata=metadata, timeout=10)
            assert await call == b"payload"
            initial = await call.initial_metadata()
            trailing = await call.trailing_metadata()
            assert isinstance(initial, grpc.aio.Metadata)
            # (grpc-go sends a map: the order of distinct keys is not kept)
            assert sorted(initial) == [("echo-data-bin", b"\x00\x01\xfe\xff"), ("echo-text", metadata[0][1])]
            assert list(trailing) == [("echo-data-bin", b"\x00\x01\xfe\xff")]
            assert await call.code() is grpc.StatusCode.OK
            assert await call.details() == ""
            assert call.done() and not call.cancel()
            # Serializers / deserializers are used as grpc.aio uses them.
            typed = channel.unary_unary(
                "/test.Echo/Unary", request_serializer=str.encode, response_deserializer=bytes.decode
            )
            assert await typed("text") == "text"

    run(main(), uvloop=uvloop)


def test_error_is_aio_rpc_error_with_details_in_trailers(backend: Backend) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            call = channel.unary_unary("/test.Echo/Fail")(b"5:no such thing (100%)")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            err = info.value
            assert isinstance(err, NativeRpcError)
            assert err.code() is grpc.StatusCode.NOT_FOUND
            assert err.details() == "no such thing (100%)"  # grpc-message percent-decoding
            # Trailers-only response: no initial metadata; the details blob passed through as bytes.
            assert list(err.initial_metadata()) == []
            trailing = dict(err.trailing_metadata())
            assert trailing["extra-bin"] == b"\x00\xff"
            details = trailing["grpc-status-details-bin"]
            if backend.go:  # grpc-go builds it from the status proto
                status = status_pb2.Status.FromString(details)
                assert status.code == 5 and status.details[0].value == b"details:no such thing (100%)"
            else:
                assert details == b"details:no such thing (100%)"
            assert await call.code() is grpc.StatusCode.NOT_FOUND
            assert list(await call.initial_metadata()) == []

    run(main())


def test_unimplemented_method(backend: Backend) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Echo/Nope")(b"")
            assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED

    run(main())


@pytest.mark.parametrize("uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_streaming_kinds(backend: Backend, uvloop: bool) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            # server streaming: read() until EOF, and async for
            call = channel.unary_stream("/test.Echo/ServerStream")(b"5:8:0")
            got = []
            while (item := await call.read()) is not EOF:
                got.append(item)
            assert got == [f"{i}:".encode().ljust(8, b"s") for i in range(5)]
            assert await call.read() is EOF
            assert [m async for m in channel.unary_stream("/test.Echo/ServerStream")(b"3:4:0")] == [
                b"0:ss",
                b"1:ss",
                b"2:ss",
            ]
            # messages sent before a failure status are all read first, then the status is raised
            call = channel.unary_stream("/test.Echo/ServerStream")(b"3:4:0:9")
            assert [await call.read() for _ in range(3)] == [b"0:ss", b"1:ss", b"2:ss"]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()
            assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            # client streaming: write, done_writing, await; and with a request iterator
            client = channel.stream_unary("/test.Echo/ClientStream")
            call = client()
            for size in (1, 10, 100):
                await call.write(b"x" * size)
            await call.done_writing()
            assert await call == b"3:111"

            async def gen() -> Any:
                for _ in range(4):
                    yield b"ab"

            assert await client(gen()) == b"4:8"
            assert await client(iter([b"a", b"b"])) == b"2:2"
            # bidi: interleaved, then an error status from the server
            bidi = channel.stream_stream("/test.Echo/Bidi")()
            for word in (b"one", b"two"):
                await bidi.write(word)
                assert await bidi.read() == word
            await bidi.write(b"fail")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await bidi.read()
            assert info.value.code() is grpc.StatusCode.ABORTED
            bidi = channel.stream_stream("/test.Echo/Bidi")()
            await bidi.write(b"x")
            await bidi.done_writing()
            assert [m async for m in bidi] == [b"x"]
            assert await bidi.code() is grpc.StatusCode.OK

    run(main(), uvloop=uvloop)


def test_deadline_sent_enforced_and_cancels_the_server(backend: Backend) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            seen = float(await channel.unary_unary("/test.Echo/Deadline")(b"", timeout=7.5))
            assert 6.5 < seen <= 7.5  # grpc-timeout reached the server
            assert await channel.unary_unary("/test.Echo/Deadline")(b"") == b"none"
            before = (await get_stats(channel))["cancelled"]
            start = time.monotonic()
            call = channel.unary_unary("/test.Echo/Sleep")(b"10", timeout=0.3)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            elapsed = time.monotonic() - start
            assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.25 < elapsed < 2.0
            # A streaming call past its deadline: the read fails the same way.
            stream = channel.unary_stream("/test.Echo/ServerStream")(b"100:4:100", timeout=0.3)
            assert await stream.read() == b"0:ss"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while await stream.read() is not EOF:
                    pass
            assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            for _ in range(50):  # RST_STREAM CANCEL reached the server: both handlers were cancelled
                if (await get_stats(channel))["cancelled"] >= before + 2:
                    break
                await asyncio.sleep(0.05)
            assert (await get_stats(channel))["cancelled"] >= before + 2
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Echo/Unary")(b"", timeout=0)
            assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    run(main())


def test_cancel_sends_rst_stream(backend: Backend) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            before = (await get_stats(channel))["cancelled"]
            call = channel.unary_unary("/test.Echo/Sleep")(b"10")
            await asyncio.sleep(0.2)
            assert call.cancel() is True
            assert call.cancel() is False
            with pytest.raises(asyncio.CancelledError):
                await call
            assert call.cancelled() and await call.code() is grpc.StatusCode.CANCELLED
            stream = channel.unary_stream("/test.Echo/ServerStream")(b"1000:4:2000")
            assert await stream.read() == b"0:ss"
            reader = asyncio.ensure_future(stream.read())
            await asyncio.sleep(0.05)
            stream.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reader
            # A task cancelled while awaiting a call cancels the call (as grpc.aio does).
            sleeper = channel.unary_unary("/test.Echo/Sleep")(b"10")
            task = asyncio.ensure_future(sleeper)
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert sleeper.cancelled()
            for _ in range(50):
                if (await get_stats(channel))["cancelled"] >= before + 3:
                    break
                await asyncio.sleep(0.05)
            assert (await get_stats(channel))["cancelled"] >= before + 3
            assert (await get_stats(channel))["active"] == 0

    run(main())


def test_message_size_limits_both_ways(backend: Backend) -> None:
    async def main() -> None:
        options = [("grpc.max_receive_message_length", 1000), ("grpc.max_send_message_length", 2000)]
        async with NativeChannel(backend.target, options=options) as channel:
            assert await channel.unary_unary("/test.Echo/Big")(b"1000") == b"b" * 1000
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Echo/Big")(b"1001")
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1001 vs. 1000" in (info.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Echo/Unary")(b"x" * 2001)
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            call = channel.stream_unary("/test.Echo/ClientStream")()
            await call.write(b"x" * 2000)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.write(b"x" * 2001)
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            # The connection is fine afterwards.
            assert await channel.unary_unary("/test.Echo/Unary")(b"ok") == b"ok"
        async with NativeChannel(backend.target) as channel:  # grpc's default: 4 MiB received
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Echo/Big")(str(4 * MB + 1).encode())
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    run(main())


def test_16mb_messages(backend: Backend) -> None:
    async def main() -> None:
        options = [("grpc.max_receive_message_length", 32 * MB)]
        async with NativeChannel(backend.target, options=options) as channel:
            payload = bytes(range(256)) * (16 * MB // 256)
            assert await channel.unary_unary("/test.Echo/Unary")(payload, timeout=60) == payload
            assert await channel.unary_unary("/test.Echo/Big")(str(16 * MB).encode(), timeout=60) == b"b" * (
                16 * MB
            )
            sizes = [
                len(m)
                async for m in channel.unary_stream("/test.Echo/ServerStream")(f"3:{16 * MB}:0".encode())
            ]
            assert sizes == [16 * MB] * 3
            call = channel.stream_unary("/test.Echo/ClientStream")()
            for _ in range(2):
                await call.write(payload)
            await call.done_writing()
            assert await call == f"2:{32 * MB}".encode()

    run(main(), timeout=120)


def test_slow_reader_has_bounded_memory(backend: Backend) -> None:
    async def main() -> None:
        window = 256 * 1024
        options = [("pygateway.native.stream_window", window)]
        async with NativeChannel(backend.target, options=options) as channel:
            size, count = 16 * 1024, 2000  # 32 MB sent flat out by the server
            call = channel.unary_stream("/test.Echo/ServerStream")(f"{count}:{size}:0".encode())
            assert await call.read() is not EOF
            await asyncio.sleep(1.0)  # not reading: the server must stop at the stream window
            queued = sum(n for _, n in call._messages)
            assert queued <= window + size + 5, queued
            # Another call on the same connection is not stuck behind the slow reader.
            assert await channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5) == b"x"
            got = 1
            while await call.read() is not EOF:
                got += 1
                if got % 200 == 0:
                    assert sum(n for _, n in call._messages) <= window + size + 5
            assert got == count

    run(main())


def test_fast_writer_has_bounded_memory(backend: Backend) -> None:
    async def main() -> None:
        options = [("pygateway.native.write_buffer", 64 * 1024)]
        async with NativeChannel(backend.target, options=options) as channel:
            call = channel.stream_unary("/test.Echo/ClientStream")()
            for _ in range(300):  # 19 MB, far beyond every HTTP/2 window
                await call.write(b"w" * 65536)
                assert call._conn is not None
                assert call._conn.core.buffered(call._sid) <= 64 * 1024 + 65536 + 5
            await call.done_writing()
            assert await call == f"300:{300 * 65536}".encode()

    run(main())


def test_10000_concurrent_calls_behind_max_concurrent_streams_100(kind: str) -> None:
    server = Backend(go=kind == "go", max_concurrent_streams=100)
    try:

        async def main() -> None:
            async with NativeChannel(server.target) as channel:
                sleep = channel.unary_unary("/test.Echo/Sleep")
                unary = channel.unary_unary("/test.Echo/Unary")
                calls = [
                    sleep(b"0.005", timeout=60) if i % 2 else unary(str(i).encode(), timeout=60)
                    for i in range(10000)
                ]
                results = await asyncio.gather(*calls)
                assert all(r == (b"slept" if i % 2 else str(i).encode()) for i, r in enumerate(results))
                seen = await get_stats(channel)
                assert 1 <= seen["peak"] <= 100, seen

        run(main(), timeout=180)
    finally:
        server.kill()


def test_graceful_server_stop_mid_flight(kind: str) -> None:
    port = free_port()
    server = Backend(go=kind == "go", grace=5, port=port)
    try:

        async def main() -> None:
            async with NativeChannel(
                server.target, options=[("grpc.initial_reconnect_backoff_ms", 200)]
            ) as channel:
                sleep = channel.unary_unary("/test.Echo/Sleep")
                calls = [asyncio.ensure_future(sleep(b"1.0", timeout=20)) for _ in range(20)]
                stream = channel.unary_stream("/test.Echo/ServerStream")(b"10:4:100", timeout=20)
                await asyncio.sleep(0.3)
                await asyncio.to_thread(server.terminate, False)  # GOAWAY, in-flight calls may finish
                assert await asyncio.gather(*calls) == [b"slept"] * 20
                assert len([m async for m in stream]) == 10
                await asyncio.to_thread(server.wait)
                start = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary("/test.Echo/Unary")(b"x", timeout=10)
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() - start < 2.5  # no hang on a dead upstream
                await asyncio.to_thread(server.start)
                for _ in range(100):
                    try:
                        assert await channel.unary_unary("/test.Echo/Unary")(b"back", timeout=5) == b"back"
                        break
                    except grpc.aio.AioRpcError as err:
                        assert err.code() is grpc.StatusCode.UNAVAILABLE
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError("never reconnected")

        run(main())
    finally:
        server.kill()


def test_server_killed_mid_stream(kind: str) -> None:
    server = Backend(go=kind == "go")
    try:

        async def main() -> None:
            async with NativeChannel(server.target) as channel:
                stream = channel.unary_stream("/test.Echo/ServerStream")(b"10000:16:10")
                sleeper = channel.unary_unary("/test.Echo/Sleep")(b"30")
                writer = channel.stream_stream("/test.Echo/Bidi")()
                await writer.write(b"hello")
                assert await writer.read() == b"hello"
                for _ in range(5):
                    assert await stream.read() is not EOF
                start = time.monotonic()
                await asyncio.to_thread(server.kill)
                for call in (stream, writer):
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        while await call.read() is not EOF:
                            pass
                    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await sleeper
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await writer.write(b"more")
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() - start < 5

        run(main())
    finally:
        server.kill()


def test_reconnect_backoff_then_recovery(kind: str) -> None:
    port = free_port()
    server = Backend(go=kind == "go", port=port)
    try:

        async def main() -> None:
            options = [("grpc.initial_reconnect_backoff_ms", 1000), ("grpc.max_reconnect_backoff_ms", 2000),
                       ("grpc.min_reconnect_backoff_ms", 2000)]  # fmt: skip
            async with NativeChannel(server.target, options=options) as channel:
                unary = channel.unary_unary("/test.Echo/Unary")
                assert await unary(b"1") == b"1"
                await asyncio.to_thread(server.kill)
                start = time.monotonic()
                for _ in range(5):  # the first fails on connecting, the next ones at once (backoff)
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await unary(b"2", timeout=10)
                    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                    assert "127.0.0.1" in (info.value.details() or "")
                assert time.monotonic() - start < 1.0
                await asyncio.to_thread(server.start)
                start = time.monotonic()
                while True:
                    try:
                        assert await unary(b"3", timeout=5) == b"3"
                        break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.05)
                    assert time.monotonic() - start < 4.0, "no reconnect within the backoff"

        run(main())
    finally:
        server.kill()


def test_nothing_listening_fails_unavailable_at_once() -> None:
    async def main() -> None:
        async with NativeChannel(f"127.0.0.1:{free_port()}") as channel:
            start = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_stream("/test.Echo/ServerStream")(b"1:1:0").read()
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "failed to connect" in (info.value.details() or "")
            assert time.monotonic() - start < 2
        async with NativeChannel("no-such-host.invalid:50051") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary("/test.Echo/Unary")(b"")
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "DNS" in (info.value.details() or "")

    run(main())


def test_dns_round_robin_and_re_resolution(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    port = free_port()
    with socket.socket() as probe:  # 127.0.0.2 is loopback on Linux; it must be free there too
        probe.bind(("127.0.0.2", port))
    first = Backend(host="127.0.0.1", port=port, go=kind == "go")
    try:
        second = Backend(host="127.0.0.2", port=port, go=kind == "go")
    except Exception:
        first.kill()
        raise
    answer = ["127.0.0.1", "127.0.0.2"]

    real_getaddrinfo: list[Any] = []

    async def fake_getaddrinfo(self: Any, host: str, port_: int, **kwargs: Any) -> list[Any]:
        if host != "upstream.test":
            return await real_getaddrinfo[0](self, host, port_, **kwargs)  # type: ignore[no-any-return]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port_)) for ip in answer]

    try:

        async def main() -> None:
            loop = asyncio.get_running_loop()
            real_getaddrinfo.append(type(loop).getaddrinfo)
            monkeypatch.setattr(type(loop), "getaddrinfo", fake_getaddrinfo)
            options = [("pygateway.native.dns_refresh_s", 0.3)]
            async with NativeChannel(f"dns:///upstream.test:{port}", options=options) as channel:
                unary = channel.unary_unary("/test.Echo/Unary")
                await channel.channel_ready()
                await asyncio.sleep(0.3)  # the second address connects in the background
                for i in range(40):
                    assert await unary(str(i).encode()) == str(i).encode()
                direct = [NativeChannel(b.target) for b in (first, second)]
                counts = [(await get_stats(c))["calls"] for c in direct]
                assert all(n >= 10 for n in counts) and sum(counts) == 40, counts
                # The service shrinks to the second address: after the refresh, calls go there only.
                answer[:] = ["127.0.0.2"]
                await asyncio.sleep(0.4)
                await unary(b"trigger")  # the refresh happens on use
                await asyncio.sleep(0.3)
                for _ in range(20):
                    await unary(b"again")
                after = [(await get_stats(c))["calls"] for c in direct]
                assert after[0] - counts[0] <= 1 and after[1] - counts[1] >= 20, (counts, after)
                for c in direct:
                    await c.close()

        run(main())
    finally:
        first.kill()
        second.kill()


def test_tls_with_a_test_ca(tmp_path: Path, kind: str) -> None:
    ca, key, cert = make_ca(tmp_path)
    server = Backend(go=kind == "go", tls=(key, cert))
    try:

        async def main() -> None:
            context = ssl.create_default_context(cafile=str(ca))
            async with NativeChannel(f"localhost:{server.port}", ssl_context=context) as channel:
                assert await channel.unary_unary("/test.Echo/Unary")(b"secure") == b"secure"
                assert [m async for m in channel.unary_stream("/test.Echo/ServerStream")(b"2:3:0")] == [
                    b"0:s",
                    b"1:s",
                ]
            untrusted = ssl.create_default_context()  # system CAs only: the test CA is not among them
            async with NativeChannel(f"localhost:{server.port}", ssl_context=untrusted) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary("/test.Echo/Unary")(b"x")
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                assert "CERTIFICATE_VERIFY_FAILED" in (info.value.details() or "")
            async with NativeChannel(f"127.0.0.1:{server.port}") as channel:  # cleartext to a TLS port
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5)
                assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)

        run(main())
    finally:
        server.kill()


def test_compression_refused_clearly(backend: Backend) -> None:
    async def main() -> None:
        async with NativeChannel(backend.target) as channel:
            method = channel.unary_unary("/test.Echo/Unary")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await method(b"x", metadata=(("grpc-encoding", "gzip"),))
            assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
            assert "identity" in (info.value.details() or "")
            with pytest.raises(ValueError, match="identity"):
                method(b"x", compression=grpc.Compression.Gzip)

    run(main())


def test_keepalive_interval_never_below_grpc_go_enforcement() -> None:
    # grpc-go's default EnforcementPolicy: pings closer than 5 minutes are strikes -> too_many_pings.
    assert native_options._Options([("grpc.keepalive_time_ms", 30000)]).keepalive == 300.0
    assert native_options._Options([]).keepalive == 300.0
    assert native_options._Options([("grpc.keepalive_time_ms", 600000)]).keepalive == 600.0
    assert native_options._Options([("grpc.keepalive_time_ms", 0)]).keepalive == 0.0
