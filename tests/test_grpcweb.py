"""gRPC-Web: the wire format (protoc_gen_pygateway/runtime/grpcweb.py) and, end to end, the generated
gateway answering gRPC-Web requests from httpx and raw sockets (the Node clients: test_js_clients.py)."""

from __future__ import annotations

import base64
import struct

import pytest

from protoc_gen_pygateway.runtime import grpcweb


def test_content_types() -> None:
    assert grpcweb.parse_content_type("application/grpc-web") == grpcweb.WebFormat(False, "proto")
    assert grpcweb.parse_content_type("application/grpc-web+proto") == grpcweb.WebFormat(False, "proto")
    assert grpcweb.parse_content_type("Application/GRPC-Web+JSON; charset=utf-8") == grpcweb.WebFormat(
        False, "json"
    )
    assert grpcweb.parse_content_type("application/grpc-web-text") == grpcweb.WebFormat(True, "proto")
    assert grpcweb.parse_content_type("application/grpc-web-text+proto") == grpcweb.WebFormat(True, "proto")
    assert grpcweb.parse_content_type("application/grpc-web-text+json") == grpcweb.WebFormat(True, "json")
    for other in (
        "application/grpc",
        "application/grpc-web+thrift",
        "application/grpc-webx",
        "application/json",
    ):
        assert grpcweb.parse_content_type(other) is None
    assert grpcweb.WebFormat(True, "proto").content_type == b"application/grpc-web-text+proto"
    for raw in grpcweb.CONTENT_TYPES:
        assert grpcweb.parse_content_type(raw) is not None


def test_frames_round_trip_in_any_split() -> None:
    body = (
        grpcweb.message_frame(b"abc")
        + grpcweb.message_frame(b"")
        + grpcweb.frame(0x80, b"grpc-status: 0\r\n")
    )
    for step in (1, 2, 3, 7, len(body)):
        decoder = grpcweb.FrameDecoder(limit=100)
        frames = []
        for i in range(0, len(body), step):
            frames += decoder.feed(body[i : i + step])
        decoder.finish()
        assert frames == [(0, b"abc"), (0, b""), (0x80, b"grpc-status: 0\r\n")]


def test_frame_limits_and_truncation() -> None:
    decoder = grpcweb.FrameDecoder(limit=10)
    with pytest.raises(grpcweb.MessageTooLargeError, match="larger than 10 bytes"):
        decoder.feed(struct.pack(">BI", 0, 11))  # refused from the header, before the payload arrives
    decoder = grpcweb.FrameDecoder(limit=10)
    assert decoder.feed(b"\x00\x00\x00\x00\x05ab") == []
    with pytest.raises(grpcweb.FrameError, match="ends inside a frame"):
        decoder.finish()


def test_single_message() -> None:
    assert grpcweb.single_message([(0, b"x")]) == b"x"
    with pytest.raises(grpcweb.FrameError, match="exactly one message, got 0"):
        grpcweb.single_message([])
    with pytest.raises(grpcweb.FrameError, match="exactly one message, got 2"):
        grpcweb.single_message([(0, b"x"), (0, b"y")])
    with pytest.raises(grpcweb.FrameError, match="compressed"):
        grpcweb.single_message([(1, b"x")])
    with pytest.raises(grpcweb.FrameError, match="0x80"):
        grpcweb.single_message([(0x80, b"x")])


def test_trailer_frame() -> None:
    raw = grpcweb.trailer_frame(5, "no book 'ä' 100%", b"\x01\x02", [("x-a", "1"), ("x-b-bin", b"\xff")])
    flag, length = struct.unpack(">BI", raw[:5])
    assert flag == 0x80 and length == len(raw) - 5
    pairs = grpcweb.parse_trailer_block(raw[5:])
    assert pairs == [
        ("grpc-status", "5"),
        ("grpc-message", "no book '%C3%A4' 100%25"),
        ("grpc-status-details-bin", "AQI"),
        ("x-a", "1"),
        ("x-b-bin", "/w"),
    ]
    assert grpcweb.status_headers(0, "", None) == [(b"grpc-status", b"0")]


def test_text_decoder_handles_concatenated_padded_chunks() -> None:
    frames = [grpcweb.message_frame(b"ab"), grpcweb.message_frame(b"cde"), grpcweb.message_frame(b"")]
    text = b"".join(base64.b64encode(f) for f in frames)  # each padded on its own
    assert b"=" in text[:-2]
    for step in (1, 3, 4, 5, len(text)):
        decoder = grpcweb.TextDecoder()
        out = b"".join(decoder.feed(text[i : i + step]) for i in range(0, len(text), step))
        decoder.finish()
        assert out == b"".join(frames)


def test_text_decoder_errors() -> None:
    decoder = grpcweb.TextDecoder()
    decoder.feed(b"AAA")
    with pytest.raises(grpcweb.FrameError, match="incomplete group"):
        decoder.finish()
    with pytest.raises(grpcweb.FrameError, match="not base64"):
        grpcweb.TextDecoder().feed(b"A*AA")
    with pytest.raises(grpcweb.FrameError, match="padding"):
        grpcweb.TextDecoder().feed(b"AA=AAAAA")
    assert grpcweb.encode_text(b"\x00\x00\x00\x00\x00") == b"AAAAAAA="
