"""A sans-I/O HTTP/2 client connection (RFC 9113), the framing core of the native gRPC transport.

`ClientConnection` owns no socket and no timer: `receive(data)` consumes bytes read from the peer and
returns events; the methods that act (`open_stream`, `send_data`, `reset_stream`, `ping`, `close`)
queue frames; `data_to_send()` hands over the bytes to write. Everything is unit-testable with byte
strings (tests/test_native_transport_core.py).

Limits owned here: the peer's flow-control windows on everything sent (data waits in a per-stream
buffer until the windows allow it), our windows on everything received (a peer that overruns them is a
FLOW_CONTROL_ERROR), frame size, header-list size (HPACK-inflated, checked while decoding) and the
number and size of CONTINUATION frames of one header block (the 2024 "CONTINUATION flood" class: a
header block is bounded in bytes *and* in frames, so endless empty CONTINUATION frames end the
connection instead of burning CPU).
"""

from __future__ import annotations

import struct
from collections import deque

from .hpackcodec import HeaderDecoder, HPACKError, OversizedHeaderListError

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


# ---------------------------------------------------------------------------------------------- streams


class _Stream:
    __slots__ = (
        "closed_local",
        "headers_seen",
        "pending",
        "pending_end",
        "pending_len",
        "recv_window",
        "send_window",
        "unacked",
    )

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.send_window = send_window
        self.recv_window = recv_window
        self.pending: deque[memoryview] = deque()
        self.pending_len = 0
        self.pending_end = False  # END_STREAM goes out with the last buffered byte
        self.closed_local = False
        self.headers_seen = False
        self.unacked = 0


