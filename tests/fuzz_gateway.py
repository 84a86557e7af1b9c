"""Fuzz entry point for the request path of a generated gateway (shop + feed), driven by atheris.

    python -m tests.fuzz_gateway [libFuzzer flags] [CORPUS_DIR ...]      (`make fuzz` runs it)

The generated tree of testdata's shop.proto and feed.proto is built into a temporary directory and its
three gateway apps are combined in-process (`pygateway_runtime.combine`), with a grpc.aio channel to a
Unix socket nobody listens on: the fuzzer targets request parsing and routing, so requests that get as
far as the upstream fail fast with 503 UNAVAILABLE. Every input is one exchange fed straight into the ASGI
app through a fake receive/send pair, on one event loop reused for all inputs.

An input is a request written like HTTP/1.1 (LF or CRLF line ends):

    METHOD SP TARGET [SP CHUNK]        TARGET is the raw path and query; CHUNK delivers the body in
    name: value                        events of that many bytes (default: one event)
    ...
                                       an empty line, then the body
    BODY

METHOD `WEBSOCKET` makes a WebSocket exchange instead: each body line is one client message.

For each exchange (`Harness.check`) it asserts that no exception escapes the app, that it answers within
a few seconds, that a response is sent exactly once (one start, body events ending with more_body=False,
nothing after), that the status is never 500 (the upstream is unreachable, so a 500 can only be an
"internal gateway error"), that an error status carries a google.rpc.Status JSON body, that
Content-Length matches the body, and that the gateway logs no error. A WebSocket exchange must not close
with 1011 (internal error) nor refuse with a 500.

FUZZ_GEN=DIR fuzzes an already generated tree instead of generating one. Without atheris
(`pip install atheris`; `make fuzz` installs it), the same harness runs under a
hypothesis driver that mutates the seed corpus for the same time budget.
tests/test_fuzz_regressions.py replays every file under tests/fuzz_corpus/ through `Harness.check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fuzz_corpus"
SEEDS = CORPUS / "seeds"
CRASHES = CORPUS / "crashes"
PROTOS = ["shop/v1/shop.proto", "shop/v1/feed.proto"]
GATEWAY_MODULES = [
    "shop.v1.shop_pb2_gateway_shop_service",
    "shop.v1.shop_pb2_gateway_shelf_admin_service",
    "shop.v1.feed_pb2_gateway_feed_service",
]
#: Longest an exchange may take; the upstream is unreachable, so anything near this is a hang.
EXCHANGE_TIMEOUT = 5.0


class GatewayFuzzError(AssertionError):
    """The gateway misbehaved on one input."""


@dataclass
class FuzzRequest:
    method: str
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunk: int = 0  # body event size; 0: one event

    @property
    def raw_path(self) -> bytes:
        return self.target.partition(b"?")[0]

    @property
    def query_string(self) -> bytes:
        return self.target.partition(b"?")[2]


def parse_input(data: bytes) -> FuzzRequest:
    """Any bytes are a request: see the module docstring for the format."""
    lines: list[bytes] = []
    body = b""
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        line = data[pos:] if end < 0 else data[pos:end]
        line = line[:-1] if line.endswith(b"\r") else line
        if lines and not line:  # the empty line after the request line and headers
            body = data[end + 1 :] if end >= 0 else b""
            break
        lines.append(line)
        if end < 0:
            break
        pos = end + 1
    first = lines[0].split(b" ")
    method = first[0].decode("latin-1") or "GET"
    target = first[1] if len(first) > 1 else b"/"
    chunk = int(first[2]) if len(first) > 2 and first[2].isdigit() and len(first[2]) < 6 else 0
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.append((name.strip().lower(), value.strip(b" \t")))
    return FuzzRequest(method, target, headers, body, chunk)


def format_request(request: FuzzRequest) -> bytes:
    """The input bytes for `request` (the inverse of `parse_input`, for writing seeds)."""
    first = [request.method.encode("latin-1"), request.target]
    if request.chunk:
        first.append(str(request.chunk).encode())
    lines = [b" ".join(first), *(name + b": " + value for name, value in request.headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + request.body


@dataclass
class Outcome:
    """What the app did with one exchange."""

    events: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise GatewayFuzzError(f"error body is not JSON: {body[:300]!r}") from None


def _ndjson_error(body: bytes) -> Any:
    """A streaming route's error before any message: one `{"error": Status, "trailers": ...}` line."""
    if not body.endswith(b"\n") or body.count(b"\n") != 1:
        raise GatewayFuzzError(f"NDJSON error is not one line: {body[:300]!r}")
    line = _json(body)
    return line.get("error") if isinstance(line, dict) else None


