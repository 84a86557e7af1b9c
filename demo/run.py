"""`make demo`: the example backend and the generated gateway in one process, with real requests shown.

Starts the in-memory bookshop gRPC backend (grpc.aio) on a loopback port, serves the gateway modules
generated into GEN (the services of testdata's shop.proto and feed.proto) with the serve command as
shipped (`python GEN/pygateway_serve.py`, its default server choice), sends a tour of requests with httpx
and prints each as a curl line that works when pasted, with its reply: unary calls, a server stream
(NDJSON and SSE), client and bidi streams. Then it keeps serving for curl until Ctrl-C, unless --once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

TOUR: list[tuple[str, str, dict[str, Any], str]] = [
    ("GET", "/v1/shelves/fiction/books/dune", {}, "get a book (nested path variable)"),
    ("GET", "/v1/shelves/fiction/books/dune?readMask=title,author.name", {}, "field mask from the query"),
    ("GET", "/v1/books/shelves%2Ffiction%2Fbooks%2Fdune", {}, "additional binding, single-segment capture"),
    ("GET", "/v1/shelves/fiction/books?genre=GENRE_FICTION&pageSize=5", {}, "list with query parameters"),
    (
        "POST",
        "/v1/shelves/science/books",
        {"json": {"title": "A Brief History of Time", "genre": "GENRE_SCIENCE", "tags": ["physics"]}},
        "create: body field `book`, parent from the path",
    ),
    ("POST", "/v1/shelves/science/books/a-brief-history-of-time:publish", {"json": {}}, "custom verb"),
    ("GET", "/v1/shelves/fiction/books/dune/title", {}, "response_body: just the title"),
    ("GET", "/v1/shelves/fiction/files/covers/2024/dune.png", {}, "`**` capture"),
    ("GET", "/v1/shelves/fiction", {}, "the second service of the same proto file"),
    (
        "GET",
        "/v1/metadata",
        {
            "headers": {
                "Grpc-Metadata-Tenant": "acme",
                "Upgrade": "h2c",
                "Connection": "Upgrade, HTTP2-Settings",
            }
        },
        "metadata in; hop-by-hop headers never reach the backend",
    ),
    ("GET", "/v1/shelves/fiction/books/missing", {}, "gRPC NOT_FOUND -> 404 + google.rpc.Status"),
    ("POST", "/v1/fail", {"json": {"code": 7, "message": "no", "reason": "QUOTA"}}, "error details"),
    ("DELETE", "/v1/shelves/fiction/books", {}, "path exists under other methods -> 405 + Allow"),
    ("GET", "/v1/shelves/fiction/books?pageSize=ten", {}, "bad query value -> 400 naming the field"),
    (
        "GET",
        "/v1/shelves/fiction/events:watch?count=3&intervalMs=300",
        {"headers": {"Upgrade": "h2c", "Connection": "Upgrade"}},
        "server stream as NDJSON, one line per message as it arrives (an Upgrade header changes nothing)",
    ),
    (
        "GET",
        "/v1/shelves/fiction/events:watch?count=2&failCode=9&failAfter=1",
        {},
        "a stream failing after its first message ends with an error line",
    ),
    (
        "GET",
        "/v1/shelves/science/events:watch?count=2",
        {"headers": {"Accept": "text/event-stream"}},
        "the same stream as server-sent events",
    ),
    (
        "POST",
        "/v1/chat?room=lobby",
        {
            "content": b'{"text": "hello"}\n{"text": "anyone here?"}\n',
            "headers": {"Content-Type": "application/x-ndjson"},
        },
        "bidi stream: NDJSON request lines in, replies out (query applies to the first message)",
    ),
    (
        "POST",
        "/v1/uploads",
        {
            "content": b'{"name": "a.txt", "data": "abc"}\n{"name": "b.txt", "data": "defg"}\n',
            "headers": {"Content-Type": "application/x-ndjson"},
        },
        "client stream: NDJSON request lines in, one reply",
    ),
]


def curl_line(method: str, url: str, headers: dict[str, str], content: bytes, stream: bool) -> str:
    """The curl command (POSIX shell syntax) that sends what the tour sent, working when pasted.

    NDJSON bodies keep their newlines: printf writes one line per message into curl's `--data-binary @-`
    (`-d` would drop them, and a `\\n` written inside single quotes is sent as a backslash and an n).
    """
    parts = [
        "curl",
        *(["-N"] if stream else []),
        *([] if method == "GET" else ["-X", method]),
        shlex.quote(url),
    ]
    for name, value in headers.items():
        parts += ["-H", shlex.quote(f"{name}: {value}")]
    if not content:
        return " ".join(parts)
    lines = content.decode().split("\n")
    if len(lines) > 2 or (len(lines) == 2 and lines[1]):  # several lines: one printf argument per line
        body_lines = [line for line in lines if line]
        printf = "printf '%s\\n' " + " ".join(shlex.quote(line) for line in body_lines)
        return printf + " | " + " ".join([*parts, "--data-binary", "@-"])
    return " ".join([*parts, "--data-binary", shlex.quote(content.decode())])


def _show(response: httpx.Response, note: str, sent: dict[str, str]) -> None:
    request = response.request
    headers = dict(sent)
    if request.content and "content-type" not in {name.lower() for name in sent}:
        # curl -d alone sends a form type, which the gateway refuses (415).
        headers["Content-Type"] = request.headers["content-type"]
    streamed = response.headers.get("content-type", "").startswith(
        ("application/x-ndjson", "text/event-stream")
    )
    print(f"\n# {note}")
    print("$ " + curl_line(request.method, str(request.url), headers, request.content, streamed))
    shown = [
        f"{k}: {v}"
        for k, v in response.headers.items()
        if k.startswith("grpc-") or (k in ("allow", "content-type") and "json" not in v)
    ]
    print(f"HTTP {response.status_code}  " + "  ".join(shown))
    if streamed:
        print(response.text[:1500].rstrip())  # streams: shown as framed on the wire
        return
    try:
        print(json.dumps(response.json(), indent=2)[:1500])
    except ValueError:
        print(response.text[:1500])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the serve command exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"the serve command did not answer at {url} within {timeout:.0f} s")


async def main_async(args: argparse.Namespace) -> None:
    from demo.backend import start_backend  # needs GEN on sys.path

    gen = Path(args.gen).resolve()
    server, backend_port, _ = await start_backend("127.0.0.1", args.backend_port)
    print(f"backend (grpc.aio) listening on 127.0.0.1:{backend_port}")
    # The gateway exactly as shipped: the serve command with its default server choice.
    argv = [sys.executable, str(gen / "pygateway_serve.py"), "--upstream", f"127.0.0.1:{backend_port}"]
    argv += ["--listen", f"127.0.0.1:{args.port}", "--log-level", "warning"]
    document = gen / "openapi.json"  # make generate merges shop's and feed's documents
    if document.exists():
        argv += ["--openapi", str(document)]
    gateway = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    try:
        await asyncio.to_thread(_wait_ready, base + "/", gateway)
        print(f"gateway: {' '.join(shlex.quote(part) for part in argv[1:])}  (the serve command's defaults)")
        print(f"gateway listening on {base}")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for method, path, kwargs, note in TOUR:
                _show(await client.request(method, path, **kwargs), note, kwargs.get("headers", {}))
        if not args.once:
            print(f"\nServing on {base} — paste any curl line above, or try:")
            print(f"  curl {base}/v1/shelves/fiction/books")
            print(f"  curl -N '{base}/v1/shelves/fiction/events:watch?count=10&intervalMs=500'")
            if document.exists():
                print(f"  curl {base}/openapi.json   # the OpenAPI 3.1 document")
            print("Ctrl-C to stop.", flush=True)
            await asyncio.to_thread(gateway.wait)
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            await asyncio.to_thread(gateway.wait, 20)
        await server.stop(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen", default="gen", help="directory the gateway was generated into")
    parser.add_argument("--port", type=int, default=8080, help="gateway port (loopback)")
    parser.add_argument("--backend-port", type=int, default=0, help="backend port (0: any free port)")
    parser.add_argument("--once", action="store_true", help="exit after the tour")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(args.gen).resolve()))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
