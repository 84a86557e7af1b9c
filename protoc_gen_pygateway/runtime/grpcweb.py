"""The gRPC-Web wire format (github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md), without I/O.

A gRPC-Web body is a sequence of frames: one flag byte, a 4-byte big-endian length, the payload. Flag
0x00 is a message, 0x80 the trailer frame (an HTTP/1-style header block: `grpc-status`, `grpc-message`,
`grpc-status-details-bin`, trailer metadata), 0x01 a compressed message (refused: the gateway sends no
`grpc-accept-encoding`, so a client never has a reason to compress). The `-text` variants carry the
same bytes base64-encoded; a client or server may send several padded base64 chunks back to back
(each frame encoded on its own), so decoding works 4 characters at a time.

The calls themselves (deadline, metadata, relay) live in `rpc.py`; this module only frames and parses.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

MESSAGE = 0x00
COMPRESSED = 0x01
TRAILER = 0x80
_HEADER = struct.Struct(">BI")

#: The media types gRPC-Web clients send (`application/grpc-web` means protobuf).
CONTENT_TYPES = (
    "application/grpc-web",
    "application/grpc-web+proto",
    "application/grpc-web+json",
    "application/grpc-web-text",
    "application/grpc-web-text+proto",
    "application/grpc-web-text+json",
)

#: Response headers a browser client must be allowed to read (CORS `Access-Control-Expose-Headers`):
#: a trailers-only response carries the status in headers.
EXPOSE_HEADERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")


class FrameError(ValueError):
    """A malformed gRPC-Web request body (the message says what is wrong)."""


@dataclass(frozen=True)
class WebFormat:
    """What a gRPC-Web Content-Type says: base64 text or binary, protobuf or JSON messages."""

    text: bool
    codec: str  # "proto" or "json"

    @property
    def content_type(self) -> bytes:
        """The response Content-Type (the request's, normalized)."""
        base = "application/grpc-web-text" if self.text else "application/grpc-web"
        return f"{base}+{self.codec}".encode("latin-1")


def parse_content_type(raw: str) -> WebFormat | None:
    """The format of a gRPC-Web Content-Type, or None when it is not one (parameters are ignored)."""
    media = raw.partition(";")[0].strip().lower()
    if not media.startswith("application/grpc-web"):
        return None
    rest = media[len("application/grpc-web") :]
    text = rest.startswith("-text")
    if text:
        rest = rest[len("-text") :]
    if rest in ("", "+proto"):
        return WebFormat(text, "proto")
    if rest == "+json":
        return WebFormat(text, "json")
    return None


def frame(flag: int, payload: bytes) -> bytes:
    return _HEADER.pack(flag, len(payload)) + payload


def message_frame(payload: bytes) -> bytes:
    return _HEADER.pack(MESSAGE, len(payload)) + payload


# grpc-message is percent-encoded (PROTOCOL-HTTP2.md): every byte outside printable ASCII, and `%`.
_MESSAGE_UNSAFE = re.compile(rb"[^\x20-\x24\x26-\x7e]")


def encode_grpc_message(text: str) -> bytes:
    """`grpc-message` value: UTF-8, with bytes outside 0x20-0x7E and `%` percent-encoded."""
    return _MESSAGE_UNSAFE.sub(lambda m: b"%%%02X" % m.group(0)[0], text.encode("utf-8"))


def binary_header_value(value: bytes) -> bytes:
    """A `-bin` metadata value as gRPC sends it: base64 without padding."""
    return base64.b64encode(value).rstrip(b"=")


def trailer_block(
    code: int, message: str, details_bin: bytes | None, metadata: Iterable[tuple[str, str | bytes]]
) -> bytes:
    """The trailer frame's payload: `key: value\\r\\n` lines, lowercase keys (PROTOCOL-WEB.md)."""
    lines = [b"grpc-status: %d\r\n" % code]
    if message:
        lines.append(b"grpc-message: " + encode_grpc_message(message) + b"\r\n")
    if details_bin:
        lines.append(b"grpc-status-details-bin: " + binary_header_value(details_bin) + b"\r\n")
    for key, value in metadata:
        raw = binary_header_value(value) if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(key.encode("latin-1") + b": " + raw + b"\r\n")
    return b"".join(lines)


def trailer_frame(
    code: int, message: str, details_bin: bytes | None, metadata: Iterable[tuple[str, str | bytes]]
) -> bytes:
    return frame(TRAILER, trailer_block(code, message, details_bin, metadata))


def status_headers(code: int, message: str, details_bin: bytes | None) -> list[tuple[bytes, bytes]]:
    """The status as response headers: a trailers-only response (an error before any message)."""
    headers = [(b"grpc-status", str(code).encode("latin-1"))]
    if message:
        headers.append((b"grpc-message", encode_grpc_message(message)))
    if details_bin:
        headers.append((b"grpc-status-details-bin", binary_header_value(details_bin)))
    return headers


def encode_text(data: bytes) -> bytes:
    """A `-text` response chunk: padded base64 of whole frames (clients decode concatenated chunks)."""
    return base64.b64encode(data)


class TextDecoder:
    """Incremental base64 for `-text` request bodies: whole 4-character groups as they arrive, so that
    concatenated padded chunks (`AAA=BBBB`) decode as their parts do."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data.translate(None, b" \t\r\n")
        cut = len(data) - len(data) % 4
        self._pending = data[cut:]
        return _decode_groups(data[:cut])

    def finish(self) -> None:
        if self._pending:
            raise FrameError("gRPC-Web text body: base64 ends with an incomplete group")


def _decode_groups(data: bytes) -> bytes:
    if b"=" not in data[:-2]:  # the common case: at most the last group padded
        return _b64(data)
    out = []
    start = 0
    for match in re.finditer(rb"=+", data):
        end = match.end()
        if end % 4:
            raise FrameError("gRPC-Web text body: misplaced base64 padding")
        out.append(_b64(data[start:end]))
        start = end
    out.append(_b64(data[start:]))
    return b"".join(out)


def _b64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("gRPC-Web text body: not base64") from None


class FrameDecoder:
    """Incremental frame parser for request bodies, bounded by `limit` bytes per message."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The frames `data` completes, in order."""
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        buffer = self._buffer
        offset = 0
        while len(buffer) - offset >= 5:
            flag, length = _HEADER.unpack_from(buffer, offset)
            if length > self.limit:
                raise MessageTooLargeError(length, self.limit)
            if len(buffer) - offset - 5 < length:
                break
            frames.append((flag, bytes(buffer[offset + 5 : offset + 5 + length])))
            offset += 5 + length
        del buffer[:offset]
        return frames

    def finish(self) -> None:
        if self._buffer:
            raise FrameError(f"request body ends inside a frame ({len(self._buffer)} bytes left over)")


class MessageTooLargeError(FrameError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request message larger than {limit} bytes ({size} bytes)")
        self.size = size
        self.limit = limit


def single_message(frames: list[tuple[int, bytes]], what: str = "gRPC-Web") -> bytes:
    """The one request message of a unary or server-streaming call."""
    messages = []
    for flag, payload in frames:
        if flag & COMPRESSED:
            raise FrameError(
                f"{what} request message is compressed: send it uncompressed (no encoding is accepted)"
            )
        if flag != MESSAGE:
            raise FrameError(
                f"{what} request frame with flags 0x{flag:02x}: only messages (0x00) may be sent"
            )
        messages.append(payload)
    if len(messages) != 1:
        raise FrameError(f"{what} request must carry exactly one message, got {len(messages)}")
    return messages[0]


def parse_trailer_block(block: bytes) -> list[tuple[str, str]]:
    """A trailer frame's payload as (lowercase key, value) pairs (for tests and clients)."""
    pairs = []
    for line in block.split(b"\r\n"):
        if not line:
            continue
        key, sep, value = line.partition(b":")
        if not sep:
            raise FrameError(f"trailer line without a colon: {line!r}")
        pairs.append((key.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    return pairs
