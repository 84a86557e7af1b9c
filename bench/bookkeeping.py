"""The metrics bookkeeping of one unary request per protocol: `python -m bench.bookkeeping`.

What `GatewayOptions(metrics=...)` adds to a unary request, alone (no upstream, no server, no app): an
`observe.Exchange` routed to a REST route, or to a gRPC-Web / Connect method (the `protocol` label),
the unary call started and ended (its two reports), the status, `finish()` (counted in batches of 256).
The best of 7 rounds of 100 000 (timeit), in µs per request. Seconds to run; the number to keep under
issue 14's budget of 5 µs per request on a quiet machine (docs/observability.md, "Cost").
"""

from __future__ import annotations

import sys
import timeit
from typing import Any

from prometheus_client import CollectorRegistry

from protoc_gen_pygateway.runtime import metrics, observe

ROUNDS, NUMBER = 7, 100_000


class _Route:  # what Exchange reads of a routing.Route
    template = "/v1/echo"
    name = "bench.v1.EchoService.Echo"
    method = "POST"


class _Rpc:  # what Exchange and Metrics read of an rpc.RpcMethod (hashed by identity, as it is)
    path = "/bench.v1.EchoService/Echo"
    name = "bench.v1.EchoService.Echo"


def main() -> int:
    observers = observe.Observers(metrics.Metrics(CollectorRegistry()), None, None)
    scope = {"type": "http", "method": "POST", "path": "/v1/echo", "headers": []}
    route, rpc = _Route(), _Rpc()
    metadata: list[tuple[str, str | bytes]] = []

    async def nothing(*args: Any) -> Any:
        return None

    def request(protocol: str) -> None:
        exchange = observe.Exchange(observers, scope, nothing, nothing, "rid")
        if protocol == "rest":
            exchange.routed(route)
        else:
            exchange.rpc_routed(rpc, protocol)
        exchange.unary_started(metadata)
        exchange.unary_ended(0)
        exchange.status = 200
        exchange.finish()

    for protocol in ("rest", "grpcweb", "connect"):
        best = min(timeit.repeat(lambda p=protocol: request(p), number=NUMBER, repeat=ROUNDS)) / NUMBER
        print(f"metrics bookkeeping of one unary request, {protocol}: {best * 1e6:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
