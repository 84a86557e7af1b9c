"""Helpers for the streaming end-to-end tests: an incremental HTTP/1.1 client over a raw socket (chunked
request bodies sent piece by piece, chunked responses read line by line with arrival times), polling with a
bound, and a process's resident memory."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.e2e_support import parse_head

SOCKET_TIMEOUT = 5.0


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked request body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


class RawStream:
    """One HTTP/1.1 exchange on a fresh socket, read incrementally.

    The response body is decoded from chunked transfer coding (or Content-Length) as it arrives; `line()`
    returns the next body line, `times` records when each `line()` result was complete.
    """

    def __init__(self, port: int, timeout: float = SOCKET_TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.raw = b""  # undecoded bytes after the head
        self.body = b""  # decoded body bytes not yet returned
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.head_time = 0.0
        self.chunked = False
        self.remaining: int | None = None  # Content-Length framing: bytes still to come
        self.ended = False
        self.trailer_lines: list[str] = []

    def __enter__(self) -> RawStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_chunk(self, data: bytes) -> None:
        self.sock.sendall(chunk(data))

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)

    def _recv(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.raw += data
        return True

    def read_head(self) -> int:
        """Read the status line and headers; returns the status."""
        while b"\r\n\r\n" not in self.raw:
            if not self._recv():
                raise AssertionError(f"connection closed before the response head: {self.raw!r}")
        head, _, self.raw = self.raw.partition(b"\r\n\r\n")
        self.head_time = time.monotonic()
        self.status, self.headers = parse_head(head)
        self.chunked = (self.header("transfer-encoding") or "").lower() == "chunked"
        length = self.header("content-length")
        self.remaining = int(length) if length is not None else None
        if not self.chunked and self.remaining is None:
            self.remaining = -1  # until close
        self._decode()
        return self.status

    def _decode(self) -> None:
        """Move complete chunks (or Content-Length bytes) from `raw` to `body`."""
        if not self.chunked:
            if self.remaining is not None and self.remaining >= 0:
                take = self.raw[: self.remaining]
                self.remaining -= len(take)
                self.raw = self.raw[len(take) :]
                self.ended = self.remaining == 0
            else:
                take, self.raw = self.raw, b""
            self.body += take
            return
        while not self.ended:
            size_line, sep, rest = self.raw.partition(b"\r\n")
            if not sep:
                return
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                if rest.startswith(b"\r\n"):
                    trailers = b""
                else:
                    trailers, sep, _ = rest.partition(b"\r\n\r\n")
                    if not sep:
                        return
                self.trailer_lines = [t for t in trailers.decode("latin-1").split("\r\n") if t]
                self.ended = True
                self.raw = b""
                return
            if len(rest) < size + 2:
                return
            self.body += rest[:size]
            self.raw = rest[size + 2 :]

    def _more(self) -> bool:
        """Receive and decode more; False at the end of the body or when the server closed."""
        if self.ended:
            return False
        if not self._recv():
            self.ended = True
            return False
        self._decode()
        return True

    def line(self) -> bytes | None:
        """The next body line (without its newline), or None at the end of the body."""
        while b"\n" not in self.body:
            if not self._more():
                if self.body:
                    rest, self.body = self.body, b""
                    return rest
                return None
        result, _, self.body = self.body.partition(b"\n")
        return result

    def json_line(self) -> Any:
        """The next non-empty body line as JSON (None at the end)."""
        while True:
            line = self.line()
            if line is None:
                return None
            if line.strip():
                return json.loads(line)

    def timed_json_lines(self) -> list[tuple[float, Any]]:
        """Every remaining non-empty line as JSON with the time it arrived (monotonic seconds)."""
        result: list[tuple[float, Any]] = []
        while True:
            item = self.json_line()
            if item is None:
                return result
            result.append((time.monotonic(), item))

    def rest(self) -> bytes:
        """The rest of the body, until its end."""
        while self._more():
            pass
        data, self.body = self.body, b""
        return data


def start_request(
    method: str, target: str, headers: Sequence[tuple[str, str]] = (), chunked: bool = False
) -> bytes:
    """An HTTP/1.1 request head (Host added; `Transfer-Encoding: chunked` when `chunked`)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: gateway.test", *(f"{n}: {v}" for n, v in headers)]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
