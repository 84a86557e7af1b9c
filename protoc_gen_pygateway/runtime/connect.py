"""The Connect protocol's wire format (connectrpc.com/docs/protocol), without I/O.

Unary calls: a bare message body (`application/proto` or `application/json`), errors as a JSON object
with a string code and an HTTP status from Connect's table, trailer metadata as `trailer-<key>`
headers; GET requests carry the message in the `message`/`encoding`/`base64`/`compression`/`connect`
query. Streams (`application/connect+proto|json`): envelopes of one flag byte, a 4-byte big-endian
length and the message; the last envelope has flag 0x02 and holds the end-stream JSON
`{"error": {...}, "metadata": {...}}`. No compression is offered: the gateway advertises none, and a
request naming one other than identity is refused with `unimplemented` as the spec says.

The calls themselves live in `rpc.py`; this module only frames, parses and maps.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format, message, symbol_database

#: gRPC code -> Connect's code string (Connect spells CANCELLED "canceled").
CODE_NAMES: dict[int, str] = {
    1: "canceled",
    2: "unknown",
    3: "invalid_argument",
    4: "deadline_exceeded",
    5: "not_found",
    6: "already_exists",
    7: "permission_denied",
    8: "resource_exhausted",
    9: "failed_precondition",
    10: "aborted",
    11: "out_of_range",
    12: "unimplemented",
    13: "internal",
    14: "unavailable",
    15: "data_loss",
    16: "unauthenticated",
}

#: Connect's error code -> HTTP status table (the spec's, after RFC 003: canceled 499, deadline 504,
#: failed_precondition 400, unimplemented 501). It equals the gRPC-to-HTTP table the REST side uses.
HTTP_STATUS: dict[int, int] = {
    1: 499,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}

UNARY_CONTENT_TYPES = ("application/proto", "application/json")
STREAM_CONTENT_TYPES = ("application/connect+proto", "application/connect+json")

#: Response headers a browser client must be allowed to read (CORS `Access-Control-Expose-Headers`)
#: besides the configured metadata: unary trailers travel as `trailer-<key>` headers (the list names
#: the prefix; expose each configured trailer key as `trailer-<key>`).
EXPOSE_HEADERS = ("content-encoding", "connect-content-encoding")

PROTOCOL_VERSION_HEADER = b"connect-protocol-version"
TIMEOUT_HEADER = b"connect-timeout-ms"

COMPRESSED = 0x01
END_STREAM = 0x02
_HEADER = struct.Struct(">BI")


class ConnectError(Exception):
    """A request the gateway answers itself with a Connect error (gRPC code numbers)."""

    def __init__(self, code: int, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status if http_status is not None else HTTP_STATUS.get(code, 500)


@dataclass(frozen=True)
class ConnectFormat:
    """What a Connect Content-Type (or GET `encoding`) says: streaming or unary, protobuf or JSON."""

    stream: bool
    codec: str  # "proto" or "json"

    @property
    def content_type(self) -> bytes:
        prefix = "application/connect+" if self.stream else "application/"
        return (prefix + self.codec).encode("latin-1")


def parse_content_type(raw: str) -> ConnectFormat | None:
    """The Connect format of a Content-Type, or None. `application/json; charset=utf-8` is JSON; any
    other charset is not a Connect type."""
    media, _, params = raw.partition(";")
    media = media.strip().lower()
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return None
    if media in ("application/proto", "application/json"):
        return ConnectFormat(False, media[len("application/") :])
    if media in ("application/connect+proto", "application/connect+json"):
        return ConnectFormat(True, media[len("application/connect+") :])
    return None


_TIMEOUT_MS = re.compile(r"^[0-9]{1,10}$")


def parse_timeout_ms(value: str) -> float:
    """`Connect-Timeout-Ms`: a positive integer of at most 10 digits -> seconds."""
    text = value.strip()
    if not _TIMEOUT_MS.match(text) or int(text) == 0:
        raise ConnectError(
            3, f"invalid Connect-Timeout-Ms {value!r}: expected a positive integer of at most 10 digits"
        )
    return int(text) / 1000.0


def check_protocol_version(value: bytes | None, required: bool = False) -> None:
    """`Connect-Protocol-Version` must be 1 when present (and present when `required`)."""
    if value is None:
        if required:
            raise ConnectError(3, "missing Connect-Protocol-Version header: send Connect-Protocol-Version: 1")
        return
    if value.strip() != b"1":
        raise ConnectError(
            3, f"unsupported Connect-Protocol-Version {value.decode('latin-1')!r}: only 1 is supported"
        )


def check_encoding(value: bytes | None, header: str) -> None:
    """A request compressed with anything but identity is `unimplemented` (the spec's rule)."""
    if value is None or value.strip().lower() in (b"", b"identity"):
        return
    raise ConnectError(12, f"unsupported {header} {value.decode('latin-1')!r}: supported encodings: identity")


@dataclass(frozen=True)
class GetRequest:
    """A unary GET's message, decoded from the query."""

    format: ConnectFormat
    message: bytes


def parse_get_query(query_string: bytes) -> GetRequest:
    """The `message`, `encoding`, `base64`, `compression` and `connect` query parameters of a unary GET.

    Unknown parameters are allowed (the spec says so); `connect`, when present, must be `v1`.
    """
    try:
        pairs = parse_qsl(
            query_string.decode("latin-1"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError:
        raise ConnectError(
            3, "Connect GET query: percent-encoded bytes are not UTF-8 (send the message with base64=1)"
        ) from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in ("message", "encoding", "base64", "compression", "connect"):
            if key in values:
                raise ConnectError(3, f"Connect GET query: parameter {key!r} given more than once")
            values[key] = value
    if "connect" in values and values["connect"] != "v1":
        raise ConnectError(3, f"unsupported Connect GET connect={values['connect']!r}: only v1 is supported")
    encoding = values.get("encoding")
    if encoding is None:
        raise ConnectError(3, "Connect GET query: missing encoding parameter (proto or json)")
    if encoding not in ("proto", "json"):
        raise ConnectError(
            3, f"unsupported Connect GET encoding {encoding!r}: send proto or json", http_status=415
        )
    compression = values.get("compression", "identity")
    if compression not in ("", "identity"):
        raise ConnectError(
            12, f"unsupported Connect GET compression {compression!r}: supported encodings: identity"
        )
    if "message" not in values:
        raise ConnectError(3, "Connect GET query: missing message parameter")
    text = values["message"]
    if values.get("base64") == "1":
        data = text.encode("latin-1", "replace").replace(b"-", b"+").replace(b"_", b"/")
        try:
            raw = base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConnectError(3, "Connect GET query: message is not base64") from None
    else:
        raw = text.encode("utf-8")
    return GetRequest(ConnectFormat(False, encoding), raw)


def envelope(flags: int, payload: bytes) -> bytes:
    return _HEADER.pack(flags, len(payload)) + payload


def _unpadded(value: bytes) -> str:
    return base64.b64encode(value).rstrip(b"=").decode("ascii")


def error_data(
    code: int, message: str, details: Sequence[Any] = (), request_id: str | None = None
) -> dict[str, Any]:
    """Connect's Error: string code, message, details as {type, value (unpadded base64), debug}; with
    `request_id`, a `google.rpc.RequestInfo` detail last (as REST's error bodies carry it)."""
    data: dict[str, Any] = {"code": CODE_NAMES.get(code, "unknown")}
    if message:
        data["message"] = message
    if details or request_id is not None:
        data["details"] = [_detail(d) for d in details]
        if request_id is not None:
            data["details"].append(request_info_detail(request_id))
    return data


def request_info_detail(request_id: str) -> dict[str, Any]:
    """`google.rpc.RequestInfo{request_id}` as a Connect error detail (its wire form written here: field
    1, a string, so no error_details_pb2 import on this path)."""
    raw = request_id.encode("utf-8")
    value = b"\x0a" + _varint(len(raw)) + raw
    return {"type": "google.rpc.RequestInfo", "value": _unpadded(value), "debug": {"requestId": request_id}}


def _varint(number: int) -> bytes:
    out = bytearray()
    while number > 0x7F:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _detail(detail: Any) -> dict[str, Any]:
    """One google.protobuf.Any of a Status as a Connect error detail."""
    type_name = detail.type_url.rpartition("/")[2]
    item: dict[str, Any] = {"type": type_name, "value": _unpadded(detail.value)}
    try:
        cls = symbol_database.Default().GetSymbol(type_name)
        item["debug"] = json_format.MessageToDict(cls.FromString(detail.value))
    except (KeyError, TypeError, ValueError, message.DecodeError, json_format.Error):
        # A detail type this process does not know (or cannot print): "debug" is optional in Connect.
        return item
    return item


def error_json(code: int, message: str, details: Sequence[Any] = (), request_id: str | None = None) -> bytes:
    return _dump(error_data(code, message, details, request_id))


def metadata_data(pairs: Iterable[tuple[str, str | bytes]]) -> dict[str, list[str]]:
    """Trailer metadata as the end-stream message's `metadata` object: key -> list of values."""
    data: dict[str, list[str]] = {}
    for key, value in pairs:
        text = _unpadded(value) if isinstance(value, bytes) else value
        data.setdefault(key, []).append(text)
    return data


def end_stream(error: dict[str, Any] | None, metadata: dict[str, list[str]]) -> bytes:
    """The final envelope of a Connect stream (flag 0x02)."""
    body: dict[str, Any] = {}
    if error is not None:
        body["error"] = error
    if metadata:
        body["metadata"] = metadata
    return envelope(END_STREAM, _dump(body))


def trailer_headers(pairs: Iterable[tuple[str, str | bytes]]) -> list[tuple[bytes, bytes]]:
    """Unary trailer metadata as `trailer-<key>` response headers."""
    headers = []
    for key, value in pairs:
        raw = _unpadded(value).encode("ascii") if isinstance(value, bytes) else value.encode("latin-1")
        headers.append((b"trailer-" + key.encode("latin-1"), raw))
    return headers


def _dump(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
