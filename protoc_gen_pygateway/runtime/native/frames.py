"""HTTP/2 on the wire (RFC 9113) for the native transport's sans-I/O connection: frame types, flags,
error codes and settings, frame serialization (`frame`), and the events `ClientConnection.receive`
returns."""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
# Flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# Error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED = range(6)
FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR = range(6, 11)
ENHANCE_YOUR_CALM, INADEQUATE_SECURITY, HTTP_1_1_REQUIRED = range(11, 14)
# Settings
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 1, 2, 3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 4, 5, 6

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65535
DEFAULT_FRAME_SIZE = 16384

_HEAD = struct.Struct(">HBBBL")  # length as 16 + 8 bits, type, flags, stream id
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")

ERROR_NAMES = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    2: "INTERNAL_ERROR",
    3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT",
    5: "STREAM_CLOSED",
    6: "FRAME_SIZE_ERROR",
    7: "REFUSED_STREAM",
    8: "CANCEL",
    9: "COMPRESSION_ERROR",
    10: "CONNECT_ERROR",
    11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY",
    13: "HTTP_1_1_REQUIRED",
}


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"error code {code}")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


# ---------------------------------------------------------------------------------------------- events


class Event:
    __slots__ = ()


class Settings(Event):
    """The peer's SETTINGS frame (already acknowledged); `first` for the one that completes the preface."""

    __slots__ = ("changes", "first")

    def __init__(self, changes: dict[int, int], first: bool) -> None:
        self.changes = changes
        self.first = first


class Headers(Event):
    __slots__ = ("end_stream", "headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]], end_stream: bool) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.end_stream = end_stream


class Data(Event):
    """DATA for an open stream; `flow` is the flow-controlled length to give back with `consumed()`."""

    __slots__ = ("data", "end_stream", "flow", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow: int, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow = flow
        self.end_stream = end_stream


class StreamReset(Event):
    """The stream ended by RST_STREAM: from the peer (`remote`) or by us on a stream-level error."""

    __slots__ = ("error_code", "message", "remote", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote: bool, message: str) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote
        self.message = message


class WindowOpened(Event):
    """Send windows grew (WINDOW_UPDATE or SETTINGS): buffered data may have been flushed."""

    __slots__ = ()


class PingAck(Event):
    __slots__ = ("opaque",)

    def __init__(self, opaque: bytes) -> None:
        self.opaque = opaque


class GoAway(Event):
    __slots__ = ("debug", "error_code", "last_stream_id")

    def __init__(self, last_stream_id: int, error_code: int, debug: bytes) -> None:
        self.last_stream_id = last_stream_id
        self.error_code = error_code
        self.debug = debug


class ConnectionTerminated(Event):
    """We found a connection error: a GOAWAY is queued, and the connection is unusable from now on."""

    __slots__ = ("error_code", "message")

    def __init__(self, error_code: int, message: str) -> None:
        self.error_code = error_code
        self.message = message


class ProtocolError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
