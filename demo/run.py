"""`make demo`: the example backend and the generated gateway in one process, with real requests shown.

Starts the in-memory bookshop gRPC backend (grpc.aio) on a loopback port, serves the gateway modules
generated into GEN (the services of testdata's shop.proto and feed.proto, combined into one ASGI app)
with uvicorn in the shipped configuration (h11; WebSocket by wsproto, as feed.proto streams), sends a
tour of requests with httpx and prints each request and reply: unary calls, a server stream (NDJSON
and SSE), client and bidi streams. Then it keeps serving for curl until Ctrl-C, unless --once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import httpx
import uvicorn

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


def _show(response: httpx.Response, note: str, sent: dict[str, str]) -> None:
    request = response.request
    print(f"\n# {note}")
    print(f"$ curl -X {request.method} '{request.url}'", end="")
    for name, value in sent.items():
        print(f" -H '{name}: {value}'", end="")
    typed = "content-type" in {name.lower() for name in sent}
    if request.content and "content-type" in request.headers and not typed:
        # curl -d alone sends a form type, which the gateway refuses (415).
        print(f" -H 'Content-Type: {request.headers['content-type']}'", end="")
    if request.content:
        print(" -d '" + request.content.decode().replace("\n", "\\n") + "'", end="")
    print()
    shown = [
        f"{k}: {v}"
        for k, v in response.headers.items()
        if k.startswith("grpc-") or (k in ("allow", "content-type") and "json" not in v)
    ]
    print(f"HTTP {response.status_code}  " + "  ".join(shown))
    if response.headers.get("content-type", "").startswith(("application/x-ndjson", "text/event-stream")):
        print(response.text[:1500].rstrip())  # streams: shown as framed on the wire
        return
    try:
        print(json.dumps(response.json(), indent=2)[:1500])
    except ValueError:
        print(response.text[:1500])


async def main_async(args: argparse.Namespace) -> None:
    import pygateway_runtime
    from shop.v1 import feed_pb2_gateway_feed_service as feed_gateway
    from shop.v1 import shop_pb2_gateway_shelf_admin_service as admin_gateway
    from shop.v1 import shop_pb2_gateway_shop_service as shop_gateway

    from demo.backend import start_backend  # needs GEN on sys.path

    server, backend_port, _ = await start_backend("127.0.0.1", args.backend_port)
    print(f"backend (grpc.aio) listening on 127.0.0.1:{backend_port}")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{backend_port}")
    app = pygateway_runtime.combine(
        shop_gateway.create_app(channel), admin_gateway.create_app(channel), feed_gateway.create_app(channel)
    )
    document = Path(args.gen) / "openapi.json"  # make generate merges shop's and feed's documents
    if document.exists():  # served as `pygateway_serve --openapi gen/openapi.json` would serve it
        from pygateway_runtime import serve

        app = serve.OpenApiDocument(app, str(document), "")
    # The shipped configuration: h11; WebSocket (wsproto) because the feed service streams.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, http="h11", ws="wsproto", log_level="warning"
    )
    gateway = uvicorn.Server(config)
    serving = asyncio.create_task(gateway.serve())
    while not gateway.started:
        if serving.done():
            await serving  # raises what startup raised
        await asyncio.sleep(0.05)
    print(f"gateway (uvicorn h11) listening on http://127.0.0.1:{args.port}")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.port}", timeout=10) as client:
            for method, path, kwargs, note in TOUR:
                _show(await client.request(method, path, **kwargs), note, kwargs.get("headers", {}))
        if not args.once:
            print(f"\nServing on http://127.0.0.1:{args.port} — try:")
            print(f"  curl http://127.0.0.1:{args.port}/v1/shelves/fiction/books")
            print(
                f"  curl -N 'http://127.0.0.1:{args.port}/v1/shelves/fiction/events:watch?count=10&intervalMs=500'"
            )
            if document.exists():
                print(f"  curl http://127.0.0.1:{args.port}/openapi.json   # the OpenAPI 3.1 document")
            print("Ctrl-C to stop.")
            await serving
    finally:
        gateway.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await channel.close(None)
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
