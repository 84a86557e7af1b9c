"""Probe: granian's embedded server lets the app end WebSocket streams before granian stops.

    python bench/probes/granian_embed_shutdown.py

Where granian_ws_shutdown.py shows that the granian command stops connection I/O before the app hears of
the shutdown, this runs granian embedded (`granian.server.embed.Server`, in the app's own event loop) and
handles SIGTERM itself: first end the streams (the final message, close 1001), wait until none is open,
then stop granian. Result with granian 2.8.9 (2026-11-27): the client receives the final message and a
clean 1001, and the process exits 0. granian logs "Embedded server is experimental!". A trivial ASGI app
cost 79-106 µs of CPU per request embedded, against 54-64 under the granian command and 127-139 under
uvicorn h11 + wsproto (wrk -t1 -c32, the same hour): a path for WebSocket modules, not yet taken.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import granian_ws_shutdown as probe  # the same app: streams that end on `_stopping`


async def serve(port: int) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    server = Server(
        probe.app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=True,
    )

    async def graceful() -> None:
        # What the serve command would do: Gateway.shutdown(), wait for open streams, then stop granian.
        if probe._stopping is None:
            probe._stopping = asyncio.Event()
        probe._stopping.set()
        for _ in range(100):
            if not probe._streams:
                break
            await asyncio.sleep(0.02)
        print("  app: streams drained:", not probe._streams, file=sys.stderr)
        server.stop()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(graceful()))
    await server.serve()


def main() -> None:
    from websockets.sync.client import connect

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
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
        print("server exit status", server.wait(10))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(int(sys.argv[2])))
    else:
        main()
