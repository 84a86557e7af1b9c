"""Helpers for the end-to-end tests: exact-bytes HTTP/1.1 exchanges over a socket, error-body checks."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import httpx

SOCKET_TIMEOUT = 5.0


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return status, headers


class _Reader:
    """Content-Length-framed HTTP/1.1 responses from one socket, in order (pipelining included)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response; got {self.buffer!r}")
        self.buffer += chunk

    def response(self, *, head_request: bool = False) -> RawResponse:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        length = 0 if head_request else int(next((v for k, v in headers if k == "content-length"), "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return RawResponse(status, headers, body)


def raw_exchange(
    port: int, request: bytes, *, count: int = 1, head_request: bool = False
) -> list[RawResponse]:
    """Send `request` (one or several pipelined requests) verbatim on a fresh connection and read `count`
    Content-Length-framed responses."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(request)
        reader = _Reader(sock)
        return [reader.response(head_request=head_request) for _ in range(count)]


def raw_until_close(port: int, request: bytes, *, half_close: bool = True) -> bytes:
    """Send `request` (then half-close) and read everything until the server closes or the timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        return data


def http_request(method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request with exactly these header lines (plus Host and, with a body, Content-Length)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway.test"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_body(response: httpx.Response | RawResponse, status: int, code: int) -> dict[str, Any]:
    """Check an error answer's status, JSON content type and google.rpc.Status shape; return the body."""
    status_code = response.status_code if isinstance(response, httpx.Response) else response.status
    content = response.content if isinstance(response, httpx.Response) else response.body
    assert status_code == status, content
    content_type = (
        response.headers.get("content-type")
        if isinstance(response, httpx.Response)
        else response.header("content-type")
    )
    assert content_type == "application/json"
    body = json.loads(content)
    assert isinstance(body, dict)
    assert sorted(body) == ["code", "details", "message"]
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert isinstance(body["details"], list)
    assert "Traceback" not in body["message"]
    request_id = (
        response.headers.get("x-request-id")
        if isinstance(response, httpx.Response)
        else response.header("x-request-id")
    )
    assert request_id, "an error answer without X-Request-ID"
    return without_request_info(body, request_id)


REQUEST_INFO = "type.googleapis.com/google.rpc.RequestInfo"


def without_request_info(status: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    """A google.rpc.Status (error body, stream error line) checked to end with the RequestInfo detail of
    `request_id` (the response's X-Request-ID; None: any id), returned without it for comparisons."""
    *details, last = status["details"]
    assert last.get("@type") == REQUEST_INFO and last.get("requestId"), status
    assert request_id is None or last["requestId"] == request_id, (status, request_id)
    return {**status, "details": details}
