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

from .frames import (
    _GOAWAY,
    _HEAD,
    _SETTING,
    _U32,
    ACK,
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    DEFAULT_FRAME_SIZE,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    NO_ERROR,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    S_ENABLE_PUSH,
    S_HEADER_TABLE_SIZE,
    S_INITIAL_WINDOW_SIZE,
    S_MAX_CONCURRENT_STREAMS,
    S_MAX_FRAME_SIZE,
    SETTINGS,
    WINDOW_UPDATE,
    ConnectionTerminated,
    Data,
    Event,
    GoAway,
    Headers,
    PingAck,
    ProtocolError,
    Settings,
    StreamReset,
    WindowOpened,
    error_name,
    frame,
)
from .hpackcodec import HPACKError, OversizedHeaderListError
from .outbound import _ConnectionState, _Stream


class ClientConnection(_ConnectionState):
    """HTTP/2 client connection state. Not thread-safe; one per transport."""

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
