"""Serve an ASGI app as the serve command serves a gateway: granian embedded in a uvloop event loop,
HTTP/1.1, WebSocket on, the command's backlog and backpressure.

    python bench/baselines/embedded.py MODULE:APP PORT    # MODULE importable from this folder
"""

import asyncio
import importlib
import signal
import sys
from pathlib import Path


async def serve(target: str, port: int) -> None:
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    module, _, name = target.partition(":")
    app = getattr(importlib.import_module(module), name)
    server = Server(
        app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGINL,
        http=HTTPModes.http1,
        websockets=True,
        backlog=1024,
        backpressure=4096,
        log_level=LogLevels.warning,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.stop)
    await server.serve()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(sys.argv[1], int(sys.argv[2])))
    else:
        uvloop.run(serve(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    main()
