"""End to end, streaming RPCs (shop.v1.FeedService) through the shipped serve command (uvicorn h11 + wsproto)
against the real grpc.aio backend: server streams as NDJSON and SSE, client and bidi streams from NDJSON
request bodies (forwarded as they arrive, full duplex over HTTP/1.1), and every streaming kind over
WebSocket. Framing is the runtime's (templates/runtime.py.jinja, "streams" and "websocket").
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import GatewayServer
from tests.e2e_support import error_body, raw_until_close, without_request_info
from tests.stream_support import LAST_CHUNK, RawStream, start_request, wait_until

WATCH = "/v1/shelves/fiction/events:watch"
TITLES = "/v1/shelves/fiction/titles:watch"
MISSING = "/v1/shelves/missing/events:watch"
UPLOAD = "/v1/uploads"
CHAT = "/v1/chat"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
FEED_TRAILERS = {"x-feed-trailer": "done"}
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
WS_TIMEOUT = 5.0


def ndjson(response: httpx.Response) -> list[Any]:
    """The body's lines as JSON; every line ends with a newline, none is empty."""
    assert response.content.endswith(b"\n"), response.content
    lines = response.content.split(b"\n")[:-1]
    assert all(lines), response.content
    return [plain(json.loads(line), response.headers.get("x-request-id")) for line in lines]


def plain(message: Any, request_id: str | None = None) -> Any:
    """A line, event or WebSocket message; an error's Status checked to end with the request's
    google.rpc.RequestInfo detail (docs/observability.md) and returned without it."""
    if isinstance(message, dict) and isinstance(message.get("error"), dict):
        return {**message, "error": without_request_info(message["error"], request_id)}
    return message


def results(lines: list[Any]) -> list[Any]:
    """The `result` of each line, checking every line is exactly `{"result": ...}`."""
    for line in lines:
        assert list(line) == ["result"], line
    return [line["result"] for line in lines]


def seqs(messages: list[Any]) -> list[int]:
    return [int(message["seq"]) for message in messages]


def stream_failure(code: int, after: int) -> dict[str, Any]:
    """The Status a Watch failing with `code` after `after` events ends with (see demo/feed_backend.py)."""
    info = {"@type": ERROR_INFO, "reason": "STREAM_FAILED", "domain": "shop.example.com"}
    info["metadata"] = {"events": str(after)}  # type: ignore[assignment]
    return {"code": code, "message": f"failed after {after} events", "details": [info]}


def sse_events(body: bytes) -> list[tuple[str, Any]]:
    """(event name, JSON data) per SSE event; "message" when the event has no name."""
    text = body.decode("utf-8")
    assert text.endswith("\n\n"), text
    events = []
    for block in text[:-2].split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            else:
                assert field == "data", block
                data.append(value)
        events.append((name, plain(json.loads("\n".join(data)))))
    return events


# ------------------------------------------------------------------------------------ server streaming


