"""Calibration: the HTTP server alone. A trivial ASGI app that reads the request body and answers the
bench's reply bytes, with no upstream call and no gateway code; `make bench` serves it with the serve
command's server (bench/baselines/embedded.py). Its CPU per request plus grpcio's floor
(bench/grpc_floor.py) is the least any Python gateway on grpcio can cost under that server."""

from typing import Any

_REPLY = b'{"id":"abc","message":"hello","num":"42","tags":["a","b"],"labels":{"k":"v"}}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_REPLY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _REPLY})
