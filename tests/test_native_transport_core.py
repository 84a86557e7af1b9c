"""The native transport's sans-I/O parts on bytes alone: the HPACK encoder and cached decoder (checked
against the `hpack` library and `h2`), and ClientConnection's framing, flow control and limits."""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from protoc_gen_pygateway.runtime.native import connection as core
from protoc_gen_pygateway.runtime.native import frames
from protoc_gen_pygateway.runtime.native.hpackcodec import HeaderDecoder, encode_literal, table_neutral

_names = st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)
_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(
    st.lists(
        st.tuples(_names | st.sampled_from([":path", ":authority", "content-type", "user-agent"]), _values)
    )
)
def test_encoder_output_decodes_with_hpack(headers: list[tuple[str, str]]) -> None:
    block = b"".join(encode_literal(k.encode(), v.encode()) for k, v in headers)
    assert table_neutral(block)
    assert hpack.Decoder().decode(block) == headers


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(["a", "b", "grpc-status", "x-y"]), st.sampled_from(["0", "1", "v"])),
            max_size=4,
        ),
        min_size=1,
        max_size=12,
    ),
    st.data(),
)
def test_cached_decoder_matches_hpack_across_table_changes(
    blocks: list[list[tuple[str, str]]], data: st.DataObject
) -> None:
    # The server's encoder indexes (or not) at random; our cached decoder must always agree with a
    # plain decoder, even when the same bytes mean different headers after the table changed.
    encoder = hpack.Encoder()
    ours, reference = HeaderDecoder(65536), hpack.Decoder()
    for headers in blocks:
        sensitive = data.draw(st.booleans())
        block = encoder.encode(
            [
                hpack.HeaderTuple(k, v) if not sensitive else hpack.NeverIndexedHeaderTuple(k, v)
                for k, v in headers
            ]
        )
        for _ in range(data.draw(st.integers(1, 2))):  # repeated blocks hit the cache
            expected = [(k, v) for k, v in reference.decode(block)]
            assert ours.decode(block) == expected


def test_same_bytes_after_a_table_change_are_not_served_from_the_cache() -> None:
    ours = HeaderDecoder(65536)
    first = b"\x40\x01a\x01x"  # literal with incremental indexing: a: x -> dynamic index 62
    assert ours.decode(first) == [("a", "x")]
    assert ours.decode(b"\xbe") == [("a", "x")]  # indexed 62, cached now
    assert ours.decode(b"\x40\x01a\x01y") == [("a", "y")]  # a: y becomes index 62
    assert ours.decode(b"\xbe") == [("a", "y")]


def test_table_neutral_classification() -> None:
    assert table_neutral(b"\x88\xc0\xbf")
    assert table_neutral(b"\x00\x03abc\x01z")  # literal without indexing, new name
    assert table_neutral(b"\x10\x03abc\x01z")  # never indexed
    assert not table_neutral(b"\x40\x03abc\x01z")  # incremental indexing
    assert not table_neutral(b"\x20")  # table size update
    assert not table_neutral(b"\x00\x05ab")  # truncated


def _server() -> h2.connection.H2Connection:
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="latin-1")
    )
    server.initiate_connection()
    return server


def _handshake(
    settings: dict[int, int] | None = None,
) -> tuple[core.ClientConnection, h2.connection.H2Connection]:
    client = core.ClientConnection(stream_window=65535, connection_window=65535 * 4)
    client.initiate()
    server = _server()
    if settings:
        server.update_settings(settings)
    server.receive_data(client.data_to_send())
    events = client.receive(server.data_to_send())
    assert isinstance(events[0], frames.Settings) and events[0].first
    server.receive_data(client.data_to_send())
    return client, server


def _request_block() -> bytes:
    return b"\x83\x86" + encode_literal(b":path", b"/a/b") + encode_literal(b":authority", b"h")


