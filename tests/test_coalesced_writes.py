"""The serve command's uvicorn protocol sends the writes of one event-loop iteration as one
(runtime/servers.py `_CoalescedWrites`: a unary response's head and body in one write syscall), on real
uvloop and asyncio transports over a socketpair, and end to end through the serve command."""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from protoc_gen_pygateway.runtime.servers import _CoalescedWrites
from tests.conftest import GatewayServer


def _loops() -> list[Callable[[Coroutine[Any, Any, None]], None]]:
    runners: list[Callable[[Coroutine[Any, Any, None]], None]] = [asyncio.run]
    try:
        import uvloop
    except ImportError:
        return runners
    return [*runners, uvloop.run]


async def _pair() -> tuple[_CoalescedWrites, asyncio.Transport, socket.socket]:
    ours, peer = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    peer.setblocking(False)
    return _CoalescedWrites(transport, asyncio.get_running_loop()), transport, peer


def _recv_all(peer: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks) + b"<EOF>"
        chunks.append(chunk)


@pytest.mark.parametrize("run", _loops(), ids=lambda r: r.__module__)
def test_writes_of_one_iteration_leave_together(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        writes, transport, peer = await _pair()
        writes.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        writes.write(b"")  # zttp's end of message: nothing to send
        writes.write(b"{}")
        assert writes.get_write_buffer_size() == 40  # held until the iteration ends ...
        assert _recv_all(peer) == b""
        await asyncio.sleep(0)  # ... then sent at once, in order
        assert _recv_all(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
        assert writes.get_write_buffer_size() == 0
        # the next iteration's writes are a new batch: nothing waits for a later write
        writes.write(b"next")
        await asyncio.sleep(0)
        assert _recv_all(peer) == b"next"
        # what the protocol reads off the transport is the real transport's
        assert writes.get_extra_info("socket") is transport.get_extra_info("socket")
        assert writes.is_closing() is False
        # close sends what is held first
        writes.write(b"last words")
        writes.close()
        await asyncio.sleep(0.05)
        assert _recv_all(peer) == b"last words<EOF>"
        assert writes.is_closing() is True
        writes.write(b"after close")  # dropped, no error (the transport is closing)
        await asyncio.sleep(0)
        peer.close()

    run(main())


@pytest.mark.parametrize("run", _loops(), ids=lambda r: r.__module__)
def test_abort_drops_what_is_held(run: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        writes, _, peer = await _pair()
        writes.write(b"never sent")
        writes.abort()
        await asyncio.sleep(0.05)
        assert _recv_all(peer) == b"<EOF>"
        peer.close()

    run(main())


def _segments_in(sock: socket.socket) -> int:
    """TCP segments this socket has received (Linux struct tcp_info's tcpi_segs_in, at byte 140)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int.from_bytes(info[140:144], sys.byteorder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tcp_info's segment counter is Linux's")
def test_served_response_arrives_as_one_segment(gateway: GatewayServer) -> None:
    """End to end: the serve command (default server: uvicorn + zttp) writes a unary response's head and
    body as one TCP segment (two before: head, then body), counted by the client's kernel."""
    host, port = gateway.url.removeprefix("http://").split(":")
    request = b"GET /v1/shelves/1/books HTTP/1.1\r\nHost: x\r\n\r\n"
    counts = []
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(15):
            before = _segments_in(sock)
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
                chunk = sock.recv(65536)
                assert chunk, "connection closed"
                data += chunk
            time.sleep(0.05)  # a late pure ACK, if any, is counted in this round
            counts.append(_segments_in(sock) - before)
            assert data.startswith(b"HTTP/1.1 ")
    assert statistics.median(counts) == 1, counts


def _length(data: bytes) -> int:
    head = data.partition(b"\r\n\r\n")[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    raise AssertionError(f"no content-length in {head!r}")
