"""The access log: one JSON line per request or stream, written when it ends.

Written to the `pygateway.access` logger at INFO (serve `--access-log` sends that logger to stderr, one
line each, nothing else on the line). Members, always in this order:

`time` (UTC, RFC 3339 with milliseconds, when the exchange ended), `request_id`, `method`, `path`,
`route` (the matched template, for gRPC-Web and Connect the method's path `/pkg.Service/Method`, or
null), `protocol` (what served it: `rest`, `grpcweb` (the -text variants too) or `connect`), `stream`
(streams: `ndjson`, `sse`, `websocket`, `httpbody`, `grpcweb`, `connect`, as the stream metrics'
`protocol` label; else null), `status` (HTTP status; 101 for an accepted WebSocket; 499 when nothing was
answered because the client left), `grpc_code` (the gRPC code of the answer: the upstream's, or of the
gateway's own refusal; null when none), `outcome` (streams: `ok`, `upstream_error`, `client_gone`,
`shutdown`, `bad_request`; else null), `duration_ms`, `request_bytes` and `response_bytes` (bodies, or
WebSocket message payloads), `request_messages` (sent upstream) and `response_messages` (relayed to the
client).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .observe import Exchange

__all__ = ["LOGGER_NAME", "AccessLog", "configure"]

LOGGER_NAME = "pygateway.access"
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(LOGGER_NAME)

    def write(self, exchange: Exchange, seconds: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        line = {
            "time": stamp,
            "request_id": exchange.request_id,
            "method": exchange.method,
            "path": exchange.path,
            "route": exchange.route,
            "protocol": exchange.protocol,
            "stream": exchange.stream,
            "status": exchange.status,
            "grpc_code": exchange.code,
            "outcome": exchange.outcome,
            "duration_ms": round(seconds * 1000, 3),
            "request_bytes": exchange.request_bytes,
            "response_bytes": exchange.response_bytes,
            "request_messages": exchange.request_messages,
            "response_messages": exchange.response_messages,
        }
        self.logger.info(_ENCODER.encode(line))


def configure(stream: TextIO | None = None) -> logging.Logger:
    """Send the access log to `stream` (default stderr), one JSON line per record and nothing else
    (not propagated to the root logger's format)."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