class ClientConnection:
    """HTTP/2 client connection state. Not thread-safe; one per transport."""

    def __init__(
        self,
        *,
        stream_window: int = 1 << 20,
        connection_window: int = 16 << 20,
        max_header_list_size: int = 16384,
        max_frame_size: int = DEFAULT_FRAME_SIZE,
        max_continuations: int = 64,
    ) -> None:
        if not DEFAULT_FRAME_SIZE <= max_frame_size <= (1 << 24) - 1:
            raise ValueError("max_frame_size out of range")
        self.local_stream_window = stream_window
        self.local_connection_window = connection_window
        self.max_header_list_size = max_header_list_size
        self.max_frame_size_in = max_frame_size
        self.max_continuations = max_continuations
        # Header blocks are bounded in compressed bytes too: the inflated size is checked while decoding,
        # but a block must first be collected; 4x the list limit leaves room for literal encodings.
        self.max_header_block = max(4 * max_header_list_size, 16384)
        # A block whose decoded size is past our soft limit ends its stream (stream error); past 4x the
        # limit decoding stops and the connection ends (hpack's state is then unknown).
        self.decoder = HeaderDecoder(4 * max_header_list_size)
        self.out = bytearray()
        self._in = bytearray()
        self._preface_done = False
        self.streams: dict[int, _Stream] = {}
        self.next_stream_id = 1
        self.peer_max_concurrent = 2**31
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame_size = DEFAULT_FRAME_SIZE
        self.peer_header_table_size = 4096
        self.table_size_update_pending = True  # we never index: tell the peer its table for us is 0 bytes
        self.send_window = DEFAULT_WINDOW
        self.recv_window = connection_window
        self._recv_unacked = 0
        self._blocked: dict[int, None] = {}  # streams with data waiting for the connection window (ordered)
        self._continuing: tuple[int, int, bytearray, int] | None = None  # stream, flags, block, frames
        self.terminated = False
        self.goaway_received: int | None = None
        self.goaway_sent = False

    # ------------------------------------------------------------------------------------------ setup

    def initiate(self) -> None:
        payload = b"".join(
            (
                _SETTING.pack(S_ENABLE_PUSH, 0),
                _SETTING.pack(S_INITIAL_WINDOW_SIZE, self.local_stream_window),
                _SETTING.pack(S_MAX_HEADER_LIST_SIZE, self.max_header_list_size),
                _SETTING.pack(S_MAX_FRAME_SIZE, self.max_frame_size_in),
            )
        )
        self.out += PREFACE
        self.out += frame(SETTINGS, 0, 0, payload)
        if self.local_connection_window > DEFAULT_WINDOW:
            self.out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.local_connection_window - DEFAULT_WINDOW))

    def data_to_send(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    # ------------------------------------------------------------------------------------------ actions

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    def can_open(self) -> bool:
        return (
            not self.terminated
            and self.goaway_received is None
            and not self.goaway_sent
            and len(self.streams) < self.peer_max_concurrent
            and self.next_stream_id < MAX_WINDOW
        )

    def open_stream(self, header_block: bytes, end_stream: bool) -> int:
        """Send HEADERS (split into CONTINUATION frames as the peer's frame size requires)."""
        sid = self.next_stream_id
        self.next_stream_id += 2
        stream = _Stream(self.peer_initial_window, self.local_stream_window)
        stream.closed_local = end_stream
        self.streams[sid] = stream
        if self.table_size_update_pending:
            header_block = b"\x20" + header_block  # dynamic table size update to 0 (RFC 7541 §6.3)
            self.table_size_update_pending = False
        limit = self.peer_max_frame_size
        flags = END_STREAM if end_stream else 0
        if len(header_block) <= limit:
            self.out += frame(HEADERS, flags | END_HEADERS, sid, header_block)
        else:
            view = memoryview(header_block)
            self.out += frame(HEADERS, flags, sid, bytes(view[:limit]))
            pos = limit
            while pos < len(header_block):
                chunk = bytes(view[pos : pos + limit])
                pos += limit
                self.out += frame(CONTINUATION, END_HEADERS if pos >= len(header_block) else 0, sid, chunk)
        return sid

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue DATA; it goes out as far as the windows allow now, the rest on WINDOW_UPDATE."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.closed_local or stream.pending_end:
            return
        if data:
            stream.pending.append(memoryview(data))
            stream.pending_len += len(data)
        if end_stream:
            stream.pending_end = True
        self._flush(stream_id, stream)

    def buffered(self, stream_id: int) -> int:
        """Bytes queued for the stream that the windows have not let out yet."""
        stream = self.streams.get(stream_id)
        return stream.pending_len if stream is not None else 0

    def reset_stream(self, stream_id: int, error_code: int = CANCEL) -> None:
        if self.streams.pop(stream_id, None) is not None and not self.terminated:
            self._blocked.pop(stream_id, None)
            self.out += frame(RST_STREAM, 0, stream_id, _U32.pack(error_code))

    def consumed(self, stream_id: int, n: int) -> None:
        """The application took `n` flow-controlled bytes of the stream: reopen its receive window once
        half of it has been consumed (few WINDOW_UPDATE frames, and the peer never runs dry)."""
        stream = self.streams.get(stream_id)
        if stream is None or n <= 0:
            return
        stream.unacked += n
        if stream.unacked >= self.local_stream_window // 2:
            stream.recv_window += stream.unacked
            self.out += frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.unacked))
            stream.unacked = 0

    def ping(self, opaque: bytes) -> None:
        self.out += frame(PING, 0, 0, opaque)

    def close(self, error_code: int = NO_ERROR, debug: bytes = b"") -> None:
        """Send GOAWAY (no new streams from the peer; we never accept any anyway)."""
        if not self.goaway_sent and not self.terminated:
            self.goaway_sent = True
            self.out += frame(GOAWAY, 0, 0, _GOAWAY.pack(0, error_code) + debug)

    def stream_ended(self, stream_id: int) -> None:
        """Forget a stream whose response has ended (END_STREAM seen) once our side has ended too."""
        self.streams.pop(stream_id, None)
        self._blocked.pop(stream_id, None)

    # ------------------------------------------------------------------------------------------ sending

    def _flush(self, stream_id: int, stream: _Stream) -> None:
        while stream.pending_len or (stream.pending_end and not stream.closed_local):
            room = min(self.send_window, stream.send_window, self.peer_max_frame_size)
            if stream.pending_len and room <= 0:
                if self.send_window <= 0:
                    self._blocked[stream_id] = None
                return
            n = min(room, stream.pending_len)
            chunks = []
            left = n
            while left:
                head = stream.pending[0]
                if len(head) <= left:
                    chunks.append(head)
                    stream.pending.popleft()
                    left -= len(head)
                else:
                    chunks.append(head[:left])
                    stream.pending[0] = head[left:]
                    left = 0
            stream.pending_len -= n
            self.send_window -= n
            stream.send_window -= n
            end = stream.pending_end and not stream.pending_len
            payload = chunks[0].tobytes() if len(chunks) == 1 else b"".join(chunks)
            self.out += frame(DATA, END_STREAM if end else 0, stream_id, payload)
            if end:
                stream.closed_local = True
                return

    def _flush_blocked(self) -> None:
        for sid in list(self._blocked):
            if self.send_window <= 0:
                return
            del self._blocked[sid]
            stream = self.streams.get(sid)
            if stream is not None:
                self._flush(sid, stream)

    # ------------------------------------------------------------------------------------------ receiving

    def receive(self, data: bytes) -> list[Event]:
        """Consume bytes from the peer; return what happened. After a connection error the events end
        with `ConnectionTerminated` and further input is ignored."""
        events: list[Event] = []
        if self.terminated:
            return events
        buf = self._in
        buf += data
        try:
            pos = 0
            end = len(buf)
            while end - pos >= 9:
                hi, lo, kind, flags, sid = _HEAD.unpack_from(buf, pos)
                length = (hi << 8) | lo
                sid &= MAX_WINDOW
                if length > self.max_frame_size_in:
                    raise ProtocolError(
                        FRAME_SIZE_ERROR, f"frame of {length} bytes exceeds {self.max_frame_size_in}"
                    )
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9 : pos + 9 + length])
                pos += 9 + length
                if not self._preface_done and (kind != SETTINGS or flags & ACK):
                    raise ProtocolError(PROTOCOL_ERROR, "server preface is not a SETTINGS frame")
                self._frame(kind, flags, sid, payload, events)
            del buf[:pos]
        except ProtocolError as err:
            self._terminate(err.code, err.message, events)
        if self._recv_unacked >= self.local_connection_window // 2 and not self.terminated:
            self.out += frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._recv_unacked))
            self.recv_window += self._recv_unacked
            self._recv_unacked = 0
        return events

    def _terminate(self, code: int, message: str, events: list[Event]) -> None:
        if not self.goaway_sent:
            self.goaway_sent = True
            last = 0
            self.out += frame(
                GOAWAY, 0, 0, _GOAWAY.pack(last, code) + message.encode("utf-8", "replace")[:200]
            )
        self.terminated = True
        self._in.clear()
        events.append(ConnectionTerminated(code, message))

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if self._continuing is not None and kind != CONTINUATION:
            raise ProtocolError(PROTOCOL_ERROR, "header block interrupted by another frame")
        if kind == DATA:
            self._data(flags, sid, payload, events)
        elif kind == HEADERS:
            self._headers(flags, sid, payload, events)
        elif kind == CONTINUATION:
            self._continuation(flags, sid, payload, events)
        elif kind == SETTINGS:
            self._settings(flags, sid, payload, events)
        elif kind == WINDOW_UPDATE:
            self._window_update(sid, payload, events)
        elif kind == RST_STREAM:
            if sid == 0 or len(payload) != 4:
                raise ProtocolError(PROTOCOL_ERROR if sid == 0 else FRAME_SIZE_ERROR, "malformed RST_STREAM")
            self._check_known(sid)
            code = _U32.unpack(payload)[0]
            if self.streams.pop(sid, None) is not None:
                self._blocked.pop(sid, None)
                events.append(
                    StreamReset(sid, code, True, f"stream reset by the server ({error_name(code)})")
                )
        elif kind == PING:
            if sid != 0 or len(payload) != 8:
                raise ProtocolError(PROTOCOL_ERROR if sid else FRAME_SIZE_ERROR, "malformed PING")
            if flags & ACK:
                events.append(PingAck(payload))
            else:
                self.out += frame(PING, ACK, 0, payload)
        elif kind == GOAWAY:
            if sid != 0 or len(payload) < 8:
                raise ProtocolError(PROTOCOL_ERROR, "malformed GOAWAY")
            last, code = _GOAWAY.unpack_from(payload)
            last &= MAX_WINDOW
            if self.goaway_received is not None and last > self.goaway_received:
                last = self.goaway_received  # a later GOAWAY may only lower the limit
            self.goaway_received = last
            events.append(GoAway(last, code, payload[8:]))
        elif kind == PRIORITY:
            if sid == 0 or len(payload) != 5:
                raise ProtocolError(PROTOCOL_ERROR, "malformed PRIORITY")
        elif kind == PUSH_PROMISE:
            raise ProtocolError(PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled")
        # Unknown frame types are ignored (RFC 9113 §4.1).

    def _check_known(self, sid: int) -> None:
        if sid % 2 == 0 or sid >= self.next_stream_id:
            raise ProtocolError(PROTOCOL_ERROR, f"frame on stream {sid}, which the client never opened")

    @staticmethod
    def _strip_padding(flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            if not payload:
                raise ProtocolError(PROTOCOL_ERROR, "padded frame without a pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise ProtocolError(PROTOCOL_ERROR, "padding longer than the frame")
            return payload[1 : len(payload) - pad]
        return payload

    def _data(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise ProtocolError(PROTOCOL_ERROR, "DATA on stream 0")
        self._check_known(sid)
        flow = len(payload)
        if flow > self.recv_window:
            raise ProtocolError(FLOW_CONTROL_ERROR, "server overran the connection window")
        self.recv_window -= flow
        self._recv_unacked += flow  # the connection window reopens on receipt; streams bound the memory
        data = self._strip_padding(flags, payload)
        stream = self.streams.get(sid)
        if stream is None:
            return  # a stream we reset or finished: its data is dropped (and counted above)
        if not stream.headers_seen:
            self._stream_error(sid, PROTOCOL_ERROR, "DATA before the response headers", events)
            return
        if flow > stream.recv_window:
            self._stream_error(sid, FLOW_CONTROL_ERROR, "server overran the stream window", events)
            return
        stream.recv_window -= flow
        end = bool(flags & END_STREAM)
        events.append(Data(sid, data, flow, end))
        if end:
            self._remote_ended(sid, stream)

    def _stream_error(self, sid: int, code: int, message: str, events: list[Event]) -> None:
        self.reset_stream(sid, code)
        events.append(StreamReset(sid, code, False, message))

    def _headers(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid == 0:
            raise ProtocolError(PROTOCOL_ERROR, "HEADERS on stream 0")
        self._check_known(sid)
        block = self._strip_padding(flags, payload)
        if flags & PRIORITY_FLAG:
            if len(block) < 5:
                raise ProtocolError(FRAME_SIZE_ERROR, "HEADERS priority fields truncated")
            block = block[5:]
        if flags & END_HEADERS:
            self._header_block(sid, flags, block, events)
        else:
            if len(block) > self.max_header_block:
                raise ProtocolError(ENHANCE_YOUR_CALM, "header block too large")
            self._continuing = (sid, flags, bytearray(block), 0)

    def _continuation(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if self._continuing is None or self._continuing[0] != sid:
            raise ProtocolError(PROTOCOL_ERROR, "CONTINUATION without an open header block")
        stream_id, first_flags, block, count = self._continuing
        count += 1
        block += payload
        if len(block) > self.max_header_block or count > self.max_continuations:
            raise ProtocolError(
                ENHANCE_YOUR_CALM,
                f"header block exceeds {self.max_header_block} bytes or {self.max_continuations}"
                " CONTINUATION frames",
            )
        if flags & END_HEADERS:
            self._continuing = None
            self._header_block(stream_id, first_flags, bytes(block), events)
        else:
            self._continuing = (stream_id, first_flags, block, count)

    def _header_block(self, sid: int, flags: int, block: bytes, events: list[Event]) -> None:
        try:
            headers = self.decoder.decode(block)  # always decoded: the HPACK state must stay in step
        except OversizedHeaderListError:
            raise ProtocolError(ENHANCE_YOUR_CALM, "response header list far exceeds the limit") from None
        except HPACKError as err:
            raise ProtocolError(COMPRESSION_ERROR, f"undecodable header block: {err}") from None
        except (UnicodeError, ValueError, IndexError) as err:
            raise ProtocolError(COMPRESSION_ERROR, f"undecodable header block: {err}") from None
        stream = self.streams.get(sid)
        if stream is None:
            return
        size = 0
        for name, value in headers:
            size += len(name) + len(value) + 32
        if size > self.max_header_list_size:
            self._stream_error(
                sid,
                CANCEL,
                f"response header list of {size} bytes exceeds {self.max_header_list_size}",
                events,
            )
            return
        end = bool(flags & END_STREAM)
        if stream.headers_seen and not end:
            self._stream_error(sid, PROTOCOL_ERROR, "second header block without END_STREAM", events)
            return
        stream.headers_seen = True
        events.append(Headers(sid, headers, end))
        if end:
            self._remote_ended(sid, stream)

    def _remote_ended(self, sid: int, stream: _Stream) -> None:
        """The response is complete: the stream is over for us. If our side is still open (a client stream
        the server answered early), RST_STREAM NO_ERROR closes it so the server frees its slot."""
        if not stream.closed_local:
            self.out += frame(RST_STREAM, 0, sid, _U32.pack(NO_ERROR))
        self.streams.pop(sid, None)
        self._blocked.pop(sid, None)

    def _settings(self, flags: int, sid: int, payload: bytes, events: list[Event]) -> None:
        if sid != 0:
            raise ProtocolError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise ProtocolError(FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6")
        changes: dict[int, int] = {}
        for off in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, off)
            if key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise ProtocolError(FLOW_CONTROL_ERROR, "stream window overflow")
            elif key == S_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= (1 << 24) - 1:
                    raise ProtocolError(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
                self.peer_max_frame_size = value
            elif key == S_MAX_CONCURRENT_STREAMS:
                self.peer_max_concurrent = value
            elif key == S_HEADER_TABLE_SIZE:
                self.peer_header_table_size = value
                self.table_size_update_pending = True
            elif key == S_ENABLE_PUSH and value > 1:
                raise ProtocolError(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1")
            changes[key] = value
        self.out += frame(SETTINGS, ACK, 0)
        first = not self._preface_done
        self._preface_done = True
        events.append(Settings(changes, first))
        if S_INITIAL_WINDOW_SIZE in changes or S_MAX_FRAME_SIZE in changes:
            for stream_id, stream in list(self.streams.items()):
                if stream.pending_len:
                    self._flush(stream_id, stream)
            events.append(WindowOpened())

    def _window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise ProtocolError(FRAME_SIZE_ERROR, "WINDOW_UPDATE length not 4")
        increment = _U32.unpack(payload)[0] & MAX_WINDOW
        if sid == 0:
            if increment == 0:
                raise ProtocolError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0 on the connection")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise ProtocolError(FLOW_CONTROL_ERROR, "connection window overflow")
            self._flush_blocked()
            events.append(WindowOpened())
            return
        self._check_known(sid)
        stream = self.streams.get(sid)
        if stream is None:
            return
        if increment == 0:
            self._stream_error(sid, PROTOCOL_ERROR, "WINDOW_UPDATE of 0", events)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._stream_error(sid, FLOW_CONTROL_ERROR, "stream window overflow", events)
            return
        if stream.pending_len or stream.pending_end:
            self._flush(sid, stream)
        events.append(WindowOpened())
