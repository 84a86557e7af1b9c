"""Health and readiness endpoints (`GatewayOptions(health=HealthOptions())`; on by default in serve).

- `GET /healthz[?service=NAME]` calls the upstream's `grpc.health.v1.Health/Check` for that service
  (default `""`: the server as a whole) with a short deadline (`HealthOptions.timeout`, 1 s): SERVING ->
  200 `{"status": "SERVING"}`; any other serving status -> 503 with a google.rpc.Status (UNAVAILABLE,
  naming the status); a failed call -> 503 with the call's Status (e.g. UNAVAILABLE when the upstream is
  down, NOT_FOUND for a service the health servicer does not know, DEADLINE_EXCEEDED).
- An upstream without the health service answers UNIMPLEMENTED: 503 with code 12 and a message saying
  so, by default — the gateway cannot know whether it serves, and a probe that always passes would hide
  that. `HealthOptions(unimplemented="serving")` (serve `--health-unimplemented serving`) answers 200
  `{"status": "SERVING"}` instead: the upstream did answer an RPC, which proves it is up.
- `GET /readyz`: 200 `{"status": "READY"}`, and 503 (UNAVAILABLE "gateway shutting down") from the
  moment a graceful shutdown (or the drain before it) begins, so load balancers stop sending new requests.
  It does not call the upstream: one upstream outage should not take every gateway out of rotation.
- Both answer GET and HEAD (405 with `Allow` otherwise), carry `Cache-Control: no-store`, and are served
  only where no generated route matches: a generated route on the same path wins (a warning is logged
  when the app is built).

The health messages are built from their descriptor here (no grpcio-health-checking needed at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from .asgi import _JSON, logger
from .errors import _rpc_failure
from .lifecycle import _SHUTDOWN_TEXT

if TYPE_CHECKING:
    from .app import Gateway
    from .asgi import Handler
    from .request import Request

#: The health service's method (grpc/health/v1/health.proto).
CHECK_METHOD = "/grpc.health.v1.Health/Check"
_SERVING = 1


@dataclass(frozen=True)
class HealthOptions:
    """The gateway's own health (`path`) and readiness (`ready_path`) endpoints; None disables one."""

    path: str | None = "/healthz"
    ready_path: str | None = "/readyz"
    #: Deadline of the upstream health check, in seconds.
    timeout: float = 1.0
    #: An upstream answering UNIMPLEMENTED (no health service): "fail" -> 503, "serving" -> 200.
    unimplemented: Literal["fail", "serving"] = "fail"

    def __post_init__(self) -> None:
        for path in (self.path, self.ready_path):
            if path is not None and not path.startswith("/"):
                raise ValueError(f"health endpoint path {path!r} must start with '/'")
        if not self.timeout > 0:
            raise ValueError("HealthOptions.timeout must be > 0")
        if self.unimplemented not in ("fail", "serving"):
            raise ValueError("HealthOptions.unimplemented is 'fail' or 'serving'")


