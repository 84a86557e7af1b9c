"""Probe: can an ASGI app end its WebSocket streams cleanly when granian shuts down?

    python bench/probes/granian_ws_shutdown.py

Starts granian (`--interface asgi --http 1 --ws`) on this file's `app`, opens a WebSocket, sends SIGTERM
and prints what the client receives. The app ends its streams on `lifespan.shutdown` with a final
message and close 1001. The answer with granian 2.8.9 (2026-11-27): no. lifespan.shutdown arrives after
granian stopped the connections' I/O: the final send never reaches the client, which sees close code
1006 about two seconds later. This is why the serve command keeps uvicorn for WebSocket routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_streams: set[object] = set()
_stopping: asyncio.Event | None = None


def _log(*parts: object) -> None:
    print(f"  app {time.monotonic():.3f}", *parts, file=sys.stderr, flush=True)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _stopping
    if _stopping is None:
        _stopping = asyncio.Event()
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            _log(event["type"])
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                _stopping.set()
                for _ in range(100):  # let the streams send their final message (up to 2 s)
                    if not _streams:
                        break
                    await asyncio.sleep(0.02)
                _log("streams still open at shutdown.complete:", len(_streams))
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        token = object()
        _streams.add(token)
        try:
            n = 0
            while not _stopping.is_set():
                await send({"type": "websocket.send", "text": f"msg {n}"})
                n += 1
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(_stopping.wait(), 0.2)
            _log("sending the final message")
            await send({"type": "websocket.send", "text": "FINAL"})
            await send({"type": "websocket.close", "code": 1001})
            _log("closed with 1001")
        finally:
            _streams.discard(token)


def main() -> None:
    from websockets.sync.client import connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "asgi", "--http", "1", "--ws", "--host", "127.0.0.1",
         "--port", str(port), "granian_ws_shutdown:app"],
        cwd=Path(__file__).parent,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        with connect(f"ws://127.0.0.1:{port}/x") as ws:
            print("client got", ws.recv(timeout=5))
            server.send_signal(signal.SIGTERM)
            start = time.monotonic()
            try:
                while True:
                    print("client got", ws.recv(timeout=5), f"after {time.monotonic() - start:.3f} s")
            except Exception as err:  # the close, clean or not
                print(
                    "client saw",
                    repr(err),
                    "close code",
                    ws.close_code,
                    f"after {time.monotonic() - start:.3f} s",
                )
    finally:
        server.wait(10)


if __name__ == "__main__":
    main()