def test_send_data_waits_for_the_peer_windows() -> None:
    client, server = _handshake({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sid = client.open_stream(_request_block(), False)
    client.send_data(sid, b"x" * 5000, True)
    received = bytearray()
    for ev in server.receive_data(client.data_to_send()):
        if isinstance(ev, h2.events.DataReceived):
            received += ev.data
    assert len(received) == 1000 and client.buffered(sid) == 4000
    while client.buffered(sid) or len(received) < 5000:
        server.increment_flow_control_window(1000, stream_id=sid)
        events = client.receive(server.data_to_send())
        assert any(isinstance(e, frames.WindowOpened) for e in events)
        ended = False
        for ev in server.receive_data(client.data_to_send()):
            if isinstance(ev, h2.events.DataReceived):
                received += ev.data
            ended = ended or isinstance(ev, h2.events.StreamEnded)
    assert bytes(received) == b"x" * 5000 and ended


def test_receive_windows_are_enforced_and_replenished() -> None:
    client, server = _handshake()
    sid = client.open_stream(_request_block(), True)
    server.receive_data(client.data_to_send())
    server.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    server.send_data(sid, b"y" * 16384)
    events = client.receive(server.data_to_send())
    assert [type(e) for e in events] == [frames.Headers, frames.Data]
    client.consumed(sid, 16384)  # < half the window: no update yet
    assert client.data_to_send() == b""
    client.consumed(sid, 20000)
    assert client.data_to_send()[3] == frames.WINDOW_UPDATE
    # A peer that ignores our window: a stream error (RST_STREAM FLOW_CONTROL_ERROR), not a crash.
    sid2 = client.open_stream(_request_block(), True)
    client.data_to_send()
    block = hpack.Encoder().encode([(":status", "200"), ("content-type", "application/grpc")])
    raw = frames.frame(frames.HEADERS, frames.END_HEADERS, sid2, block)
    raw += b"".join(frames.frame(frames.DATA, 0, sid2, b"z" * 16384) for _ in range(5))  # 81920 > 65535
    events = client.receive(raw)
    assert any(isinstance(e, frames.ConnectionTerminated | frames.StreamReset) for e in events)


def test_continuation_limits() -> None:
    client, _ = _handshake()
    sid = client.open_stream(_request_block(), True)
    client.data_to_send()
    flood = frames.frame(frames.HEADERS, 0, sid, b"\x88") + frames.frame(frames.CONTINUATION, 0, sid) * 100
    events = client.receive(flood)
    assert isinstance(events[-1], frames.ConnectionTerminated)
    assert events[-1].error_code == frames.ENHANCE_YOUR_CALM
    goaway = client.data_to_send()
    assert goaway[3] == frames.GOAWAY and struct.unpack(">L", goaway[13:17])[0] == frames.ENHANCE_YOUR_CALM
    assert client.receive(b"more") == []  # terminated: input ignored


def test_header_block_split_over_continuation_frames_is_accepted() -> None:
    client, _ = _handshake()
    sid = client.open_stream(_request_block(), True)
    block = hpack.Encoder().encode(
        [(":status", "200"), ("content-type", "application/grpc"), ("x", "y" * 100)]
    )
    raw = frames.frame(frames.HEADERS, 0, sid, block[:10])
    raw += frames.frame(frames.CONTINUATION, 0, sid, block[10:50])
    raw += frames.frame(frames.CONTINUATION, frames.END_HEADERS, sid, block[50:])
    (event,) = client.receive(raw[:7]) + client.receive(raw[7:])  # split reads too
    assert isinstance(event, frames.Headers) and ("x", "y" * 100) in event.headers


def test_goaway_ping_and_settings_frames() -> None:
    client, server = _handshake()
    server.ping(b"12345678")
    server.close_connection(last_stream_id=0)
    events = client.receive(server.data_to_send())
    assert isinstance(events[-1], frames.GoAway) and events[-1].last_stream_id == 0
    assert not client.can_open()
    ack = client.data_to_send()
    assert ack[3] == frames.PING and ack[4] == frames.ACK and ack[9:17] == b"12345678"


def test_large_request_headers_use_continuation_frames() -> None:
    client, server = _handshake()
    big = _request_block() + encode_literal(b"x-big", b"v" * 40000)
    sid = client.open_stream(big, True)
    events = server.receive_data(client.data_to_send())
    (request,) = [e for e in events if isinstance(e, h2.events.RequestReceived)]
    assert request.stream_id == sid and dict(request.headers)["x-big"] == "v" * 40000
