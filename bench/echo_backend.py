"""The Python upstream for `make bench` when the Go backend is not built: bench.v1.EchoService on grpc.aio.

Behaves like ../shared/anchors/grpc-gateway-go/server/main.go for the benchmark's requests: Echo returns the
request's fields, Stream sends `count` messages {id: "s", message, seq} `interval_ms` apart.

    python bench/echo_backend.py GEN_DIR HOST:PORT      (GEN_DIR holds bench/v1/bench_pb2*.py)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

sys.path.insert(0, sys.argv[1])

import grpc
from bench.v1 import bench_pb2, bench_pb2_grpc  # type: ignore[import-not-found]


class EchoService(bench_pb2_grpc.EchoServiceServicer):  # type: ignore[misc]
    async def Echo(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:  # noqa: N802
        if request.id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, f'echo id "{request.id}" not found')
        return bench_pb2.EchoResponse(
            id=request.id, message=request.message, num=request.num, tags=request.tags, labels=request.labels
        )

    async def Stream(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        for seq in range(1, request.count + 1):
            if seq > 1 and request.interval_ms > 0:
                await asyncio.sleep(request.interval_ms / 1000)
            yield bench_pb2.EchoResponse(id="s", message=request.message, seq=seq)


async def main(address: str) -> None:
    server = grpc.aio.server()
    bench_pb2_grpc.add_EchoServiceServicer_to_server(EchoService(), server)
    server.add_insecure_port(address)
    await server.start()
    print(f"gRPC backend listening on {address}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[2]))