def _health_messages() -> tuple[Any, Any, Any]:
    """HealthCheckRequest, HealthCheckResponse and its ServingStatus enum, from a private descriptor pool
    (no clash with grpcio-health-checking's copy in the default pool)."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="pygateway_runtime/grpc_health_v1.proto", package="grpc.health.v1", syntax="proto3"
    )
    fdp = descriptor_pb2.FieldDescriptorProto
    request = fd.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=fdp.TYPE_STRING, label=fdp.LABEL_OPTIONAL)
    response = fd.message_type.add(name="HealthCheckResponse")
    enum = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")):
        enum.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=fdp.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
        label=fdp.LABEL_OPTIONAL,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    request_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest")
    )
    response_desc = pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse")
    return (
        request_type,
        message_factory.GetMessageClass(response_desc),
        response_desc.enum_types_by_name["ServingStatus"],
    )


_REQUEST, _RESPONSE, _STATUS_ENUM = _health_messages()
_NO_STORE = (b"cache-control", b"no-store")
_ALLOW = (b"allow", b"GET, HEAD")


class Health:
    """The endpoints of one Gateway: `handlers()` maps their paths to handlers."""

    def __init__(self, options: HealthOptions, channel: grpc.aio.Channel | None) -> None:
        self.options = options
        self.check: Any = None
        if channel is not None:
            self.check = channel.unary_unary(
                CHECK_METHOD,
                request_serializer=_REQUEST.SerializeToString,
                response_deserializer=_RESPONSE.FromString,
            )

    def handlers(self, gateway: Gateway) -> dict[str, Handler]:
        """Path -> handler for the endpoints no generated route shadows (a shadowed one is warned about)."""
        served: dict[str, Handler] = {}
        for path, handler in ((self.options.path, self.healthz), (self.options.ready_path, self.readyz)):
            if path is not None and unshadowed(gateway, path, "health endpoint"):
                served[path] = handler
        return served

    async def healthz(self, request: Request) -> None:
        if not await get_only(request):
            return
        service = _service(request)
        if service is None:
            await request.send_error(
                400, code_pb2.INVALID_ARGUMENT, "health check: the only parameter is service"
            )
            return
        if self.check is None:
            await request.send_error(
                503, code_pb2.UNAVAILABLE, "health check: the gateway has no upstream channel"
            )
            return
        try:
            reply = await self.check(_REQUEST(service=service), timeout=self.options.timeout)
        except grpc.aio.AioRpcError as err:
            code, _, text, details, _ = _rpc_failure(err)
            if code == code_pb2.UNIMPLEMENTED:
                if self.options.unimplemented == "serving":
                    await _ok(request, b'{"status":"SERVING"}')
                    return
                text = f"the upstream does not implement grpc.health.v1.Health ({text})"
            await request.send_error(503, code, f"health check: {text}", details, [_NO_STORE])
            return
        if reply.status == _SERVING:
            await _ok(request, b'{"status":"SERVING"}')
            return
        name = _STATUS_ENUM.values_by_number.get(reply.status)
        status = name.name if name is not None else str(reply.status)
        text = f"health check: the upstream reports {status} for service {service!r}"
        await request.send_error(503, code_pb2.UNAVAILABLE, text, (), [_NO_STORE])

    async def readyz(self, request: Request) -> None:
        if not await get_only(request):
            return
        gateway = request.gateway
        if gateway.shutting_down or gateway.draining:
            await request.send_error(503, code_pb2.UNAVAILABLE, _SHUTDOWN_TEXT, (), [_NO_STORE])
            return
        await _ok(request, b'{"status":"READY"}')


def unshadowed(gateway: Gateway, path: str, what: str) -> bool:
    """Whether the gateway's own endpoint `what` at `path` can be served: no generated route matches a GET
    of it (a generated route wins, with a warning)."""
    found = gateway.resolve("GET", path)
    if isinstance(found, list):
        if not found:
            return True
        owner = f"for {', '.join(found)}"
    else:
        owner = f"{found[0].method} {found[0].template} of {found[0].name}"
    logger.warning("%s %s not served: the generated route %s matches it", what, path, owner)
    return False


async def get_only(request: Request) -> bool:
    """True for GET and HEAD; else answers 405 (Allow: GET, HEAD) and returns False."""
    method = request.scope["method"]
    if method in ("GET", "HEAD"):
        return True
    text = f"method {method} not allowed for {request.scope.get('path', '')} (allowed: GET, HEAD)"
    await request.send_error(405, code_pb2.UNIMPLEMENTED, text, extra=[_ALLOW])
    return False


def _service(request: Request) -> str | None:
    """The `service` query parameter ("" without one), None for any other parameter or a bad query."""
    query = request.scope.get("query_string") or b""
    try:
        pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    service = ""
    for key, value in pairs:
        if key != "service":
            return None
        service = value
    return service


async def _ok(request: Request, body: bytes) -> None:
    await request.send_response(200, body, [_JSON, _NO_STORE])
