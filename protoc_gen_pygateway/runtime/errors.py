"""gRPC status <-> HTTP status, HttpError, and the google.rpc.Status error body (grpc-gateway v2's)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import (
    Sequence,
)
from typing import Any

import grpc
import grpc.aio
from google.protobuf import (
    json_format,
    message,
)
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped,unused-ignore]

from .observe import request_id_info

# error_details_pb2 is imported for its side effect: the standard google.rpc detail types (ErrorInfo,
# BadRequest, ...) are then in the default pool, so Status.details decode to readable JSON.
_DETAIL_TYPES = error_details_pb2.DESCRIPTOR


#: gRPC status code -> HTTP status, the table grpc-gateway, Envoy and vanguard share.
HTTP_STATUS: dict[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
    code_pb2.UNAUTHENTICATED: 401,
}


class HttpError(Exception):
    """A request the gateway answers itself with a google.rpc.Status body."""

    def __init__(
        self, status: int, code: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)


def bad_request(message: str) -> HttpError:
    return HttpError(400, code_pb2.INVALID_ARGUMENT, message)


class ClientDisconnectedError(Exception):
    """The HTTP client went away before the request was complete."""


#: grpc-core's status message for a reply over the channel's `grpc.max_receive_message_length`, e.g.
#: "Stream removed (CLIENT: Received message larger than max (200038 vs. 65536))". The CLIENT prefix (recent
#: grpcio) tells it from an upstream refusing a request over *its* limit ("SERVER: ..."), which stays 429.
_REPLY_TOO_LARGE = re.compile(r"CLIENT: Received message larger than max \((\d+) vs\. (\d+)\)")


def _upstream_status(code: int, text: str) -> tuple[int, str]:
    """HTTP status and message for a failed gRPC call.

    A reply larger than the gateway's receive limit is 502 Bad Gateway (code still RESOURCE_EXHAUSTED):
    429, the table's status for RESOURCE_EXHAUSTED, would send clients into rate-limit backoff and
    retries that can only fail the same way.
    """
    if code == code_pb2.RESOURCE_EXHAUSTED:
        match = _REPLY_TOO_LARGE.search(text)
        if match is not None:
            size, limit = match.groups()
            return 502, f"upstream reply exceeded the gateway's limit ({size} bytes, limit {limit})"
    return HTTP_STATUS.get(code, 500), text


def _status_details(raw: bytes, code: int) -> Sequence[Any]:
    try:
        status = status_pb2.Status.FromString(raw)
    except message.DecodeError:
        return ()
    return status.details if status.code == code else ()


def _any_to_json(detail: Any) -> Any:
    try:
        return json_format.MessageToDict(detail)
    except (TypeError, KeyError, json_format.Error):  # a detail type this process does not know
        return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode("ascii")}


def error_body(code: int, text: str, details: Sequence[Any] = (), request_id: str | None = None) -> bytes:
    """google.rpc.Status as JSON, grpc-gateway v2's error body; with `request_id`, a
    `google.rpc.RequestInfo` detail carrying it comes last."""
    body = _status_data(code, text, details, request_id)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _status_data(
    code: int, text: str, details: Sequence[Any] = (), request_id: str | None = None
) -> dict[str, Any]:
    data = [_any_to_json(d) for d in details]
    if request_id is not None:
        data.append(request_id_info(request_id))
    return {"code": code, "message": text, "details": data}


def _pairs(metadata: Any) -> list[tuple[str, str | bytes]]:
    """grpc.aio metadata (None, a Metadata object or a sequence of pairs) as a list of pairs."""
    return [(key, value) for key, value in metadata or ()]


def _rpc_failure(
    err: grpc.aio.AioRpcError,
) -> tuple[int, int, str, Sequence[Any], list[tuple[str, str | bytes]]]:
    """A failed call, decoded once: gRPC code, HTTP status, message, Status details, trailer metadata."""
    code = err.code().value[0]
    trailing = _pairs(err.trailing_metadata())
    details: Sequence[Any] = ()
    for key, value in trailing:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            details = _status_details(value, code)
    status, text = _upstream_status(code, err.details() or "")
    return code, status, text, details, trailing


def _rpc_error_data(
    err: grpc.aio.AioRpcError, request_id: str | None = None
) -> tuple[int, dict[str, Any], list[tuple[str, str | bytes]]]:
    """gRPC code, the google.rpc.Status as JSON data and the trailer metadata of a failed call."""
    code, _, text, details, trailing = _rpc_failure(err)
    return code, _status_data(code, text, details, request_id), trailing
