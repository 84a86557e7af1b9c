"""Tiny raw ASGI app + client: what does a server put in the scope (raw_path, root_path, client,
extensions) and does it accept `http.response.trailers` / `websocket.http.response`?

    python bench/scope_probe.py            # runs granian (ws) and uvicorn h11+wsproto, prints the findings
Loopback only; servers started in their own process group and stopped by PID.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = str(HERE.parent / ".venv" / "bin" / "python")


def _describe(scope):
    ext = scope.get("extensions")
    return {
        "type": scope["type"],
        "http_version": scope.get("http_version"),
        "path": scope.get("path"),
        "raw_path": scope["raw_path"].decode("latin-1") if scope.get("raw_path") is not None else "<missing>",
        "root_path": scope.get("root_path", "<missing>"),
        "client": list(scope["client"]) if scope.get("client") else scope.get("client", "<missing>"),
        "server": list(scope["server"]) if scope.get("server") else None,
        "extensions": sorted(ext) if isinstance(ext, dict) else repr(ext),
        "keys": sorted(scope),
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    info = _describe(scope)
    body = json.dumps(info).encode()
    if scope["type"] == "http":
        while (await receive()).get("more_body"):
            pass
        trailers = scope["path"].endswith("/trailers") and "http.response.trailers" in (
            scope.get("extensions") or {}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "trailers": trailers,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": trailers})
        if trailers:
            await send(
                {"type": "http.response.trailers", "headers": [(b"x-trl", b"t1")], "more_trailers": False}
            )
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 404,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": json.dumps(info)})
            await send({"type": "websocket.close", "code": 1000})


def _exchange(port, data, timeout=2.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
            if b"\r\n0\r\n" in buf and buf.endswith(b"\r\n\r\n"):
                break
            if b"content-length:" in buf.lower():
                head, _, rest = buf.partition(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    break
        return buf


def run(label, cmd, port, prefix):
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, cwd=str(HERE)
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        print(f"## {label}\n$ {' '.join(cmd)}")
        p = prefix
        r = _exchange(port, f"GET {p}/a%2Fb/c?q=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        print(f"http  GET {p}/a%2Fb/c:", r.partition(b"\r\n\r\n")[2].decode())
        r = _exchange(port, f"GET {p}/x/trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n".encode())
        print("http  GET trailers (TE: trailers) raw:", r[:600])
        key = base64.b64encode(os.urandom(16)).decode()
        r = _exchange(
            port,
            (
                f"GET {p}/w%2Fs HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        print(f"ws    GET {p}/w%2Fs raw:", r[:900])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
        errs = [
            l
            for l in err.decode(errors="replace").splitlines()
            if "Error" in l or "Traceback" in l or "rror" in l
        ]
        print("server stderr error lines:", errs[:10], "\n")


if __name__ == "__main__":
    run(
        "granian asgi http1 ws, --url-path-prefix /pfx",
        [
            PY,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--http",
            "1",
            "--ws",
            "--workers",
            "1",
            "--port",
            "18291",
            "--url-path-prefix",
            "/pfx",
            "scope_probe:app",
        ],
        18291,
        "/pfx",
    )
    run(
        "granian asgi http1 ws, no prefix",
        [
            PY,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--http",
            "1",
            "--ws",
            "--workers",
            "1",
            "--port",
            "18292",
            "scope_probe:app",
        ],
        18292,
        "",
    )
    run(
        "uvicorn h11 wsproto, --root-path /pfx",
        [
            PY,
            "-m",
            "uvicorn",
            "scope_probe:app",
            "--http",
            "h11",
            "--ws",
            "wsproto",
            "--port",
            "18293",
            "--root-path",
            "/pfx",
            "--lifespan",
            "off",
        ],
        18293,
        "/pfx",
    )
    run(
        "uvicorn zttp (ws auto), no prefix",
        [PY, "-m", "uvicorn", "scope_probe:app", "--http", "zttp", "--port", "18294", "--lifespan", "off"],
        18294,
        "",
    )
    sys.exit(0)