def _sse_error(body: bytes) -> Any:
    """The same as one SSE event: `event: error`, `data: {"error": ...}`."""
    prefix = b"event: error\ndata: "
    if not body.startswith(prefix) or not body.endswith(b"\n\n"):
        raise GatewayFuzzError(f"SSE error is not one error event: {body[:300]!r}")
    line = _json(body[len(prefix) :])
    return line.get("error") if isinstance(line, dict) else None


#: Content-Type of an error response -> its google.rpc.Status.
_ERROR_FRAMINGS = {
    b"application/json": _json,
    b"application/x-ndjson": _ndjson_error,
    b"text/event-stream": _sse_error,
}


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def generate(out: Path) -> Path:
    """The generated tree for testdata's shop + feed protos in `out` (through the real protoc + plugin)."""
    from tests.protoc_support import generate_tree

    generate_tree(out, PROTOS)
    return out


class Harness:
    """The combined shop + feed gateway on its own event loop, and the checks of one exchange."""

    def __init__(self, gen: Path, instrument: Any = None) -> None:
        if str(gen) not in sys.path:
            sys.path.insert(0, str(gen))
        self.loop = asyncio.new_event_loop()
        self._socket_dir = tempfile.TemporaryDirectory(prefix="fuzz-upstream-")
        # Nobody listens here: every upstream call fails fast with UNAVAILABLE.
        self.upstream = f"unix:{self._socket_dir.name}/nobody.sock"
        if instrument is not None:
            with instrument():
                self.rt, self.modules = self._import()
        else:
            self.rt, self.modules = self._import()
        self.channel: Any = None
        self.app: Any = self.loop.run_until_complete(self._build())
        self.errors = _ErrorLog()
        logging.getLogger("pygateway").addHandler(self.errors)

    @staticmethod
    def _import() -> tuple[ModuleType, list[ModuleType]]:
        rt = importlib.import_module("pygateway_runtime")
        return rt, [importlib.import_module(name) for name in GATEWAY_MODULES]

    async def _build(self) -> Any:
        import grpc.aio

        self.channel = grpc.aio.insecure_channel(self.upstream)
        return self.rt.combine(*(module.create_app(self.channel) for module in self.modules))

    def close(self) -> None:
        logging.getLogger("pygateway").removeHandler(self.errors)
        if self.channel is not None:
            self.loop.run_until_complete(self.channel.close(None))
        self.loop.close()
        self._socket_dir.cleanup()

    # --- one exchange --------------------------------------------------------------------------------

    def check(self, data: bytes) -> Outcome:
        """Run one input through the app; raise GatewayFuzzError if the gateway misbehaved."""
        request = parse_input(data)
        self.errors.records.clear()
        if request.method == "WEBSOCKET":
            outcome = self.loop.run_until_complete(self._websocket(request))
            self._check_websocket(request, outcome)
        else:
            outcome = self.loop.run_until_complete(self._http(request))
            self._check_http(request, outcome)
        if self.errors.records:
            record = self.errors.records[0]
            raise GatewayFuzzError(
                f"the gateway logged an error: {record.getMessage()}\n{record.exc_text or ''}"
            )
        return outcome

    def _scope(self, request: FuzzRequest, kind: str) -> dict[str, Any]:
        raw_path = request.raw_path
        scope: dict[str, Any] = {
            "type": kind,
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "scheme": "http" if kind == "http" else "ws",
            "path": unquote(raw_path.decode("latin-1"), encoding="latin-1"),
            "raw_path": raw_path,
            "query_string": request.query_string,
            "root_path": "",
            "headers": list(request.headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "extensions": {},
        }
        if kind == "http":
            scope["method"] = request.method
        else:
            scope["extensions"] = {"websocket.http.response": {}}
            scope["subprotocols"] = []
        return scope

    async def _run(self, app_call: Any) -> None:
        try:
            await asyncio.wait_for(app_call, EXCHANGE_TIMEOUT)
        except asyncio.TimeoutError:
            raise GatewayFuzzError(f"no answer within {EXCHANGE_TIMEOUT}s (hang)") from None
        except GatewayFuzzError:
            raise
        except BaseException as err:
            raise GatewayFuzzError(f"exception escaped the app: {err!r}") from err

    async def _http(self, request: FuzzRequest) -> Outcome:
        outcome = Outcome()
        size = request.chunk or max(len(request.body), 1)
        pieces = [request.body[i : i + size] for i in range(0, len(request.body), size)] or [b""]
        incoming = [
            {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
            for i, piece in enumerate(pieces)
        ]
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop(0)
            await done.wait()  # as a server does: nothing more until the response is complete
            return {"type": "http.disconnect"}

        async def send(event: dict[str, Any]) -> None:
            if done.is_set():
                raise GatewayFuzzError(f"event after the complete response: {event.get('type')}")
            outcome.events.append(dict(event))
            if event["type"] == "http.response.body" and not event.get("more_body", False):
                done.set()

        await self._run(self.app(self._scope(request, "http"), receive, send))
        return outcome

    def _check_http(self, request: FuzzRequest, outcome: Outcome) -> None:
        events = outcome.events
        kinds = [e["type"] for e in events]
        if not events:
            raise GatewayFuzzError("no response")
        if kinds[0] != "http.response.start" or kinds.count("http.response.start") != 1:
            raise GatewayFuzzError(f"not exactly one response start first: {kinds}")
        if any(k != "http.response.body" for k in kinds[1:]) or len(kinds) < 2:
            raise GatewayFuzzError(f"bad response event sequence: {kinds}")
        if events[-1].get("more_body", False):
            raise GatewayFuzzError("the response never ended (last body event has more_body=True)")
        start = events[0]
        status = start["status"]
        headers = start.get("headers", [])
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise GatewayFuzzError(f"bad status {status!r}")
        for pair in headers:
            if not (
                isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, bytes) for p in pair)
            ):
                raise GatewayFuzzError(f"bad response header {pair!r}")
            if pair[0] != pair[0].lower() or b"\n" in pair[1] or b"\r" in pair[1] or b"\0" in pair[1]:
                raise GatewayFuzzError(f"bad response header {pair!r}")
        body = b"".join(e.get("body", b"") for e in events[1:])
        outcome.status, outcome.headers, outcome.body = status, headers, body
        if status == 500:
            raise GatewayFuzzError(f"status 500: {body[:300]!r}")
        lengths = [v for k, v in headers if k == b"content-length"]
        if request.method != "HEAD" and lengths and lengths != [str(len(body)).encode()]:
            raise GatewayFuzzError(f"Content-Length {lengths} for a body of {len(body)} bytes")
        if status >= 400 and request.method != "HEAD":
            types = [v for k, v in headers if k == b"content-type"]
            if len(types) != 1 or types[0] not in _ERROR_FRAMINGS:
                raise GatewayFuzzError(f"error {status} with Content-Type {types}")
            error = _ERROR_FRAMINGS[types[0]](body)
            if not (
                isinstance(error, dict)
                and isinstance(error.get("code"), int)
                and isinstance(error.get("message"), str)
            ):
                raise GatewayFuzzError(f"error {status} body is not a google.rpc.Status: {body[:300]!r}")

    async def _websocket(self, request: FuzzRequest) -> Outcome:
        outcome = Outcome()
        incoming: list[dict[str, Any]] = [{"type": "websocket.connect"}]
        for line in request.body.split(b"\n") if request.body else []:
            try:
                incoming.append({"type": "websocket.receive", "text": line.decode("utf-8")})
            except UnicodeDecodeError:
                incoming.append({"type": "websocket.receive", "bytes": line})
        incoming.append({"type": "websocket.disconnect", "code": 1000})

        closed = asyncio.Event()
        disconnected = False

        async def receive() -> dict[str, Any]:
            nonlocal disconnected
            if len(incoming) > 1:
                return incoming.pop(0)
            if incoming:
                # The client has said everything: it waits a little for the gateway to close, then leaves.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(closed.wait(), 0.2)
                disconnected = True
                return incoming.pop(0)
            await asyncio.Event().wait()  # after the disconnect nothing ever comes (as under uvicorn)
            raise AssertionError("unreachable")

        async def send(event: dict[str, Any]) -> None:
            kinds = [e["type"] for e in outcome.events]
            if closed.is_set():
                raise GatewayFuzzError(f"event after the end of the exchange: {event['type']} after {kinds}")
            if disconnected:  # a server raises on a send to a closed connection; the app must cope
                raise OSError("connection closed")
            outcome.events.append(dict(event))
            if event["type"] in ("websocket.close", "websocket.http.response.body"):
                closed.set()

        await self._run(self.app(self._scope(request, "websocket"), receive, send))
        return outcome

    def _check_websocket(self, request: FuzzRequest, outcome: Outcome) -> None:
        kinds = [e["type"] for e in outcome.events]
        if "websocket.send" in kinds and (
            kinds[0] != "websocket.accept" or kinds.count("websocket.accept") != 1
        ):
            raise GatewayFuzzError(f"messages without exactly one accept first: {kinds}")
        for event in outcome.events:
            if event["type"] == "websocket.close" and event.get("code") == 1011:
                raise GatewayFuzzError(f"WebSocket closed with 1011 (internal error): {event}")
            if event["type"] == "websocket.http.response.start" and event["status"] == 500:
                raise GatewayFuzzError(f"WebSocket handshake refused with 500: {outcome.events}")


