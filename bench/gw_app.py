"""ASGI entry point for the serving benchmark: every gateway module of gen/ combined into one app.

The grpc.aio channel (and so the app) is created inside the server's event loop: on `lifespan.startup`
when the server runs lifespan (granian), otherwise on the first request (uvicorn with lifespan off).
Env: PYGW_UPSTREAM (host:port of the gRPC backend), PYGW_GEN (the generated tree, default ../gen).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

GEN = Path(os.environ.get("PYGW_GEN", Path(__file__).resolve().parent.parent / "gen")).resolve()
if str(GEN) not in sys.path:
    sys.path.insert(0, str(GEN))

import grpc.aio  # noqa: E402
import pygateway_runtime as _rt  # noqa: E402
from pygateway_runtime.serve import discover  # noqa: E402

MODULES = [importlib.import_module(name) for name in discover(GEN)]


class LazyGateway:
    def __init__(self) -> None:
        self.app = None

    def _build(self):
        channel = grpc.aio.insecure_channel(
            os.environ["PYGW_UPSTREAM"], options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)]
        )
        self.app = _rt.combine(*[m.create_app(channel) for m in MODULES])
        return self.app

    async def __call__(self, scope, receive, send):
        app = self.app or self._build()
        await app(scope, receive, send)


app = LazyGateway()
