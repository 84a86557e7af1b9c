"""What gRPC-Web and Connect put on the wire around the messages: the request metadata rule (the
generated header policy plus plain headers), reply metadata as headers and trailers, a call's final
error, and each protocol's stream framing. The calls are in `rpc.py`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.rpc import code_pb2  # type: ignore[import-untyped,unused-ignore]

from . import connect, grpcweb
from .errors import HttpError, _pairs, _rpc_failure
from .metadata import _PRINTABLE, _VALID_KEY, _metadata_value, request_metadata

if TYPE_CHECKING:
    from .asgi import Metadata
    from .options import HeaderPolicy
    from .request import Request

#: Response headers browsers must be allowed to read for these protocols (CORS
#: `Access-Control-Expose-Headers`), besides the metadata keys a deployment uses (see `expose_headers`).
EXPOSE_HEADERS: tuple[str, ...] = (*grpcweb.EXPOSE_HEADERS, *connect.EXPOSE_HEADERS)

#: Request headers that are the protocols' own and never metadata under their own name.
_PROTOCOL_HEADERS = frozenset(
    {
        b"accept-encoding",
        b"content-encoding",
        b"content-length",
        b"x-grpc-web",
    }
)
#: Prefixes of the same: the protocols' own, and `sec-*`, the browser-controlled fetch metadata and the
#: WebSocket handshake (`Sec-WebSocket-Key`), which say something to the gateway, not to the upstream.
_PROTOCOL_PREFIXES = (b"grpc-", b"connect-", b"sec-")
#: The IANA permanent headers (the plugin's header_policy.PERMANENT_HEADERS): metadata only as the
#: policy forwards them (`grpcgateway-<name>` with forward_permanent_headers), never under their own name.
_PERMANENT_HEADERS = frozenset(
    {
        b"accept",
        b"accept-charset",
        b"accept-language",
        b"accept-ranges",
        b"cache-control",
        b"content-type",
        b"cookie",
        b"date",
        b"expect",
        b"from",
        b"host",
        b"if-match",
        b"if-modified-since",
        b"if-none-match",
        b"if-schedule-tag-match",
        b"if-unmodified-since",
        b"max-forwards",
        b"origin",
        b"pragma",
        b"referer",
        b"user-agent",
        b"via",
        b"warning",
    }
)
#: Metadata keys never written as response headers (they would forge the response's framing, caching,
#: CORS or the protocols' own headers), on top of the policy's blocked keys.
_RESPONSE_RESERVED = frozenset(
    {
        "content-encoding",
        "content-length",
        "content-type",
        "date",
        "location",
        "server",
        "set-cookie",
        "vary",
    }
)
_RESPONSE_RESERVED_PREFIXES = ("access-control-", "connect-", "trailer-", "grpc-", ":")


def expose_headers(metadata_keys: Iterable[str] = ()) -> tuple[str, ...]:
    """What a CORS policy should list in `Access-Control-Expose-Headers` for browser clients of these
    protocols: `EXPOSE_HEADERS`, each header metadata key, and `trailer-<key>` for Connect unary trailers."""
    keys = sorted({k.lower() for k in metadata_keys})
    return (*EXPOSE_HEADERS, *keys, *(f"trailer-{k}" for k in keys))


# ---------------------------------------------------------------------------------------------- metadata


def rpc_metadata(request: Request, policy: HeaderPolicy) -> tuple[Metadata, float | None]:
    """Request metadata and deadline: REST's rules (`request_metadata`), then every other header under
    its own name (what gRPC-Web and Connect clients send), under the same policy."""
    metadata, timeout = request_metadata(request, policy)
    headers = request.scope["headers"]
    named: set[str] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(t.strip().lower() for t in value.decode("latin-1").split(","))
    plan = policy.plan
    for raw_name, raw_value in headers:
        name = raw_name.lower()
        if (
            name in plan
            or name in _PROTOCOL_HEADERS
            or name in _PERMANENT_HEADERS
            or name.startswith(_PROTOCOL_PREFIXES)
        ):
            continue
        key = name.decode("latin-1")
        if key in named or policy.blocked(key) or not _VALID_KEY.match(key):
            continue
        value = _metadata_value(key, raw_value, key)
        if value is not None:
            metadata.append((key, value))
    return metadata, timeout


def _header_value(value: str | bytes) -> bytes | None:
    if isinstance(value, bytes):
        return grpcweb.binary_header_value(value)
    return value.encode("latin-1") if _PRINTABLE.match(value) else None


def _allowed_key(policy: HeaderPolicy, key: str) -> bool:
    return (
        _VALID_KEY.match(key) is not None
        and not policy.blocked(key)
        and key not in _RESPONSE_RESERVED
        and not key.startswith(_RESPONSE_RESERVED_PREFIXES)
    )


def header_metadata(
    policy: HeaderPolicy, pairs: Iterable[tuple[str, str | bytes]]
) -> list[tuple[bytes, bytes]]:
    """Header metadata as response headers under their own names; never a blocked or reserved key."""
    headers = []
    for key, value in pairs:
        if _allowed_key(policy, key):
            raw = _header_value(value)
            if raw is not None:
                headers.append((key.encode("latin-1"), raw))
    return headers


def trailer_metadata(
    policy: HeaderPolicy, pairs: Iterable[tuple[str, str | bytes]]
) -> list[tuple[str, str | bytes]]:
    """Trailer metadata the client may see (the upstream's own grpc-* trailers are never passed on)."""
    return [
        (key, value)
        for key, value in pairs
        if _allowed_key(policy, key) and (isinstance(value, bytes) or _PRINTABLE.match(value))
    ]


def _details_bin(err: grpc.aio.AioRpcError) -> bytes | None:
    for key, value in _pairs(err.trailing_metadata()):
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            return value
    return None


# ---------------------------------------------------------------------------------------------- framing


class _Failure:
    """A call's final error, in the forms the protocols need."""

    __slots__ = ("code", "details", "details_bin", "http_status", "initial", "message", "trailing")

    def __init__(
        self,
        code: int,
        message: str,
        http_status: int | None = None,
        details: Sequence[Any] = (),
        details_bin: bytes | None = None,
        initial: Sequence[tuple[str, str | bytes]] = (),
        trailing: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        self.details = details
        self.details_bin = details_bin
        self.initial = initial
        self.trailing = trailing

    @classmethod
    def of_rpc(cls, err: grpc.aio.AioRpcError) -> _Failure:
        code, status, text, details, trailing = _rpc_failure(err)
        return cls(
            code,
            text,
            status if status == 502 else None,
            details,
            _details_bin(err),
            _pairs(err.initial_metadata()),
            trailing,
        )

    @classmethod
    def of_http(cls, err: HttpError) -> _Failure:
        return cls(err.code, err.message, err.status if err.status in (413, 415) else None)

    @classmethod
    def of_frame(cls, err: grpcweb.FrameError) -> _Failure:
        if isinstance(err, grpcweb.MessageTooLargeError):
            return cls(code_pb2.RESOURCE_EXHAUSTED, str(err))
        return cls(code_pb2.INVALID_ARGUMENT, str(err))


class _Framing:
    """How one protocol's stream frames messages and its final status."""

    content_type: bytes
    #: The stream metrics' `protocol` label (and the access log's `stream`).
    protocol: str

    def message(self, data: bytes) -> bytes:
        raise NotImplementedError

    def end(self, trailing: Sequence[tuple[str, str | bytes]]) -> bytes:
        raise NotImplementedError

    def error(
        self, failure: _Failure, trailing: Sequence[tuple[str, str | bytes]], request_id: str | None = None
    ) -> bytes:
        """The final status; Connect's carries `request_id` as a google.rpc.RequestInfo detail (gRPC-Web's
        status details are the upstream's own, relayed as they are; its X-Request-ID is a header)."""
        raise NotImplementedError

    def refusal_headers(self, failure: _Failure) -> list[tuple[bytes, bytes]]:
        """Headers of a response that fails before any message (besides content type and metadata)."""
        return []


class _WebFraming(_Framing):
    protocol = "grpcweb"

    def __init__(self, fmt: grpcweb.WebFormat) -> None:
        self.content_type = fmt.content_type
        self.text = fmt.text

    def _out(self, data: bytes) -> bytes:
        return grpcweb.encode_text(data) if self.text else data

    def message(self, data: bytes) -> bytes:
        return self._out(grpcweb.message_frame(data))

    def end(self, trailing: Sequence[tuple[str, str | bytes]]) -> bytes:
        return self._out(grpcweb.trailer_frame(0, "", None, trailing))

    def error(
        self, failure: _Failure, trailing: Sequence[tuple[str, str | bytes]], request_id: str | None = None
    ) -> bytes:
        return self._out(grpcweb.trailer_frame(failure.code, failure.message, failure.details_bin, trailing))


class _ConnectFraming(_Framing):
    protocol = "connect"

    def __init__(self, codec: str) -> None:
        self.content_type = connect.ConnectFormat(True, codec).content_type

    def message(self, data: bytes) -> bytes:
        return connect.envelope(0, data)

    def end(self, trailing: Sequence[tuple[str, str | bytes]]) -> bytes:
        return connect.end_stream(None, connect.metadata_data(trailing))

    def error(
        self, failure: _Failure, trailing: Sequence[tuple[str, str | bytes]], request_id: str | None = None
    ) -> bytes:
        error = connect.error_data(failure.code, failure.message, failure.details, request_id)
        return connect.end_stream(error, connect.metadata_data(trailing))