@pytest.mark.parametrize("accept", [None, "application/x-ndjson", "application/json", "*/*"])
def test_watch_ndjson_every_message_in_order(client: httpx.Client, backend: Any, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    response = client.get(WATCH, params={"count": 7}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == NDJSON
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["grpc-metadata-x-feed-initial"] == "yes"
    assert "content-length" not in response.headers
    events = results(ndjson(response))  # a successful stream adds no final line
    assert seqs(events) == list(range(7))
    assert {event["shelf"] for event in events} == {"shelves/fiction"}
    assert [event["title"] for event in events] == [f"event {i}" for i in range(7)]
    call = backend.recorder.last("Watch")
    assert call.request.shelf == "shelves/fiction"
    assert call.request.count == 7
    assert call.messages_sent == 7


def test_watch_lines_are_flushed_as_they_arrive(gateway: GatewayServer) -> None:
    """Each event reaches the client when the backend sends it (200 ms apart), not at the end."""
    with RawStream(gateway.port) as stream:
        stream.send(start_request("GET", WATCH + "?count=3&intervalMs=200"))
        assert stream.read_head() == 200
        assert stream.header("transfer-encoding") == "chunked"
        timed = stream.timed_json_lines()
        end = time.monotonic()
    assert seqs(results([line for _, line in timed])) == [0, 1, 2]
    arrivals = [at for at, _ in timed]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap >= 0.15 for gap in gaps), gaps
    assert end - arrivals[0] >= 0.3  # the first line was there long before the stream ended
    assert arrivals[0] - stream.head_time < 0.15


def test_watch_not_found_before_first_message(client: httpx.Client, backend: Any) -> None:
    """A failure before any message: the HTTP status comes from the gRPC code, one error line."""
    response = client.get(MISSING)
    assert response.status_code == 404
    assert response.headers["content-type"] == NDJSON
    [line] = ndjson(response)
    assert line == {
        "error": {"code": 5, "message": "shelf 'shelves/missing' not found", "details": []},
        "trailers": {},
    }
    assert backend.recorder.last("Watch").request.shelf == "shelves/missing"


def test_watch_invalid_argument_before_first_message(client: httpx.Client) -> None:
    response = client.get(WATCH, params={"failCode": 3, "failAfter": 0})
    assert response.status_code == 400
    assert response.headers["content-type"] == NDJSON
    # Grpc-Metadata-X-Feed-Initial is not asserted: when the backend sends its initial metadata and fails
    # at once, grpc.aio's client loses that metadata now and then (~5% of calls, also without the gateway).
    assert ndjson(response) == [{"error": stream_failure(3, 0), "trailers": FEED_TRAILERS}]


def test_watch_error_after_messages(client: httpx.Client) -> None:
    """Headers are gone once a message was sent: 200, the results, then the error line with the trailers
    (google.rpc.Status details decoded, grpc-status-details-bin itself not passed on)."""
    response = client.get(WATCH, params={"count": 5, "fail_code": 9, "fail_after": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == NDJSON
    *events, last = ndjson(response)
    assert seqs(results(events)) == [0, 1, 2]
    assert last == {"error": stream_failure(9, 3), "trailers": FEED_TRAILERS}


def test_watch_post_binding_body_star(client: httpx.Client, backend: Any) -> None:
    response = client.post(WATCH, json={"count": 3, "intervalMs": 1, "shelf": "ignored/by/path"})
    assert response.status_code == 200, response.text
    assert seqs(results(ndjson(response))) == [0, 1, 2]
    call = backend.recorder.last("Watch")
    assert call.request.shelf == "shelves/fiction"  # the path wins over the body
    assert (call.request.count, call.request.interval_ms) == (3, 1)


def test_watch_post_binding_rejects_query(client: httpx.Client, backend: Any) -> None:
    response = client.post(WATCH + "?count=9", json={"count": 2})
    error_body(response, 400, 3)
    assert backend.recorder.for_method("Watch") == []


def test_watch_titles_response_body(client: httpx.Client) -> None:
    response = client.get(TITLES, params={"count": 3})
    assert response.status_code == 200
    assert ndjson(response) == [{"result": f"event {i}"} for i in range(3)]


def test_watch_titles_sse(client: httpx.Client) -> None:
    response = client.get(TITLES, params={"count": 2}, headers={"Accept": SSE})
    assert sse_events(response.content) == [
        ("message", "event 0"),
        ("message", "event 1"),
        ("end", {"trailers": FEED_TRAILERS}),
    ]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("count=many", "count"),
        ("interval_ms=1.5", "interval_ms"),
        ("bogus=1", "bogus"),
        ("shelf=shelves/other", "shelf"),  # bound by the path
    ],
)
def test_watch_query_errors_are_plain_json(
    client: httpx.Client, backend: Any, query: str, problem: str
) -> None:
    """Refused before any call: a JSON Status (not NDJSON, not SSE) and no backend call."""
    for accept in (NDJSON, SSE):
        response = client.get(f"{WATCH}?{query}", headers={"Accept": accept})
        assert problem in error_body(response, 400, 3)["message"]
    assert backend.recorder.for_method("Watch") == []


def test_watch_grpc_timeout_ends_stream_with_deadline_exceeded(client: httpx.Client, backend: Any) -> None:
    started = time.monotonic()
    response = client.get(WATCH, params={"count": 10, "intervalMs": 500}, headers={"Grpc-Timeout": "1S"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    *events, last = ndjson(response)
    assert 1 <= len(events) <= 3
    assert seqs(results(events)) == list(range(len(events)))
    assert last["error"]["code"] == 4
    assert 0.9 <= elapsed < 4
    call = backend.recorder.last("Watch")
    assert call.deadline_seconds is not None and 0 < call.deadline_seconds <= 1.05  # clock rounding
    assert wait_until(lambda: call.cancelled), "the backend never saw its deadline pass"
    assert call.messages_sent < 10


# ------------------------------------------------------------------------------------------------- SSE


def test_watch_sse(client: httpx.Client) -> None:
    response = client.get(WATCH, params={"count": 3}, headers={"Accept": SSE})
    assert response.status_code == 200
    assert response.headers["content-type"] == SSE
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["grpc-metadata-x-feed-initial"] == "yes"
    assert response.content.startswith(b"data: {")  # no "result" wrapper
    events = sse_events(response.content)
    assert [name for name, _ in events] == ["message"] * 3 + ["end"]
    assert seqs([data for _, data in events[:3]]) == [0, 1, 2]
    assert events[3][1] == {"trailers": FEED_TRAILERS}


def test_watch_sse_accept_among_others(client: httpx.Client) -> None:
    response = client.get(
        WATCH, params={"count": 1}, headers={"Accept": "text/plain, Text/Event-Stream;q=0.9"}
    )
    assert response.headers["content-type"] == SSE


def test_watch_sse_error_mid_stream(client: httpx.Client) -> None:
    response = client.get(WATCH, params={"count": 4, "failCode": 10, "failAfter": 2}, headers={"Accept": SSE})
    assert response.status_code == 200
    events = sse_events(response.content)
    assert [name for name, _ in events] == ["message", "message", "error"]
    assert events[2][1] == {"error": stream_failure(10, 2), "trailers": FEED_TRAILERS}


def test_watch_sse_error_before_first_message(client: httpx.Client) -> None:
    response = client.get(MISSING, headers={"Accept": SSE})
    assert response.status_code == 404
    assert response.headers["content-type"] == SSE
    [(name, data)] = sse_events(response.content)
    assert name == "error"
    assert data["error"]["code"] == 5
    assert data["trailers"] == {}


# ------------------------------------------------------------------------------------ client streaming


def received(backend: Any, method: str, count: int) -> Any:
    """A predicate: the latest `method` call has received at least `count` request messages."""
    calls = backend.recorder.for_method
    return lambda: bool(calls(method)) and calls(method)[-1].messages_received >= count


def test_upload_ndjson_body(client: httpx.Client, backend: Any) -> None:
    body = b'{"name": "a", "data": "hello"}\n\n  \n{"name": "b", "data": "\xc3\xa9t\xc3\xa9"}\n{"name": "c"}'
    response = client.post(UPLOAD, content=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"chunks": 3, "bytes": "10", "names": ["a", "b", "c"]}  # UTF-8 bytes
    call = backend.recorder.last("Upload")
    assert [message.name for message in call.messages] == ["a", "b", "c"]
    assert not call.cancelled


def test_upload_empty_body(client: httpx.Client) -> None:
    response = client.post(UPLOAD, content=b"")
    assert response.status_code == 200
    assert response.json() == {"chunks": 0, "bytes": "0", "names": []}


def test_upload_messages_are_forwarded_as_they_arrive(gateway: GatewayServer, backend: Any) -> None:
    """The gateway does not read the body to its end first: the backend has the first line while the
    client has not sent the second yet."""
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(start_request("POST", UPLOAD, chunked=True))
        stream.send_chunk(b'{"name": "first", "data": "1"}\n')
        assert wait_until(received(backend, "Upload", 1), timeout=3)
        time.sleep(0.3)
        call = backend.recorder.last("Upload")
        assert call.messages_received == 1
        assert call.messages_sent == 0  # still waiting for the rest
        stream.send_chunk(b'{"name": "second", "data": "22"}')  # last line without a newline
        stream.send(LAST_CHUNK)
        assert stream.read_head() == 200
        assert json.loads(stream.rest()) == {"chunks": 2, "bytes": "3", "names": ["first", "second"]}


def test_upload_bad_line_cancels_the_call(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with RawStream(gateway.port) as stream:
        stream.send(start_request("POST", UPLOAD, chunked=True))
        stream.send_chunk(b'{"name": "good"}\n')
        assert wait_until(received(backend, "Upload", 1), timeout=3)
        stream.send_chunk(b'{"name": "bad", "chunks": 1}\n')
        assert stream.read_head() == 400
        assert stream.header("content-type") == "application/json"
        body = json.loads(stream.rest())
    assert body["code"] == 3
    assert "chunks" in body["message"], body
    call = backend.recorder.last("Upload")
    assert wait_until(lambda: call.cancelled), "the upstream call was not cancelled"
    assert call.messages_sent == 0


def test_upload_malformed_json_line(client: httpx.Client) -> None:
    response = client.post(UPLOAD, content=b'{"name": "a"}\n{"name": \n')
    assert "malformed JSON" in error_body(response, 400, 3)["message"]


def test_upload_backend_rejects_chunk(client: httpx.Client) -> None:
    response = client.post(UPLOAD, content=b'{"name": "a"}\n{"name": "fail"}\n{"name": "b"}\n')
    assert error_body(response, 400, 3)["message"] == "bad chunk"


def test_upload_truncated_body_is_not_completed(gateway: GatewayServer, backend: Any) -> None:
    """Content-Length promises more than arrives before the client half-closes: the lines received may
    have been forwarded, but the stream is never half-closed upstream as if complete."""
    backend.reset()
    body = b'{"name": "a", "data": "x"}\n{"name": "b", "data": "y"}\n'
    request = start_request("POST", UPLOAD, [("Content-Length", str(len(body) + 100))]) + body
    data = raw_until_close(gateway.port, request)
    assert b" 200 " not in data.split(b"\r\n", 1)[0]
    assert wait_until(lambda: bool(backend.recorder.for_method("Upload")), timeout=3)
    call = backend.recorder.last("Upload")
    assert wait_until(lambda: call.cancelled), "the upstream call was left open or completed"
    assert call.messages_sent == 0


def test_upload_rejects_query_parameters(client: httpx.Client, backend: Any) -> None:
    """Body `*`: no field is left for the query."""
    response = client.post(UPLOAD + "?name=x", content=b'{"name": "a"}\n')
    error_body(response, 400, 3)
    # The call may have been started before the first line was built; it must not complete.
    for call in backend.recorder.for_method("Upload"):
        assert call.messages == []
        assert call.messages_sent == 0


# -------------------------------------------------------------------------------------------------- bidi


def test_chat_room_applies_to_first_message(client: httpx.Client, backend: Any) -> None:
    response = client.post(CHAT + "?room=lobby", content=b'{"user": "ann", "text": "hi"}\n{"text": "bye"}\n')
    assert response.status_code == 200
    assert response.headers["content-type"] == NDJSON
    assert results(ndjson(response)) == [
        {"user": "system", "text": "joined lobby", "seq": "-1"},
        {"user": "echo", "text": "hi", "seq": "0"},
        {"user": "echo", "text": "bye", "seq": "1"},
    ]
    messages = backend.recorder.last("Chat").messages
    assert [(m.room, m.message.user, m.message.text) for m in messages] == [
        ("lobby", "ann", "hi"),
        ("", "", "bye"),
    ]


def test_chat_full_duplex_over_http1(gateway: GatewayServer) -> None:
    """Replies flow while the request body is still open: each echo is read before the next line is sent."""
    with RawStream(gateway.port) as stream:
        stream.send(start_request("POST", CHAT + "?room=duplex", [("Accept", NDJSON)], chunked=True))
        stream.send_chunk(b'{"text": "one"}\n')
        assert stream.read_head() == 200
        assert stream.json_line() == {"result": {"user": "system", "text": "joined duplex", "seq": "-1"}}
        assert stream.json_line() == {"result": {"user": "echo", "text": "one", "seq": "0"}}
        stream.send_chunk(b'{"text": "two"}\n')
        assert stream.json_line() == {"result": {"user": "echo", "text": "two", "seq": "1"}}
        stream.send_chunk(b'{"text": "three"}')  # no newline: a line only once the body ends
        time.sleep(0.2)
        stream.send(LAST_CHUNK)
        assert stream.json_line() == {"result": {"user": "echo", "text": "three", "seq": "2"}}
        assert stream.json_line() is None
        assert stream.ended


def test_chat_failure_after_replies(client: httpx.Client) -> None:
    # "fail" is the last line on purpose: a line written upstream while the backend's status is on its way
    # hits a grpc.aio race (grpcio 1.85): the failed write replaces the server's status with INTERNAL
    # "Internal error from Core" in ~15% of calls, with or without the gateway (reads concurrent to writes).
    response = client.post(CHAT, content=b'{"text": "hi"}\n{"text": "fail"}\n')
    assert response.status_code == 200
    *replies, last = ndjson(response)
    assert results(replies) == [{"user": "echo", "text": "hi", "seq": "0"}]
    assert last == {
        "error": {"code": 9, "message": "chat message 1 asked to fail", "details": []},
        "trailers": {},
    }


def test_chat_failure_before_any_reply(client: httpx.Client) -> None:
    response = client.post(CHAT, content=b'{"text": "fail"}\n')
    assert response.status_code == 400
    assert ndjson(response) == [
        {"error": {"code": 9, "message": "chat message 0 asked to fail", "details": []}, "trailers": {}}
    ]


def test_chat_bad_line_after_replies(client: httpx.Client) -> None:
    """A bad request line once replies were sent: reported as the final error line (INVALID_ARGUMENT)."""
    with client.stream("POST", CHAT, content=_lines_then_bad()) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert results(lines[:1]) == [{"user": "echo", "text": "ok", "seq": "0"}]
    assert len(lines) == 2
    assert lines[1]["error"]["code"] == 3
    assert "malformed JSON" in lines[1]["error"]["message"]


def _lines_then_bad() -> Any:
    yield b'{"text": "ok"}\n'
    time.sleep(0.3)  # the echo goes out first
    yield b"{oops\n"


# --------------------------------------------------------------------------------------------- WebSocket


def ws_url(gateway: GatewayServer, path: str) -> str:
    return gateway.url.replace("http://", "ws://") + path


def ws_drain(ws: ClientConnection) -> tuple[list[Any], int | None, str]:
    """Every remaining message as JSON, then the server's close code and reason."""
    messages = []
    try:
        while True:
            messages.append(plain(json.loads(ws.recv(timeout=WS_TIMEOUT))))
    except ConnectionClosed as closed:
        frame = closed.rcvd
        return messages, (frame.code if frame else None), (frame.reason if frame else "")


def test_ws_watch_uses_the_get_binding(gateway: GatewayServer, backend: Any) -> None:
    """Watch has GET and POST bindings on the same path; a WebSocket route is found by path only, and the
    runtime takes the first route by rank, declaration order among equal ranks: the GET binding (no body).
    So the stream starts without a request message, from path and query alone; a message the client sends
    is not a request (the POST binding's WebSocket handler is unreachable)."""
    backend.reset()
    with connect(ws_url(gateway, WATCH + "?count=3"), open_timeout=WS_TIMEOUT) as ws:
        ws.send(json.dumps({"count": 7}))
        messages, code, _ = ws_drain(ws)
    *events, end = messages
    assert seqs(results(events)) == [0, 1, 2]
    assert end == {"end": {"trailers": FEED_TRAILERS}}
    assert code == 1000
    call = backend.recorder.last("Watch")
    assert (call.request.shelf, call.request.count) == ("shelves/fiction", 3)


def test_ws_watch_titles(gateway: GatewayServer) -> None:
    with connect(ws_url(gateway, TITLES + "?count=2"), open_timeout=WS_TIMEOUT) as ws:
        messages, code, _ = ws_drain(ws)
    assert messages == [{"result": "event 0"}, {"result": "event 1"}, {"end": {"trailers": FEED_TRAILERS}}]
    assert code == 1000


def test_ws_upload(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with connect(ws_url(gateway, UPLOAD), open_timeout=WS_TIMEOUT) as ws:
        ws.send(json.dumps({"name": "a", "data": "xy"}))
        ws.send(json.dumps({"name": "b", "data": "z"}).encode())  # binary frames carry UTF-8 JSON too
        ws.send("")
        messages, code, _ = ws_drain(ws)
    assert messages == [
        {"result": {"chunks": 2, "bytes": "3", "names": ["a", "b"]}},
        {"end": {"trailers": {}}},
    ]
    assert code == 1000
    assert len(backend.recorder.last("Upload").messages) == 2


def test_ws_chat_interleaved(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with connect(ws_url(gateway, CHAT + "?room=lobby"), open_timeout=WS_TIMEOUT) as ws:
        ws.send(json.dumps({"user": "ann", "text": "hi"}))
        assert json.loads(ws.recv(timeout=WS_TIMEOUT)) == {
            "result": {"user": "system", "text": "joined lobby", "seq": "-1"}
        }
        assert json.loads(ws.recv(timeout=WS_TIMEOUT)) == {
            "result": {"user": "echo", "text": "hi", "seq": "0"}
        }
        ws.send(json.dumps({"text": "again"}))
        assert json.loads(ws.recv(timeout=WS_TIMEOUT)) == {
            "result": {"user": "echo", "text": "again", "seq": "1"}
        }
        ws.send("null")
        messages, code, _ = ws_drain(ws)
    assert messages == [{"end": {"trailers": {}}}]
    assert code == 1000
    rooms = [m.room for m in backend.recorder.last("Chat").messages]
    assert rooms == ["lobby", ""]


def test_ws_watch_error_closes_with_4000_plus_code(gateway: GatewayServer) -> None:
    with connect(ws_url(gateway, WATCH + "?count=3&failCode=9&failAfter=1"), open_timeout=WS_TIMEOUT) as ws:
        messages, code, reason = ws_drain(ws)
    *events, last = messages
    assert seqs(results(events)) == [0]
    assert last == {"error": stream_failure(9, 1), "trailers": FEED_TRAILERS}
    assert code == 4009
    assert reason == "failed after 1 events"


def test_ws_watch_not_found(gateway: GatewayServer) -> None:
    with connect(ws_url(gateway, MISSING), open_timeout=WS_TIMEOUT) as ws:
        messages, code, _ = ws_drain(ws)
    assert [m["error"]["code"] for m in messages] == [5]
    assert code == 4005


def test_ws_watch_bad_query(gateway: GatewayServer, backend: Any) -> None:
    """The request is built after the handshake: a bad query is an error message and close 4003."""
    backend.reset()
    with connect(ws_url(gateway, WATCH + "?count=many"), open_timeout=WS_TIMEOUT) as ws:
        messages, code, _ = ws_drain(ws)
    [message] = messages
    assert message["error"]["code"] == 3
    assert "count" in message["error"]["message"]
    assert code == 4003
    assert backend.recorder.for_method("Watch") == []


def test_ws_chat_failure(gateway: GatewayServer) -> None:
    with connect(ws_url(gateway, CHAT), open_timeout=WS_TIMEOUT) as ws:
        ws.send(json.dumps({"text": "hi"}))
        assert json.loads(ws.recv(timeout=WS_TIMEOUT))["result"]["text"] == "hi"
        ws.send(json.dumps({"text": "fail"}))
        messages, code, _ = ws_drain(ws)
    failure = {"code": 9, "message": "chat message 1 asked to fail", "details": []}
    assert messages == [{"error": failure, "trailers": {}}]
    assert code == 4009


def test_ws_bad_json_message(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with connect(ws_url(gateway, CHAT), open_timeout=WS_TIMEOUT) as ws:
        ws.send("not json")
        messages, code, _ = ws_drain(ws)
    [message] = messages
    assert message["error"]["code"] == 3
    assert "malformed JSON" in message["error"]["message"]
    assert code == 4003
    for call in backend.recorder.for_method("Chat"):
        assert call.messages == []


def test_ws_handshake_to_unary_route_is_refused(gen_dir: Path, backend: Any) -> None:
    """`--server granian`: accepted, then the error message and close 4005 at once — no result, no HTTP
    answer carrying `Upgrade` headers (granian would add them to an HTTP refusal)."""
    gateway = GatewayServer(gen_dir, backend.port, ["--server", "granian"])
    try:
        with connect(ws_url(gateway, "/v1/shelves/fiction/books/dune"), open_timeout=WS_TIMEOUT) as ws:
            assert json.loads(ws.recv(timeout=WS_TIMEOUT))["error"]["code"] == 5
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=WS_TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4005
    finally:
        gateway.stop()


def test_ws_handshake_to_unary_route_is_refused_in_one_response_by_uvicorn(
    uvicorn_gateway: GatewayServer,
) -> None:
    """uvicorn (the default with WebSocket routes): one complete HTTP 404 with a JSON Status: no 101."""
    gateway = uvicorn_gateway
    request = start_request(
        "GET",
        "/v1/shelves/fiction/books/dune",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    data = raw_until_close(gateway.port, request, half_close=False)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404"), data
    assert b" 101 " not in data
    headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
    headers = {key.lower(): value for key, value in headers.items()}
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert json.loads(body)["code"] == 5


def test_ws_client_close_cancels_backend(gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    with connect(ws_url(gateway, WATCH + "?count=100&intervalMs=100"), open_timeout=WS_TIMEOUT) as ws:
        for _ in range(2):
            assert "result" in json.loads(ws.recv(timeout=WS_TIMEOUT))
    call = backend.recorder.last("Watch")
    assert wait_until(call_cancelled(call), timeout=5), "the backend call outlived the WebSocket"
    assert call.messages_sent < 100


def test_ws_chat_client_abort_cancels_backend(gateway: GatewayServer, backend: Any) -> None:
    """The TCP connection dropped without a close handshake: the bidi call is cancelled too."""
    backend.reset()
    with connect(ws_url(gateway, CHAT), open_timeout=WS_TIMEOUT) as ws:
        ws.send(json.dumps({"text": "hi"}))
        assert "result" in json.loads(ws.recv(timeout=WS_TIMEOUT))
        ws.socket.shutdown(socket.SHUT_RDWR)
    call = backend.recorder.last("Chat")
    assert wait_until(call_cancelled(call), timeout=5), "the backend call outlived the connection"


def call_cancelled(call: Any) -> Any:
    return lambda: call.cancelled


def test_client_stream_with_empty_body_still_validates_query(client: httpx.Client, backend: Any) -> None:
    """No request line at all: an unknown query parameter is still a 400, not silently dropped."""
    response = client.post("/v1/uploads?bogus=1", content=b"")
    assert response.status_code == 400
    assert "bogus" in response.json()["message"]
    empty = client.post("/v1/uploads", content=b"")
    assert empty.status_code == 200
    assert empty.json()["chunks"] == 0
