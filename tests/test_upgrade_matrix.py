"""The upgrade matrix: the generated gateway under several ASGI server configurations (tests/servers.py) and
behind an ingress-like nginx, probed over raw sockets with exact bytes for requests carrying `Upgrade` /
`Connection: upgrade` headers (what ingresses, curl and browsers send).

MATRIX below is the one table of expected outcomes; docs/upgrade-matrix.md is MATRIX rendered
(`python -m tests.test_upgrade_matrix --write` rewrites it; `test_doc_matches_matrix` keeps them in sync).

Every cell sends its request(s) on a fresh connection, reads the answer completely (Content-Length,
chunked, WebSocket frames or, after a 101 to h2c, whatever comes until the server goes quiet), then sends
a plain GET on the same connection. Its outcome is one string of tokens, compared with MATRIX[row][cell]:

* the status (`200`, `404`, …) with `(server)` when the answer is not the gateway's JSON (the server
  answered by itself, the app never ran); `101→h2` the server switched the connection to HTTP/2 (an
  HTTP/1.1 client reads nothing more); `101→ws` a WebSocket was accepted;
* stream lines as `k/N` (k messages in order of N expected; `sseK/N` for SSE events), `buffered` when all
  of a paced stream arrived at once, `body✗` an incomplete or wrong body, `upgrade-hdr` the response
  carries `Upgrade` or `Connection: upgrade`;
* `incomplete` the gateway's 400 "request body incomplete" (its Content-Length guard), `backend✗` the
  backend was not called, `sent0` the client stream sent no request message and was cancelled (if it
  reached the backend at all), never half-closed as an empty stream;
* `hop!` the backend received hop-by-hop metadata (connection, upgrade, http2-settings, …);
* then the connection: `next✓` the plain GET on it was answered, `close` the server closed it, `hang` it
  stayed open but the GET got no answer within HANG_WAIT seconds; WebSocket cells end in `close<code>`.

Known-bad configurations stay in the table as the exact bad outcome they produce (documented failures),
so a change in any server's behaviour fails here and gets re-measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import http_request, parse_head
from tests.servers import CONFIGS, Nginx, describe, nginx_binary, start_gateways

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "upgrade-matrix.md"

READ_TIMEOUT = 5.0
"""Longest wait for any byte that must come."""
HANG_WAIT = 1.5
"""How long an answer that should come next may be late before the cell calls it lost (`hang`, `+lost`)."""
SWITCH_QUIET = 0.5
"""After a 101 to h2c: read until the server is quiet this long (or closes)."""

HOP_BY_HOP = frozenset(
    {"connection", "upgrade", "http2-settings", "keep-alive", "te", "transfer-encoding", "proxy-connection"}
)
BOOK = "/v1/shelves/fiction/books/dune"
BOOKS = "/v1/shelves/fiction/books"
WATCH = "/v1/shelves/fiction/events:watch"
UPLOADS = "/v1/uploads"
CHAT = "/v1/chat"
COUNT = 5
INTERVAL_MS = 40
WATCH_GET = f"{WATCH}?count={COUNT}&intervalMs={INTERVAL_MS}"
TITLE = "Body Through h2c"

H2C_SETTINGS = [
    ("Upgrade", "h2c"),
    ("Connection", "Upgrade, HTTP2-Settings"),
    ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
]
H2C = [("Upgrade", "h2c"), ("Connection", "upgrade")]
WS_KEEPALIVE = [("Connection", "keep-alive, Upgrade"), ("Upgrade", "websocket")]
WS_NO_KEY = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
WS_VALID = [*WS_NO_KEY, ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
JSON_TYPE = [("Content-Type", "application/json")]
NDJSON_TYPE = [("Content-Type", "application/x-ndjson")]
UPLOAD_BODY = b'{"name": "a", "data": "xy"}\n{"name": "b", "data": "z"}\n'
CHAT_BODY = b'{"user": "u", "text": "hi"}\n{"user": "u", "text": "ho"}\n'


# ------------------------------------------------------------------------------------------------ the table

#: cell -> (route kind, what is sent). "unary" cells use the shop routes; "stream" cells the FeedService
#: routes (skipped when the gateway does not generate them).
CELLS: dict[str, tuple[str, str]] = {
    "a": ("unary", "plain `GET /v1/shelves/fiction/books/dune`"),
    "b": (
        "unary",
        "`Upgrade: h2c` + `Connection: Upgrade, HTTP2-Settings` + `HTTP2-Settings: AAMAAABkAAQAAP__`",
    ),
    "c": ("unary", "`Upgrade: h2c` + `Connection: upgrade`"),
    "c2": ("unary", "`Connection: keep-alive, Upgrade` + `Upgrade: websocket` (Firefox-style, no key)"),
    "d": (
        "unary",
        "`Upgrade: websocket` + `Connection: Upgrade` without `Sec-WebSocket-Key` (malformed handshake)",
    ),
    "f": (
        "unary",
        '`POST /v1/shelves/fiction/books`, JSON body `{"title": …}` and the b headers: the title must reach '
        "the backend and come back",
    ),
    "g": ("unary", "a c request and a plain `GET /v1/shelves/fiction/books` pipelined in one `send()`"),
    "ws": (
        "unary",
        "a valid WebSocket handshake to the (non-streaming) book route: refused with one complete HTTP "
        "answer, served as plain HTTP, or accepted and closed at once with the gateway's error message "
        "(`errorN` its gRPC code) — never a half-streamed response",
    ),
    "sa": ("stream", f"plain `GET {WATCH_GET}` ({COUNT} NDJSON lines {INTERVAL_MS} ms apart)"),
    "sb": ("stream", "the stream with the b headers"),
    "sc": ("stream", "the stream with the c headers"),
    "sc2": ("stream", "the stream with the c2 headers"),
    "sd": ("stream", "the stream with the d headers"),
    "sse": ("stream", "the stream with `Accept: text/event-stream` and the c headers (SSE events + `end`)"),
    "sf": ("stream", f'`POST {WATCH}`, JSON body `{{"count": 3, …}}` and the b headers: 3 lines'),
    "sg": ("stream", "the stream with the c headers and a plain GET pipelined in one `send()`"),
    "up": ("stream", f"client streaming `POST {UPLOADS}`, 2 NDJSON lines and the b headers"),
    "chat": ("stream", f"bidi `POST {CHAT}`, 2 NDJSON lines and the b headers: 2 echoes"),
    "sws": ("stream", "a valid WebSocket handshake to the stream route"),
}

_OK = "200 next✓"
_S = f"200 {COUNT}/{COUNT} next✓"
_FINE_STREAMS = {
    "sa": _S,
    "sb": _S,
    "sc": _S,
    "sse": f"200 sse{COUNT}/{COUNT} next✓",
    "sf": "200 3/3 next✓",
    "sg": f"200 {COUNT}/{COUNT}+200 next✓",
    "up": _OK,
    "chat": "200 2/2 next✓",
}
_WS_NONE = {"c2": _OK, "d": _OK, "ws": _OK, "sc2": _S, "sd": _S, "sws": _S}
_WS_ON = {
    "c2": "400(server) close",
    "d": "400(server) close",
    "ws": "404 close",
    "sc2": "400(server) close",
    "sd": "400(server) close",
    "sws": f"101→ws {COUNT}/{COUNT} close1000",
}
_H11 = {"a": _OK, "b": _OK, "c": _OK, "f": _OK, "g": "200+200 next✓", **_FINE_STREAMS}
#: uvicorn's httptools parser drops everything after the head of an `Upgrade` request it does not
#: handle: the body (the gateway's Content-Length guard answers 400 instead of calling the backend with an
#: empty message) and any request pipelined behind it (never answered).
_HTTPTOOLS = {
    **_H11,
    "f": "400 incomplete backend✗ next✓",
    "g": "200+lost next✓",
    "sf": "400 incomplete backend✗ next✓",
    "sg": f"200 {COUNT}/{COUNT}+lost next✓",
    "up": "400 incomplete sent0 next✓",
    "chat": "400 incomplete sent0 next✓",
}
#: Behind nginx the client keeps its connection whatever the server did to nginx's upstream connection;
#: nginx does not pipeline upstream, so only the dropped bodies remain.
_NGINX_WS_ON = {
    "c2": "400(server) next✓",
    "d": "400(server) next✓",
    "ws": "404 next✓",
    "sc2": "400(server) next✓",
    "sd": "400(server) next✓",
    "sws": f"101→ws {COUNT}/{COUNT} close1000",
}

#: row -> cell -> expected outcome. The rows `default` and `nginx-default` are not here: they must behave
#: exactly like the row of the configuration the serve command picks (`served_as`).
MATRIX: dict[str, dict[str, str]] = {
    "uvicorn-h11-none": {**_H11, **_WS_NONE},
    "uvicorn-h11-wsproto": {**_H11, **_WS_ON},
    "uvicorn-httptools-none": {**_HTTPTOOLS, **_WS_NONE},
    "uvicorn-httptools-wsproto": {**_HTTPTOOLS, **_WS_ON},
    "granian": {**_H11, **_WS_NONE},
    # granian keeps the connection after refusing a handshake, and its refusal (the gateway's 404) carries
    # `connection: upgrade`, `upgrade: websocket` and a `sec-websocket-accept` header.
    "granian-ws": {
        **_H11,
        **_WS_ON,
        "c2": "400(server) next✓",
        "d": "400(server) next✓",
        "ws": "404 upgrade-hdr next✓",
        "sc2": "400(server) next✓",
        "sd": "400(server) next✓",
    },
    # The serve command's granian: embedded, and the gateway refuses a handshake to a unary route by
    # accepting it and closing at once with its `{"error": Status}` message (close 4000 + NOT_FOUND), so no
    # HTTP answer carries `Upgrade` headers.
    "granian-embedded-ws": {
        **_H11,
        **_WS_ON,
        "c2": "400(server) next✓",
        "d": "400(server) next✓",
        "ws": "101→ws error5 close4005",
        "sc2": "400(server) next✓",
        "sd": "400(server) next✓",
    },
    # hypercorn switches any body-less `Upgrade: h2c` request to HTTP/2 (its h2c cannot be turned off), so
    # an HTTP/1.1 client gets nothing; after a refused handshake it says `connection: close` and neither
    # closes nor answers.
    # The serve command with WebSocket routes (uvicorn, the gateway's HTTP protocol, wsproto): plain HTTP
    # in every cell but the real handshakes; a handshake to a unary route gets the gateway's complete 404
    # (uvicorn then closes the connection, as after any refused handshake).
    "uvicorn-embedded-ws": {**_H11, **_WS_NONE, "ws": "404 close", "sws": _WS_ON["sws"]},
    "hypercorn": {
        **_H11,
        **_WS_ON,
        "b": "101→h2",
        "c": "101→h2",
        "g": "101→h2",
        "c2": "400(server) hang",
        "d": "400(server) hang",
        "sb": "101→h2",
        "sc": "101→h2",
        "sse": "101→h2",
        "sg": "101→h2",
        "sc2": "400(server) hang",
        "sd": "400(server) hang",
    },
    "nginx-uvicorn-h11-none": {**_H11, **_WS_NONE},
    "nginx-uvicorn-h11-wsproto": {**_H11, **_NGINX_WS_ON},
    "nginx-granian-embedded-ws": {**_H11, **_NGINX_WS_ON, "ws": "101→ws error5 close4005"},
    "nginx-uvicorn-embedded-ws": {**_H11, **_WS_NONE, "ws": "404 next✓", "sws": _WS_ON["sws"]},
    "nginx-uvicorn-httptools-none": {
        **_HTTPTOOLS,
        **_WS_NONE,
        "g": "200+200 next✓",
        "sg": _FINE_STREAMS["sg"],
    },
}

#: A short verdict per row for the docs.
VERDICTS: dict[str, str] = {
    "uvicorn-h11-none": (
        "**use** (the serve command with `--server uvicorn --websocket off`): every cell plain HTTP, "
        "bodies intact."
    ),
    "uvicorn-h11-wsproto": (
        "**use** (the serve command with `--server uvicorn`): like h11-none, except that WebSocket-looking "
        "requests (c2, d) get the server's own 400 and a closed connection, no data lost."
    ),
    "uvicorn-httptools-none": (
        "**avoid**: drops the body of every `Upgrade` request (f, sf, up, chat: 400 from the gateway's "
        "guard instead of an empty message reaching the backend) and loses pipelined requests (g, sg)."
    ),
    "uvicorn-httptools-wsproto": "**avoid**: the httptools losses plus the WebSocket refusals.",
    "granian": "fine (`--interface asgi --http 1 --no-ws`): every cell plain HTTP.",
    "granian-ws": (
        "acceptable: WebSocket refusals keep the connection, but the gateway's 404 to a handshake goes out "
        "with `connection: upgrade`/`upgrade: websocket` headers."
    ),
    "granian-embedded-ws": (
        "acceptable (`--server granian` with WebSocket routes): like granian-ws, and a handshake to a "
        "unary route is accepted and closed at once with the gateway's error (close 4005), so no HTTP "
        "answer carries `Upgrade` headers; but c2/d/sc2/sd never reach the gateway (granian's 400)."
    ),
    "uvicorn-embedded-ws": (
        "**use** (the serve command's default with WebSocket routes): every cell plain HTTP but the real "
        "handshakes, which get WebSocket on streaming routes and one complete 404 elsewhere."
    ),
    "hypercorn": (
        "**avoid** in cleartext behind anything that forwards `Upgrade`: answers h2c with 101 + HTTP/2 "
        "(an HTTP/1.1 client gets nothing) and hangs the connection after a refused handshake."
    ),
    "nginx-uvicorn-h11-none": "**use**: the ingress-like proxy changes nothing.",
    "nginx-uvicorn-h11-wsproto": (
        "**use**: nginx keeps the client connection open after the server's refusals."
    ),
    "nginx-granian-embedded-ws": (
        "acceptable: nginx keeps the client connection open after the server's refusals."
    ),
    "nginx-uvicorn-embedded-ws": "**use**: every cell plain HTTP behind the ingress-like proxy too.",
    "nginx-uvicorn-httptools-none": (
        "**avoid**: nginx forwards `Upgrade: h2c` + `Connection: upgrade`, so bodies are still dropped."
    ),
}

UNARY_CELLS = [cell for cell, (kind, _) in CELLS.items() if kind == "unary"]
STREAM_CELLS = [cell for cell, (kind, _) in CELLS.items() if kind == "stream"]
NGINX_FRONTS = [
    "default",
    "granian-embedded-ws",
    "uvicorn-embedded-ws",
    "uvicorn-h11-none",
    "uvicorn-h11-wsproto",
    "uvicorn-httptools-none",
]
ROWS = [*CONFIGS, *(f"nginx-{front}" for front in NGINX_FRONTS)]


# ---------------------------------------------------------------------------------------------- raw wire


@dataclasses.dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "length"
    """"length", "chunked", "close" (read to EOF), "h2c" (101: the raw bytes that followed), "websocket"."""
    complete: bool = True
    arrivals: list[float] = dataclasses.field(default_factory=list)
    """monotonic time of each body chunk (chunked framing)."""

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


class ClosedError(Exception):
    """The server closed the connection."""


class SilentError(Exception):
    """Nothing came within the wait."""


def _ws_header(data: bytes) -> tuple[int, int, int] | None:
    """(opcode, header size, payload length) of the unmasked frame starting `data`; None if incomplete."""
    if len(data) < 2:
        return None
    opcode, length = data[0] & 0x0F, data[1] & 0x7F
    size = {126: 4, 127: 10}.get(length, 2)
    if len(data) < size:
        return None
    if size > 2:
        length = int.from_bytes(data[2:size], "big")
    return opcode, size, length


class Wire:
    """One client connection speaking exact bytes; every read bounded by a timeout."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.buffer = b""
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def _fill(self, timeout: float = READ_TIMEOUT) -> None:
        if self.eof:
            raise ClosedError
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise SilentError from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise ClosedError
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, wait: float = READ_TIMEOUT) -> Answer:
        """The next response; ClosedError / SilentError when none starts (within `wait`)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill(wait)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        answer = Answer(status, headers)
        try:
            if status == 101 and (answer.header("upgrade") or "").lower() == "websocket":
                answer.framing = "websocket"  # frames stay in the buffer for ws_frames()
            elif status == 101:
                answer.framing = "h2c"
                self._drain(SWITCH_QUIET)
                answer.body = self._take(len(self.buffer))
            elif (answer.header("transfer-encoding") or "").lower() == "chunked":
                answer.framing = "chunked"
                self._chunked(answer)
            elif answer.header("content-length") is not None:
                length = int(answer.header("content-length") or "0")
                while len(self.buffer) < length:
                    self._fill()
                answer.body = self._take(length)
            elif not (status in (204, 304) or 100 <= status < 200):
                answer.framing = "close"
                self._drain(READ_TIMEOUT)
                answer.body = self._take(len(self.buffer))
                answer.complete = self.eof
        except (ClosedError, SilentError):
            answer.complete = False
            answer.body += self._take(len(self.buffer))
        return answer

    def _drain(self, quiet: float) -> None:
        """Read until the peer closes or is quiet for `quiet` seconds."""
        with_data = True
        while with_data:
            try:
                self._fill(quiet)
            except (ClosedError, SilentError):
                with_data = False

    def _chunked(self, answer: Answer) -> None:
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                self._fill()
            chunk = self._take(size)
            self._take(2)
            if size == 0:  # no trailers are asked for (no `TE: trailers`)
                return
            answer.arrivals.append(time.monotonic())
            answer.body += chunk

    def ws_frames(self) -> tuple[list[bytes], int | None]:
        """Server WebSocket frames until a close frame: (text/binary payloads, close code or None)."""
        messages: list[bytes] = []
        try:
            while True:
                header = _ws_header(self.buffer)
                if header is None or len(self.buffer) < sum(header[1:]):
                    self._fill()
                    continue
                opcode, offset, length = header
                self._take(offset)
                payload = self._take(length)
                if opcode == 0x8:
                    return messages, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                if opcode in (0x1, 0x2):
                    messages.append(payload)
        except (ClosedError, SilentError):
            return messages, None

    def connection_state(self) -> str:
        """`next✓` when a plain GET on this connection is answered 200, else `close` / `hang`."""
        if self.eof or not self.send(http_request("GET", BOOK, [])):
            return "close"
        try:
            answer = self.response(HANG_WAIT)
        except ClosedError:
            return "close"
        except SilentError:
            return "hang"
        return "next✓" if answer.status == 200 and answer.complete else f"next✗({answer.status})"


# ------------------------------------------------------------------------------------------------- checks

Check = Callable[[Answer], list[str]]


def _status_tokens(answer: Answer) -> list[str]:
    """Status (with `(server)` when it is not the gateway's JSON) and header problems."""
    if answer.status == 101:
        return [{"h2c": "101→h2", "websocket": "101→ws"}.get(answer.framing, "101")]
    token = str(answer.status)
    if answer.status >= 400:
        try:
            is_json = (answer.header("content-type") or "").startswith("application/json")
            gateway_error = is_json and sorted(answer.json()) == ["code", "details", "message"]
        except ValueError:
            gateway_error = False
        token += "" if gateway_error else "(server)"
    tokens = [token]
    if not answer.complete:
        tokens.append("body✗")
    if answer.header("upgrade") is not None or "upgrade" in (answer.header("connection") or "").lower():
        tokens.append("upgrade-hdr")
    return tokens


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def book_check(title: str = "Dune") -> Check:
    def check(answer: Answer) -> list[str]:
        if answer.status != 200:
            return []
        body = _json_or_none(answer.body)
        return [] if isinstance(body, dict) and body.get("title") == title else ["body✗"]

    return check


def _paced(answer: Answer, count: int) -> list[str]:
    """`buffered` when a stream paced INTERVAL_MS apart arrived all at once.

    A buffering proxy hands over every line in one go (a spread of ~0); a test client that a loaded
    machine does not schedule for a while also reads several lines at once, so only a spread below a
    quarter of one interval counts (that client would have to sleep through all but one interval).
    """
    if count < 2 or len(answer.arrivals) < 2:
        return []
    spread = answer.arrivals[-1] - answer.arrivals[0]
    return ["buffered"] if spread < INTERVAL_MS / 1000 / 4 else []


def _in_order(results: list[Any], key: str = "seq") -> int:
    """How many of `results` carry seq 0, 1, ... in order (int64 seq comes as a JSON string)."""
    good = 0
    for index, result in enumerate(results):
        if not isinstance(result, dict) or str(result.get(key, 0)) != str(index):
            break
        good += 1
    return good


def ndjson_check(count: int, paced: bool = True) -> Check:
    def check(answer: Answer) -> list[str]:
        if answer.status != 200:
            return []
        lines = [_json_or_none(line) for line in answer.body.split(b"\n") if line.strip()]
        results = [line["result"] for line in lines if isinstance(line, dict) and "result" in line]
        tokens = [f"{_in_order(results)}/{count}"]
        if len(results) != len(lines) or answer.framing != "chunked":
            tokens.append("body✗")
        return tokens + (_paced(answer, count) if paced else [])

    return check


def sse_check(count: int) -> Check:
    def check(answer: Answer) -> list[str]:
        if answer.status != 200:
            return []
        events = [event for event in answer.body.decode(errors="replace").split("\n\n") if event.strip()]
        data = [_json_or_none(e[len("data: ") :].encode()) for e in events if e.startswith("data: ")]
        ended = bool(events) and events[-1].startswith("event: end\n")
        tokens = [f"sse{_in_order(data)}/{count}"]
        return tokens + ([] if ended and len(data) == len(events) - 1 else ["body✗"]) + _paced(answer, count)

    return check


# ------------------------------------------------------------------------------------------------- cells


class Probe:
    """Runs the cells against one listening port and reads what the backend received."""

    def __init__(self, port: int, backend: Any) -> None:
        self.port = port
        self.backend = backend

    def backend_tokens(self) -> list[str]:
        seen = {key for call in self.backend.recorder.calls for key, _ in call.metadata}
        return ["hop!"] if seen & HOP_BY_HOP else []

    def exchange(
        self, request: bytes, check: Check, then: bytes = b"", then_check: Check | None = None
    ) -> str:
        """Send `request` (+ `then` pipelined in the same send), read the answer(s), probe the connection."""
        wire = Wire(self.port)
        try:
            wire.send(request + then)
            try:
                answer = wire.response()
            except ClosedError:
                return " ".join(["close(no answer)", *self.backend_tokens()])
            except SilentError:
                return " ".join(["hang(no answer)", *self.backend_tokens()])
            tokens = _status_tokens(answer)
            if answer.framing == "websocket":
                tokens += self._websocket(wire)
            elif answer.framing != "h2c":
                tokens += check(answer)
                if then:
                    tokens[-1] += self._second(wire, then_check or book_check())
                tokens.append(wire.connection_state())
            return " ".join(tokens + self.backend_tokens())
        finally:
            wire.close()

    def _second(self, wire: Wire, check: Check) -> str:
        try:
            second = wire.response(HANG_WAIT)
        except (ClosedError, SilentError):
            return "+lost"
        problems = _status_tokens(second)[1:] + check(second)
        return f"+{second.status}" + "".join(f" {token}" for token in problems)

    def _websocket(self, wire: Wire) -> list[str]:
        messages, code = wire.ws_frames()
        data = [_json_or_none(message) for message in messages]
        if len(data) == 1 and isinstance(data[0], dict) and "error" in data[0]:  # a refusal after accepting
            return [
                f"error{data[0]['error'].get('code')}",
                f"close{code}" if code is not None else "no-close",
            ]
        results = [item["result"] for item in data if isinstance(item, dict) and "result" in item]
        ended = bool(data) and isinstance(data[-1], dict) and "end" in data[-1]
        tokens = [f"{_in_order(results)}/{COUNT}"]
        if not ended or len(results) != len(data) - 1:
            tokens.append("body✗")
        return [*tokens, f"close{code}" if code is not None else "no-close"]

    def _incomplete(self, method: str, declared: int, streaming: bool = False) -> Check:
        """For a 400: `incomplete` (the gateway's body guard), then what reached the backend: `backend✗`
        (a unary method, deterministic: the body is checked before the call) or, for a client stream
        (opened before its body is complete), `sent0`: no request message, and the call, if it reached
        the backend at all, was cancelled (never half-closed as an empty stream)."""

        def check(answer: Answer) -> list[str]:
            body = _json_or_none(answer.body) if answer.status == 400 else None
            if not isinstance(body, dict):
                return []
            # Every body here is sent with its head in one send(): a dropped body is dropped whole.
            guard = f"request body incomplete: received 0 of {declared} bytes declared by Content-Length"
            tokens = ["incomplete" if body.get("message") == guard and body.get("code") == 3 else "400?"]
            calls = self.backend.recorder.for_method(method)
            if not streaming:
                return [*tokens, "backend✗" if not calls else "backend-called!"]
            deadline = time.monotonic() + 1.0  # the cancellation reaches the recorder a moment later
            while calls and not all(call.cancelled for call in calls) and time.monotonic() < deadline:
                time.sleep(0.02)
            if any(call.messages for call in calls):
                return [*tokens, "sent>0!"]
            return [*tokens, "sent0" if all(call.cancelled for call in calls) else "half-closed-empty!"]

        return check

    # -- unary routes

    def a(self) -> str:
        return self.exchange(http_request("GET", BOOK, []), book_check())

    def b(self) -> str:
        return self.exchange(http_request("GET", BOOK, H2C_SETTINGS), book_check())

    def c(self) -> str:
        return self.exchange(http_request("GET", BOOK, H2C), book_check())

    def c2(self) -> str:
        return self.exchange(http_request("GET", BOOK, WS_KEEPALIVE), book_check())

    def d(self) -> str:
        return self.exchange(http_request("GET", BOOK, WS_NO_KEY), book_check())

    def f(self) -> str:
        body = json.dumps({"title": TITLE}).encode()
        echo, guard = book_check(TITLE), self._incomplete("CreateBook", len(body))

        def check(answer: Answer) -> list[str]:
            if answer.status != 200:
                return guard(answer)
            seen = [call.request.book.title for call in self.backend.recorder.for_method("CreateBook")]
            return echo(answer) + ([] if seen == [TITLE] else [f"backend-saw{seen}"])

        return self.exchange(http_request("POST", BOOKS, [*JSON_TYPE, *H2C_SETTINGS], body), check)

    def g(self) -> str:
        def listed(answer: Answer) -> list[str]:
            body = _json_or_none(answer.body) if answer.status == 200 else None
            books = body.get("books", []) if isinstance(body, dict) else []
            return [] if any(book.get("title") == "Dune" for book in books) else ["body✗"]

        return self.exchange(
            http_request("GET", BOOK, H2C), book_check(), http_request("GET", BOOKS, []), listed
        )

    def ws(self) -> str:
        return self.exchange(http_request("GET", BOOK, WS_VALID), book_check())

    # -- streaming routes

    def sa(self) -> str:
        return self.exchange(http_request("GET", WATCH_GET, []), ndjson_check(COUNT))

    def sb(self) -> str:
        return self.exchange(http_request("GET", WATCH_GET, H2C_SETTINGS), ndjson_check(COUNT))

    def sc(self) -> str:
        return self.exchange(http_request("GET", WATCH_GET, H2C), ndjson_check(COUNT))

    def sc2(self) -> str:
        return self.exchange(http_request("GET", WATCH_GET, WS_KEEPALIVE), ndjson_check(COUNT))

    def sd(self) -> str:
        return self.exchange(http_request("GET", WATCH_GET, WS_NO_KEY), ndjson_check(COUNT))

    def sse(self) -> str:
        return self.exchange(
            http_request("GET", WATCH_GET, [("Accept", "text/event-stream"), *H2C]), sse_check(COUNT)
        )

    def sf(self) -> str:
        body = json.dumps({"count": 3, "intervalMs": INTERVAL_MS}).encode()
        stream, guard = ndjson_check(3), self._incomplete("Watch", len(body))

        def check(answer: Answer) -> list[str]:
            return stream(answer) if answer.status == 200 else guard(answer)

        return self.exchange(http_request("POST", WATCH, [*JSON_TYPE, *H2C_SETTINGS], body), check)

    def sg(self) -> str:
        return self.exchange(
            http_request("GET", WATCH_GET, H2C), ndjson_check(COUNT), http_request("GET", BOOK, [])
        )

    def up(self) -> str:
        guard = self._incomplete("Upload", len(UPLOAD_BODY), streaming=True)

        def check(answer: Answer) -> list[str]:
            if answer.status != 200:
                return guard(answer)
            summary = _json_or_none(answer.body)
            expected = {"chunks": 2, "bytes": "3", "names": ["a", "b"]}
            return [] if summary == expected else ["body✗"]

        return self.exchange(http_request("POST", UPLOADS, [*NDJSON_TYPE, *H2C_SETTINGS], UPLOAD_BODY), check)

    def chat(self) -> str:
        stream, guard = ndjson_check(2, paced=False), self._incomplete("Chat", len(CHAT_BODY), streaming=True)

        def check(answer: Answer) -> list[str]:
            return stream(answer) if answer.status == 200 else guard(answer)

        return self.exchange(http_request("POST", CHAT, [*NDJSON_TYPE, *H2C_SETTINGS], CHAT_BODY), check)

    def sws(self) -> str:
        return self.exchange(http_request("GET", WATCH_GET, WS_VALID), ndjson_check(COUNT))


# ------------------------------------------------------------------------------------------------ the docs


def _row_label(row: str) -> str:
    return f"`{row}`"


def render_tables() -> str:
    """MATRIX as markdown: one table for the unary cells, one for the streaming cells."""
    parts = []
    for title, cells in (("Unary routes", UNARY_CELLS), ("Streaming routes", STREAM_CELLS)):
        parts.append(f"### {title}\n")
        parts.append("| row | " + " | ".join(cells) + " |")
        parts.append("|---|" + "---|" * len(cells))
        for row, outcomes in MATRIX.items():
            parts.append(f"| {_row_label(row)} | " + " | ".join(outcomes[cell] for cell in cells) + " |")
        parts.append("")
    return "\n".join(parts)


def render_doc() -> str:
    cells = "\n".join(f"* **{cell}** — {text}" for cell, (_, text) in CELLS.items())
    verdicts = "\n".join(f"* {_row_label(row)}: {text}" for row, text in VERDICTS.items())
    rows = "\n".join(f"* `{name}`: {describe(name)}" for name in CONFIGS)
    from tests.test_upgrade_proxies import render_proxy_sections  # (it imports this module)

    return _DOC_SKELETON.format(
        cells=cells, tables=render_tables(), verdicts=verdicts, rows=rows, legend=_legend()
    ) + ("\n" + render_proxy_sections())


def _legend() -> str:
    text = __doc__ or ""
    start = text.index("* the status")
    end = text.index("Known-bad")
    return text[start:end].strip()


_DOC_SKELETON = """\
# Upgrade matrix: the generated gateway under ASGI servers and an ingress-like nginx

<!-- Generated from MATRIX in tests/test_upgrade_matrix.py by
     `.venv/bin/python -m tests.test_upgrade_matrix --write`; `make test` fails when they differ. -->

Ingresses (ingress-nginx forwards `Upgrade: $http_upgrade` + `Connection: upgrade` to the pod), curl
(`--http2` sends `Upgrade: h2c` on cleartext) and browsers send requests with `Upgrade` headers that the
gateway must answer as plain HTTP/1.1. Whether it can depends on the ASGI server in front of it: several
answer or drop such requests before the app runs. `tests/test_upgrade_matrix.py` measures every cell
below on each `make test` (raw sockets, exact bytes), with the generated shop + feed gateway against the
demo backend, so this table is what the current code does.

## Cells

Each cell is sent on a fresh keep-alive connection to `GET /v1/shelves/fiction/books/dune` (unary cells)
or `/v1/shelves/fiction/events:watch?count=5&intervalMs=40` (stream cells) unless it says otherwise;
then a plain GET follows on the same connection.

{cells}

## Outcome tokens

{legend}

## Configurations

{rows}

`default` is `python gen/pygateway_serve.py`. For modules with WebSocket routes it runs uvicorn in its own
event loop with the gateway's HTTP protocol (zttp, HTTP/2 by prior knowledge; h11 when zttp is not
installed) and wsproto: only a GET with `Sec-WebSocket-Key` becomes a WebSocket, every other request
carrying `Upgrade: websocket` + `Connection: upgrade` is served as plain HTTP, as Go's net/http does. For
the others it runs granian embedded without WebSocket. It is asserted to behave exactly like the
`uvicorn-embedded-ws` or `granian` row, and `nginx-default` like the matching nginx row (with the testdata
protos, whose FeedService has WebSocket routes: `uvicorn-embedded-ws`). `default-no-ws` is the serve
command with `--websocket off`: asserted like the `granian` row. `--server granian` with WebSocket routes
is the `granian-embedded-ws` row: granian decides in its Rust core that such a request is a handshake and
answers a keyless one with its own 400 before the app runs; no granian setting changes that.

**The trade-off** (measured; details and every candidate in docs/serving.md): granian cannot be told to
serve keyless `Upgrade: websocket` requests as HTTP, so the default for WebSocket modules moved to uvicorn
with the gateway's own HTTP protocol class (a subclass of uvicorn's zttp protocol; h11 without zttp), at
about granian's CPU per request with zttp (+35 % with h11). It relies on uvicorn's private
`_should_upgrade`, which this matrix re-checks on every run; zttp is a young parser; and a valid
handshake to a unary route ends with uvicorn closing the connection after the 404 (granian kept it).
`nginx-X` is nginx with
ingress-nginx's settings (`proxy_http_version 1.1`, `Upgrade $http_upgrade`, `Connection
$connection_upgrade` from `map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}`,
`proxy_buffering off`, `proxy_request_buffering off`) in front of X: its location is generated from the
annotations of the Ingress in `deploy/kubernetes/ingress-nginx.yaml` (tests/servers.py), so the matrix
runs what is deployed. More proxies (HAProxy, Caddy, Apache httpd, nginx with the common `Connection
"upgrade"` snippet) in front of `default`: [below](#more-proxies-in-front-of-the-shipped-default).

## Matrix

{tables}
## Verdicts

{verdicts}

In every row and cell the backend never received hop-by-hop metadata (`connection`, `upgrade`,
`http2-settings`, `keep-alive`, `te`, `transfer-encoding`, `proxy-connection`): the gateway strips them
whatever the server passes (hypercorn passes them even in its HTTP/2 scope).

What the gateway can and cannot do about the bad rows: it never sees the requests a server answers by
itself (hypercorn's 101, WebSocket-enabled servers' 400 to c2/d) nor the bytes httptools drops; it does
see a `content-length` larger than the body it received, and answers that with 400 `request body
incomplete` instead of calling the backend with an emptied message.
"""


# ---------------------------------------------------------------------------------------------- fixtures


def has_websocket_routes(gen: Path) -> bool:
    """Whether a generated gateway module has WebSocket routes (the serve command then enables wsproto)."""
    marker = re.compile(r"^WEBSOCKET_ROUTES = True$", re.MULTILINE)
    return any(marker.search(path.read_text()) for path in gen.rglob("*_pb2_gateway_*.py"))


def has_stream_routes(gen: Path) -> bool:
    return any("events:watch" in path.read_text() for path in gen.rglob("*_pb2_gateway_*.py"))


def served_as(gen: Path) -> str:
    """The MATRIX row the serve command must match: uvicorn with the gateway's HTTP protocol and wsproto
    for modules with WebSocket routes, else granian without WebSocket."""
    return "uvicorn-embedded-ws" if has_websocket_routes(gen) else "granian"


def expected_row(row: str, gen: Path) -> str:
    default = served_as(gen)
    # Without WebSocket the serve command picks granian (HTTP/1.1, no WebSocket).
    return {"default": default, "nginx-default": f"nginx-{default}", "default-no-ws": "granian"}.get(row, row)


def require_nginx() -> str:
    """nginx's path; a failure on CI (CI=true), where .ci/run installs it, else a skip."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nginx is not installed: on CI .ci/run must install it (apt-get install nginx-light)")
        pytest.skip("nginx is not installed (CI installs it; locally: apt-get install nginx-light)")
    return binary


@pytest.fixture(scope="module")
def ports(gen_dir: Path, backend: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Port of every row: the CONFIGS servers and `nginx-X` for X in NGINX_FRONTS (when nginx exists)."""
    work = tmp_path_factory.mktemp("servers")
    started = start_gateways(list(CONFIGS), gen_dir, backend.target, work)
    proxies: dict[str, Nginx] = {}
    try:
        binary = nginx_binary()
        if binary is not None:
            for front in NGINX_FRONTS:
                proxies[f"nginx-{front}"] = Nginx(binary, started[front].port, work / f"nginx-{front}")
        yield {
            **{name: p.port for name, p in started.items()},
            **{name: p.port for name, p in proxies.items()},
        }
    finally:
        for proxy in proxies.values():
            proxy.stop()
        for process in started.values():
            process.stop()


OBSERVED: dict[str, dict[str, str]] = {}
"""What each cell produced in this run; written as JSON to $PYGATEWAY_MATRIX_OBSERVED when set."""


@pytest.fixture(scope="module", autouse=True)
def _write_observed() -> Iterator[None]:
    yield
    target = os.environ.get("PYGATEWAY_MATRIX_OBSERVED")
    if target:
        Path(target).write_text(json.dumps(OBSERVED, indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("row", ROWS)
def test_cell(row: str, cell: str, ports: dict[str, int], backend: Any, gen_dir: Path) -> None:
    if row.startswith("nginx-"):
        require_nginx()
    if CELLS[cell][0] == "stream" and not has_stream_routes(gen_dir):
        pytest.skip("the gateway does not generate the FeedService streaming routes")
    backend.reset()
    outcome = getattr(Probe(ports[row], backend), cell)()
    OBSERVED.setdefault(row, {})[cell] = outcome
    table_row = expected_row(row, gen_dir)
    expected = MATRIX[table_row][cell]
    assert outcome == expected, (
        f"{row} (table row {table_row}) cell {cell}: got {outcome!r}, table says {expected!r}"
    )


def test_matrix_is_complete() -> None:
    assert set(MATRIX) == set(ROWS) - {"default", "nginx-default", "default-no-ws"}
    for outcomes in MATRIX.values():
        assert set(outcomes) == set(CELLS)
    assert set(VERDICTS) == set(MATRIX)


def test_doc_matches_matrix() -> None:
    assert DOC.exists() and DOC.read_text() == render_doc(), (
        "docs/upgrade-matrix.md differs from MATRIX: "
        "run `.venv/bin/python -m tests.test_upgrade_matrix --write`"
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(render_doc())
        print(f"wrote {DOC}")
    else:
        sys.stdout.write(render_doc())
