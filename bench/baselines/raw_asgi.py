"""Baseline (calibration): the leanest hand-written raw ASGI handler (json_format + grpc.aio).

Copied from ../shared/anchors/python-baselines/raw_asgi.py (POST /v1/echo); adapted: the bench.v1 stubs come
from PYTHONPATH, the upstream from UPSTREAM, and `GET /v1/echo/{id}` is answered too (id = the rest of the
path, nothing else checked). Served by `bench/run.py` with uvicorn's defaults (httptools + uvloop).
"""

import os

import grpc
from bench.v1 import bench_pb2, bench_pb2_grpc
from google.protobuf import json_format

_stub = None
_HDRS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    global _stub
    if scope["type"] != "http":
        return
    if _stub is None:
        _stub = bench_pb2_grpc.EchoServiceStub(
            grpc.aio.insecure_channel(os.environ.get("UPSTREAM", "127.0.0.1:50051"))
        )
    if scope["method"] == "GET":
        request = bench_pb2.EchoRequest(id=scope["path"][len("/v1/echo/") :])
    else:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        request = json_format.Parse(body, bench_pb2.EchoRequest())
    resp = await _stub.Echo(request)
    out = json_format.MessageToJson(resp, indent=None).encode()
    await send({"type": "http.response.start", "status": 200, "headers": _HDRS})
    await send({"type": "http.response.body", "body": out})
