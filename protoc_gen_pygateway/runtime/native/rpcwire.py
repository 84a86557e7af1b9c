"""gRPC on HTTP/2 for the native client: the status tables, `NativeRpcError`, request and response
metadata, grpc-timeout and the length-prefixed message head (what call.py and multicallable.py share)."""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from typing import Any

import grpc

from . import frames as h2
from .hpackcodec import encode_literal

__all__ = ["EOF", "NativeRpcError"]

#: grpc.aio's end-of-stream marker for `read()` (absent from the type stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined,unused-ignore]

_CODES = {code.value[0]: code for code in grpc.StatusCode}
_MSG_HEAD = struct.Struct(">BL")
_USER_AGENT = b"grpc-python-pygateway-native/0.1"

#: Response headers that are HTTP/2 or gRPC framing, never metadata (as grpcio leaves them out).
_NOT_METADATA = frozenset(
    {
        "content-type",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-status",
        "grpc-message",
        "te",
        "content-length",
    }
)
#: Request metadata keys the transport owns; a caller's value for them is dropped. `content-length` is
#: framing (RFC 9113 §8.1.1: one that does not match the DATA makes the request malformed; grpcio drops
#: it too), the last five are connection-specific fields, malformed in HTTP/2 (RFC 9113 §8.2.2).
_RESERVED = frozenset(
    {
        "content-length",
        "content-type",
        "te",
        "grpc-timeout",
        "grpc-accept-encoding",
        "user-agent",
        "host",
        "connection",
        "transfer-encoding",
        "upgrade",
        "keep-alive",
        "proxy-connection",
    }
)

#: HTTP status of a response without grpc-status -> gRPC code (gRPC's http-grpc-status-mapping.md).
_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}

#: RST_STREAM error code -> gRPC code (as grpc-go maps them).
_RST_TO_GRPC = {
    h2.CANCEL: grpc.StatusCode.CANCELLED,
    h2.REFUSED_STREAM: grpc.StatusCode.UNAVAILABLE,
    h2.ENHANCE_YOUR_CALM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    h2.INADEQUATE_SECURITY: grpc.StatusCode.PERMISSION_DENIED,
}


class NativeRpcError(grpc.aio.AioRpcError):
    """A failed native call: a `grpc.aio.AioRpcError`, so code written for grpc.aio handles it."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        initial_metadata: grpc.aio.Metadata | None = None,
        trailing_metadata: grpc.aio.Metadata | None = None,
    ) -> None:
        super().__init__(
            code,
            initial_metadata if initial_metadata is not None else grpc.aio.Metadata(),
            trailing_metadata if trailing_metadata is not None else grpc.aio.Metadata(),
            details,
            None,
        )


# ---------------------------------------------------------------------------------------------- helpers


def _timeout_header(timeout: float) -> bytes:
    """grpc-timeout (at most 8 digits, the finest unit that fits; rounded up so the server never sees a
    later deadline than ours... and never a zero one)."""
    micros = max(1, int(timeout * 1_000_000 + 0.999999))
    for unit, scale in (
        (b"u", 1),
        (b"m", 1000),
        (b"S", 1_000_000),
        (b"M", 60_000_000),
        (b"H", 3_600_000_000),
    ):
        value = -(-micros // scale)
        if value < 100_000_000:
            return str(value).encode() + unit
    return b"99999999H"


def _encode_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> bytes:
    if not metadata:
        return b""
    out = []
    for key, value in metadata:
        name = key.lower()
        if name in _RESERVED or name.startswith(":"):
            continue
        if name.endswith("-bin"):
            raw = value if isinstance(value, bytes) else value.encode("utf-8")
            encoded = base64.b64encode(raw).rstrip(b"=")
        elif isinstance(value, bytes):
            encoded = value
        else:
            encoded = value.encode("latin-1")
        out.append(encode_literal(name.encode("ascii"), encoded))
    return b"".join(out)


def _decode_metadata(pairs: Iterable[tuple[str, str]]) -> grpc.aio.Metadata:
    md = grpc.aio.Metadata()
    for key, value in pairs:
        if key.endswith("-bin"):
            try:
                md.add(key, base64.b64decode(value + "=" * (-len(value) % 4)))
            except (binascii.Error, ValueError):
                continue  # as grpcio: an undecodable binary value is dropped
        else:
            md.add(key, value)
    return md