# --- corpus and drivers ---------------------------------------------------------------------------------


def corpus_files(root: Path = CORPUS) -> Iterator[Path]:
    """Every input under `root` (seeds, crashes), README files aside."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith(("README", ".")):
            yield path


def save_crash(data: bytes) -> Path:
    CRASHES.mkdir(parents=True, exist_ok=True)
    path = CRASHES / f"crash-{hashlib.sha1(data).hexdigest()}"
    path.write_bytes(data)
    return path


def _atheris_main(harness_factory: Any) -> None:
    import atheris

    # Coverage feedback from the generated code only (the runtime and the gateway modules), not from
    # grpc or protobuf: import those uninstrumented first.
    import google.protobuf.json_format  # noqa: F401
    import grpc.aio  # noqa: F401

    harness: Harness = harness_factory(
        lambda: atheris.instrument_imports(include=["pygateway_runtime", "shop"])
    )

    def one_input(data: bytes) -> None:
        harness.check(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


def _hypothesis_main(harness_factory: Any, seconds: float) -> None:
    """Fallback driver: hypothesis mutations of the seed corpus (and raw bytes) for `seconds`."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    harness: Harness = harness_factory(None)
    seeds = [p.read_bytes() for p in corpus_files(SEEDS)] or [b"GET /\r\n\r\n"]

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 6))):
            op = draw(st.integers(0, 3))
            at = draw(st.integers(0, len(data)))
            if op == 0 and data:
                del data[min(at, len(data) - 1)]
            elif op == 1:
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif op == 2:
                data[at:at] = draw(st.sampled_from(seeds))[: draw(st.integers(0, 40))]
            else:
                data[at:at] = draw(
                    st.sampled_from([b"%", b"%2F", b"%ff", b"/", b":", b"?", b"\r\n", b"{", b"[", b'"'])
                )
        return bytes(data)

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(mutated(), st.binary(max_size=200)))
    def run(data: bytes) -> None:
        try:
            harness.check(data)
        except GatewayFuzzError:
            print(f"crash saved to {save_crash(data)}", file=sys.stderr)
            raise

    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        run()
        rounds += 1
    print(f"hypothesis driver: {rounds * 500} inputs in {seconds:.0f}s, no failure", file=sys.stderr)


def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)  # the checks read the gateway's errors themselves
    gen_root = tempfile.TemporaryDirectory(prefix="fuzz-gen-")
    # FUZZ_GEN: fuzz an existing generated tree (e.g. `make generate`'s gen/, or a patched copy).
    gen = (
        Path(os.environ["FUZZ_GEN"]).resolve()
        if os.environ.get("FUZZ_GEN")
        else generate(Path(gen_root.name))
    )

    def factory(instrument: Any) -> Harness:
        return Harness(gen, instrument)

    try:
        import atheris  # noqa: F401
    except ImportError:
        seconds = float(os.environ.get("FUZZ_SECONDS", "60"))
        print("atheris is not installed: falling back to the hypothesis driver", file=sys.stderr)
        _hypothesis_main(factory, seconds)
        return
    _atheris_main(factory)


if __name__ == "__main__":
    main()
