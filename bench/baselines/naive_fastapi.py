"""Baseline: what a Python user writes by hand instead of a generated gateway: FastAPI + json_format +
grpc.aio.

Copied from ../shared/anchors/python-baselines/naive_fastapi.py; imports adapted: the bench.v1 stubs come
from PYTHONPATH (the generated bench tree), the upstream from UPSTREAM. Served by `bench/run.py` with
uvicorn's defaults (httptools + uvloop when installed), access log off.
"""

import os

import grpc
from bench.v1 import bench_pb2, bench_pb2_grpc
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format

app = FastAPI()
_stub = None


def stub():
    global _stub
    if _stub is None:
        _stub = bench_pb2_grpc.EchoServiceStub(
            grpc.aio.insecure_channel(os.environ.get("UPSTREAM", "127.0.0.1:50051"))
        )
    return _stub


@app.post("/v1/echo")
async def echo(request: Request):
    msg = json_format.Parse(await request.body(), bench_pb2.EchoRequest())
    resp = await stub().Echo(msg)
    return JSONResponse(json_format.MessageToDict(resp))


@app.get("/v1/echo/{id}")
async def echo_get(id: str):
    resp = await stub().Echo(bench_pb2.EchoRequest(id=id))
    return JSONResponse(json_format.MessageToDict(resp))
