"""The state of a sans-I/O HTTP/2 client connection and its sending half: the preface, the actions that
queue frames (`open_stream`, `send_data`, `reset_stream`, `consumed`, `ping`, `close`) and the peer's
flow-control windows on everything sent (data waits in a per-stream buffer until they allow it).
`ClientConnection` (connection.py) adds the receiving half."""

from __future__ import annotations

from collections import deque

from .frames import (
    _GOAWAY,
    _SETTING,
    _U32,
    CANCEL,
    CONTINUATION,
    DATA,
    DEFAULT_FRAME_SIZE,
    DEFAULT_WINDOW,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    MAX_WINDOW,
    NO_ERROR,
    PING,
    PREFACE,
    RST_STREAM,
    S_ENABLE_PUSH,
    S_INITIAL_WINDOW_SIZE,
    S_MAX_FRAME_SIZE,
    S_MAX_HEADER_LIST_SIZE,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
)
from .hpackcodec import HeaderDecoder

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


class _ConnectionState:
    """HTTP/2 client connection state and the sending half of `ClientConnection`."""

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
