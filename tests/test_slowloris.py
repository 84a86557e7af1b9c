"""Slow-loris (issue 4): clients trickling their request head, or a Content-Length body, one byte every
200 ms hold connections open while normal clients make requests; the normal clients must not be starved
(all answered, p99 latency under a second), under both server choices of the serve command (uvicorn h11 +
wsproto, its default with streaming modules, and granian for the shop modules alone)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GatewayServer

ECHO = "/v1/metadata:echo"
SHOP_MODULES = ["shop.v1.shop_pb2_gateway_shop_service", "shop.v1.shop_pb2_gateway_shelf_admin_service"]
HEAD_TRICKLERS = 100
BODY_TRICKLERS = 50
TRICKLE_INTERVAL = 0.2  # seconds per byte
NORMAL_REQUESTS = 100
NORMAL_WORKERS = 10
NORMAL_PAUSE = 0.25  # between two requests of one worker: the normal load spreads over ~2.5 s
MAX_P99 = 1.0
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def granian(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command with only the shop modules: no WebSocket route, so it runs granian."""
    server = GatewayServer(gen_dir, backend.port, extra=SHOP_MODULES)
    yield server
    server.stop()


@dataclass
class Trickler:
    """One slow client: `data` goes out one byte per TRICKLE_INTERVAL (after `prefix` at once)."""

    prefix: bytes
    data: bytes
    sent: int = 0
    closed_by_server: bool = False
    writer: asyncio.StreamWriter | None = None
    answers: list[bytes] = field(default_factory=list)

    async def run(self, port: int, connected: asyncio.Event, stop: asyncio.Event) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        connected.set()
        self.writer.write(self.prefix)
        watch = asyncio.ensure_future(reader.read(65536))
        try:
            for byte in self.data:
                self.writer.write(bytes([byte]))
                await self.writer.drain()
                self.sent += 1
                done, _ = await asyncio.wait({watch}, timeout=TRICKLE_INTERVAL)
                if done or stop.is_set():
                    break
            if watch.done():
                answer = watch.result()
                self.answers.append(answer)
                self.closed_by_server = not answer
        except (ConnectionError, OSError):
            self.closed_by_server = True
        finally:
            watch.cancel()
            self.writer.transport.abort()


def head_trickler(index: int) -> Trickler:
    head = (
        f"POST {ECHO} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
        f"X-Slow-Loris: {index} {'z' * 200}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    return Trickler(b"", head)


def body_trickler(index: int) -> Trickler:
    body = json.dumps({"note": f"slow-{index} " + "z" * 900}).encode()
    head = (
        f"POST {ECHO} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return Trickler(head, body)


async def normal_request(port: int, note: str) -> tuple[float, int, bytes]:
    """POST /v1/metadata:echo on a new connection: (seconds from connect to the whole answer, status,
    body)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        body = json.dumps({"note": note}).encode()
        writer.write(
            f"POST {ECHO} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = int(head.split(" ", 2)[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in head.split("\r\n")
            if line.lower().startswith("content-length:")
        )
        answer = await reader.readexactly(length)
        return time.monotonic() - started, status, answer
    finally:
        writer.transport.abort()


@dataclass
class Outcome:
    latencies: list[float]
    statuses: list[int]
    notes: list[str]
    tricklers: list[Trickler]
    seconds: float

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def scenario(port: int) -> Outcome:
    stop = asyncio.Event()
    tricklers = [head_trickler(i) for i in range(HEAD_TRICKLERS)]
    tricklers += [body_trickler(i) for i in range(BODY_TRICKLERS)]
    connected = [asyncio.Event() for _ in tricklers]
    begin = time.monotonic()
    slow = [asyncio.ensure_future(t.run(port, c, stop)) for t, c in zip(tricklers, connected, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), TIMEOUT)
        await asyncio.sleep(3 * TRICKLE_INTERVAL)  # every slow client is mid-head or mid-body now
        latencies: list[float] = []
        statuses: list[int] = []
        notes: list[str] = []

        async def worker(w: int) -> None:
            for i in range(NORMAL_REQUESTS // NORMAL_WORKERS):
                note = f"normal-{w}-{i}"
                seconds, status, answer = await normal_request(port, note)
                latencies.append(seconds)
                statuses.append(status)
                notes.append(json.loads(answer).get("note", "") if status == 200 else answer.decode())
                assert notes[-1] == note or status != 200, (notes[-1], note)
                await asyncio.sleep(NORMAL_PAUSE)

        await asyncio.wait_for(asyncio.gather(*(worker(w) for w in range(NORMAL_WORKERS))), TIMEOUT)
    finally:
        stop.set()
        await asyncio.gather(*slow, return_exceptions=True)
    return Outcome(latencies, statuses, notes, tricklers, time.monotonic() - begin)


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_slow_loris_does_not_starve_others(request: pytest.FixtureRequest, backend: Any, server: str) -> None:
    gateway: GatewayServer = request.getfixturevalue("uvicorn_gateway" if server == "uvicorn" else "granian")
    backend.reset()
    outcome = asyncio.run(scenario(gateway.port))
    dropped = sum(t.closed_by_server for t in outcome.tricklers)
    answered = sum(bool(t.answers and t.answers[0]) for t in outcome.tricklers)
    print(
        f"\n{server}: {NORMAL_REQUESTS} normal requests next to {HEAD_TRICKLERS} + {BODY_TRICKLERS} slow "
        f"clients: p50 {outcome.percentile(0.5) * 1000:.0f} ms, "
        f"p99 {outcome.percentile(0.99) * 1000:.0f} ms, "
        f"max {max(outcome.latencies) * 1000:.0f} ms; slow clients closed by the server {dropped}, answered "
        f"{answered}; {outcome.seconds:.1f} s"
    )
    assert outcome.statuses == [200] * NORMAL_REQUESTS
    assert outcome.percentile(0.99) < MAX_P99
    # None of the slow requests was complete, so none reached the backend.
    notes = [getattr(call.request, "note", "") for call in backend.recorder.calls]
    assert sorted(notes) == sorted(outcome.notes)
    assert answered == 0
    # After they are gone, the gateway still answers at once.
    seconds, status, _ = asyncio.run(normal_request(gateway.port, "after"))
    assert status == 200 and seconds < MAX_P99
