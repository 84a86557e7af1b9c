"""Adversarial header corpus (issue 4): a hypothesis property over raw HTTP/1.1 requests to
POST /v1/metadata:echo mixing hop-by-hop headers, headers named in Connection, `Grpc-Metadata-`-smuggled
hop-by-hop and reserved names, mixed case, repeated lines and values up to the size limit, sent as exact
bytes (httpx would normalise them) on keep-alive sockets to both server choices of the serve command, with
the real backend recording the metadata it receives.

For every request: the answer is a plain 200 (uvicorn's own 400 for a WebSocket handshake is the one
allowed exception, see `ws_attempt`), no forbidden key or value reached the backend, and the response holds
no hop-by-hop header and nothing the request should not have been able to put there.

How a forbidden value is recognised: every value of a header that must not become metadata carries a marker
`F<n>Q` (the allowed ones `P<n>Q`); no metadata value received by the backend, and no byte of the response
(whose body echoes the backend's view), may contain an `F` marker. Keys are checked as well (hop-by-hop,
`grpc-`/`:` prefixes, the reserved keys), which also covers `-bin` keys whose values arrive decoded.

Limits the generator stays within (measured, see `test_server_limits`):
* uvicorn (h11): 16 KiB for the whole request head (h11's `max_incomplete_event_size`; it is enforced only
  while the head is incomplete, so a larger head arriving in one segment may pass - not relied on);
* granian (hyper): at most 100 header fields (431 beyond), a ~400 KiB read buffer;
* gRPC: 8 KiB of metadata (soft limit, RESOURCE_EXHAUSTED -> 429 above it, randomly up to the hard limit),
  so the big values go into headers that must be dropped; a leak would show up as a 429.

Transfer-Encoding: a real `Transfer-Encoding` header decides the framing, so the property sends it only as
exactly `chunked` with a correctly chunked body (the one coding both servers accept; the value's case is
not varied, the name's is), sometimes with a request trailer section holding forbidden fields; any other
value goes through `Grpc-Metadata-Transfer-Encoding`. Deliberately malformed framing (TE + Content-Length,
unknown codings, duplicate Content-Length, obs-fold, NUL/CR in values, ...) is in
`test_malformed_framing_is_refused_cleanly`, where a clean 4xx from the server is also a right answer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import GatewayServer
from tests.e2e_support import parse_head

ECHO = "/v1/metadata:echo"
HOST = "gateway.test"
PEER = "127.0.0.1"
SOCKET_TIMEOUT = 10.0
SHOP_MODULES = ["shop.v1.shop_pb2_gateway_shop_service", "shop.v1.shop_pb2_gateway_shelf_admin_service"]

#: RFC 9110 §7.6.1 connection-specific fields, Proxy-Connection and HTTP2-Settings (written out here rather
#: than imported from protoc_gen_pygateway.header_policy, so that a shrunk list there fails this test).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
    }
)
#: Metadata keys only gRPC or the gateway itself may set.
RESERVED_KEYS = frozenset({"content-type", "host", "te", "user-agent", "x-forwarded-for", "x-forwarded-host"})
RESERVED_PREFIXES = ("grpc-", ":")
#: Everything a plain answer from the gateway (either server) may carry; `connection` only as `close`.
RESPONSE_HEADERS = frozenset(
    {
        "date",
        "server",
        "content-type",
        "content-length",
        "connection",
        "grpc-metadata-x-echo-initial",
        "grpc-trailer-x-echo-trailer",
        "grpc-trailer-x-echo-bin",
        "x-request-id",  # the gateway's request id (docs/observability.md)
    }
)

HEAD_LIMIT = 16 * 1024  # h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE: the whole head, request line included
HEAD_BUDGET = HEAD_LIMIT - 256  # what the generator fills, with a margin
FIELD_LIMIT = 100  # hyper's (granian's) maximum number of header fields
FIELD_BUDGET = 90

#: Hop-by-hop headers sent as themselves (Connection and Transfer-Encoding are built separately).
HOP_SENT = (
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
)
UPGRADE_PROTOCOLS = ("websocket", "WebSocket", "h2c", "HTTP/2.0", "TLS/1.2", "IRC/6.9", "h2")
#: Fixed Connection options: connection management, hop-by-hop names, and end-to-end headers the gateway
#: would otherwise forward (the header named is then hop-by-hop and must not become metadata).
CONNECTION_TOKENS = (
    "keep-alive",
    "close",
    "upgrade",
    "te",
    "trailer",
    "http2-settings",
    "proxy-connection",
    "transfer-encoding",
    "authorization",
    "x-forwarded-for",
    "x-forwarded-host",
    "accept",
    "accept-language",
    "cookie",
    "user-agent",
    "via",
    "origin",
    "referer",
)
#: Named headers the generator adds with a marked value (the rest are connection management).
NAMED_SENDABLE = frozenset(CONNECTION_TOKENS) - {"keep-alive", "close", "upgrade", "transfer-encoding"}
#: Keys smuggled as `Grpc-Metadata-<key>`: hop-by-hop, reserved, `grpc-*`, pseudo-headers.
SMUGGLED_KEYS = (
    *sorted(HOP_BY_HOP),
    "content-type",
    "host",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-host",
    "grpc-timeout",
    "grpc-status",
    "grpc-message",
    "grpc-encoding",
    "grpc-accept-encoding",
    "grpc-status-details-bin",
    "grpc-previous-rpc-attempts",
    "grpc-foo",
    ":authority",
    ":path",
    ":method",
    ":status",
)
GRPC_METADATA = ("Grpc-Metadata-", "grpc-metadata-", "GRPC-METADATA-", "gRPC-Metadata-")
#: Filler for values: no digit, no `Q` (markers are `[FP]<digits>Q`), tabs and spaces inside, obs-text
#: (the gateway drops such values, but only after it decided by name).
FILLERS = ("abcdefghij", "x-y_z.w/v;u=t,s", "a b\tc d", "caf\xe9\xff\x80 ", "~!#$%&'*+^`|")

_examples = itertools.count()


# ------------------------------------------------------------------------------------------ generation


def recase(name: str, style: int, seed: int) -> str:
    if style == 0:
        return name.lower()
    if style == 1:
        return name.upper()
    if style == 2:
        return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
    rng = random.Random(seed)
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


# Strategies are built once: building them inside the composite costs more than the request itself.
CASES = st.tuples(st.integers(0, 3), st.integers(0, 255))
EXTRA_NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=14).map(
    lambda s: "x-" + s
)
CONNECTION_LINES = st.lists(
    st.lists(
        st.one_of(st.sampled_from(CONNECTION_TOKENS), EXTRA_NAMES, st.just("grpc-metadata-x-named")),
        min_size=1,
        max_size=5,
    ),
    max_size=3,
)
SEPARATORS = st.sampled_from([", ", ",", " , ", ",, ", " ,\t"])
EDGES = st.tuples(st.sampled_from(["", " ", ", "]), st.sampled_from(["", ",", " "]))
UPGRADE_TO = st.one_of(st.none(), st.sampled_from(UPGRADE_PROTOCOLS))
UPGRADE_LISTS = st.lists(st.sampled_from(UPGRADE_PROTOCOLS), min_size=1, max_size=3)
TE_VALUES = st.sampled_from(["trailers", "gzip;q=0.5, trailers", "deflate"])
HOP_LISTS = st.lists(st.sampled_from(HOP_SENT), max_size=12)
SMUGGLED_LISTS = st.lists(st.sampled_from(SMUGGLED_KEYS), max_size=10)
PREFIXES = st.sampled_from(GRPC_METADATA)
REPEATS = st.integers(0, 2)
PROBES = st.integers(1, 3)
SMALL = st.integers(0, 4)
FILLER = st.sampled_from(FILLERS)


@dataclass
class Line:
    name: str
    value: str
    forbidden: bool  # its value carries an F marker and must never reach the backend
    pad: bool = False  # may take a big value


@dataclass
class Corpus:
    """One generated request and what the backend may and must receive."""

    head: bytes
    body: bytes
    note: str
    named: set[str]
    forbidden_markers: list[str]
    probes: list[str]
    authorization: list[str]
    forwarded_for: list[str]  # client X-Forwarded-For lines, which precede the peer in this order
    forwarded_host: list[str]  # values x-forwarded-host may take
    ws_attempt: bool
    close: bool
    description: list[tuple[str, str]] = field(default_factory=list)

    @property
    def request(self) -> bytes:
        return self.head + self.body


@st.composite
def corpora(draw: st.DrawFn) -> Corpus:
    markers = itertools.count()

    def marker(kind: str) -> str:
        return f"{kind}{next(markers)}Q"

    lines: list[Line] = []

    def add(name: str, value: str, forbidden: bool, pad: bool = False) -> None:
        lines.append(Line(recase(name, *draw(CASES)), value, forbidden, pad))

    # Connection: 0-3 lines of options, oddly separated.
    connection_lines: list[list[str]] = draw(CONNECTION_LINES)
    # Sometimes a coherent upgrade request (h2c with its settings, WebSocket without a key, TLS, ...).
    upgrade_to = draw(UPGRADE_TO)
    if upgrade_to is not None:
        connection_lines.append(["upgrade", "http2-settings"] if upgrade_to == "h2c" else ["upgrade"])
        add("upgrade", upgrade_to, False)
        if upgrade_to == "h2c":
            add("http2-settings", "AAMAAABkAAQAAP__", False)
    named = {token for tokens in connection_lines for token in tokens}
    for tokens in connection_lines:
        separator = draw(SEPARATORS)
        value = separator.join(recase(t, *draw(CASES)) for t in tokens)
        if draw(st.booleans()):
            before, after = draw(EDGES)
            value = before + value + after
        add("connection", value, False)
    # The headers Connection names (usually present, sometimes twice).
    for token in sorted(named):
        if token in NAMED_SENDABLE or token.startswith(("x-", "grpc-metadata-")):
            for _ in range(draw(REPEATS) if draw(SMALL) else 1):
                value = marker("F")
                if token == "authorization":
                    value = "Bearer " + value
                add(token, value, True, pad=True)

    # Hop-by-hop headers, each possibly repeated.
    for name in draw(HOP_LISTS):
        if name == "upgrade":
            protocols = draw(UPGRADE_LISTS)
            if draw(st.booleans()):
                protocols.append(marker("F"))
            add(name, ", ".join(protocols), True)
        elif name == "te":
            add(name, f"{draw(TE_VALUES)}, {marker('F')}", True)
        elif name == "keep-alive":
            add(name, f"timeout=5, max={marker('F')}", True, pad=True)
        else:
            add(name, marker("F"), True, pad=True)

    # Hop-by-hop and reserved names smuggled as Grpc-Metadata-<key>.
    for key in draw(SMUGGLED_LISTS):
        prefix = draw(PREFIXES)
        value = marker("F")
        if key.endswith("-bin"):
            value += "="  # valid base64: the gateway would decode it (the key check still catches it)
        lines.append(Line(prefix + recase(key, *draw(CASES)), value, True, pad=not key.endswith("-bin")))

    # What may and must arrive: probes (never named), Authorization, X-Forwarded-For/-Host.
    probes = [marker("P") for _ in range(draw(PROBES))]
    for probe in probes:
        add("grpc-metadata-probe", probe, False)
    authorization: list[str] = []
    if draw(st.booleans()) and "authorization" not in named:
        authorization.append("Bearer " + marker("P"))
        add("authorization", authorization[0], False)
    forwarded_for: list[str] = []
    if "x-forwarded-for" not in named:
        for _ in range(draw(REPEATS)):
            forwarded_for.append(f"198.51.100.7 {marker('P')}")
            add("x-forwarded-for", forwarded_for[-1], False)
    forwarded_host = [HOST]
    if "x-forwarded-host" not in named:
        for _ in range(draw(REPEATS)):
            forwarded_host.append(f"{marker('P')}.example")
            add("x-forwarded-host", forwarded_host[-1], False)

    lines = draw(st.permutations(lines))
    probes = [x.value for x in lines if x.name.lower() == "grpc-metadata-probe"]  # in the order sent
    chunked = draw(st.booleans())
    note = uuid.uuid4().hex
    body = json.dumps({"note": note}).encode()
    fixed = [("Host", HOST), ("Content-Type", "application/json")]
    if chunked:
        fixed.append((recase("transfer-encoding", *draw(CASES)), "chunked"))
    else:
        fixed.append(("Content-Length", str(len(body))))
    head_lines = [
        f"POST {ECHO} HTTP/1.1",
        *(f"{n}: {v}" for n, v in fixed),
        *(f"{x.name}: {x.value}" for x in lines),
    ]
    assert len(head_lines) - 1 <= FIELD_BUDGET, len(head_lines)

    # Values up to the size limit: spread what is left of the head budget over some droppable lines.
    size = sum(len(line) + 2 for line in head_lines) + 2
    padded = [x for x in lines if x.pad and x.forbidden]
    if padded and size < HEAD_BUDGET:
        chosen = draw(st.lists(st.sampled_from(padded), max_size=3, unique_by=id))
        for line in chosen:
            left = HEAD_BUDGET - size
            extra = (
                draw(st.integers(0, left))
                if line is not chosen[-1]
                else draw(st.sampled_from([left, left // 2]))
            )
            filler = draw(FILLER)
            line.value += " " + (filler * (extra // len(filler) + 1))[: max(extra - 1, 0)]
            line.value = line.value.rstrip()
            size += extra
    head_lines = [
        f"POST {ECHO} HTTP/1.1",
        *(f"{n}: {v}" for n, v in fixed),
        *(f"{x.name}: {x.value}" for x in lines),
    ]
    head = ("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1")
    assert len(head) <= HEAD_LIMIT, len(head)

    forbidden_markers = [m for x in lines if x.forbidden for m in _markers(x.value, "F")]
    if chunked:
        split = draw(st.integers(0, len(body)))
        pieces = [p for p in (body[:split], body[split:]) if p]
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n"
        if draw(st.booleans()):  # request trailers: never seen by the application, never metadata
            trailer = [marker("F"), marker("F")]
            forbidden_markers += trailer
            body += f"Grpc-Metadata-Trailer-Field: {trailer[0]}\r\nAuthorization: {trailer[1]}\r\n".encode()
        body += b"\r\n"
    upgrades = [x.value.strip().lower() for x in lines if x.name.lower() == "upgrade"]
    options = {t.strip().lower() for x in lines if x.name.lower() == "connection" for t in x.value.split(",")}
    return Corpus(
        head=head,
        body=body,
        note=note,
        named=named,
        forbidden_markers=forbidden_markers,
        probes=probes,
        authorization=authorization,
        forwarded_for=forwarded_for,
        forwarded_host=forwarded_host,
        # uvicorn hands `Connection: upgrade` + `Upgrade: websocket` to wsproto, which refuses a POST: 400.
        ws_attempt="upgrade" in options and "websocket" in upgrades,
        close="close" in options,
        description=[(x.name, x.value[:60]) for x in lines],
    )


def _markers(value: str, kind: str) -> list[str]:
    found = []
    for word in value.replace(",", " ").replace("=", " ").replace(".", " ").split():
        if len(word) > 2 and word[0] == kind and word[-1] == "Q" and word[1:-1].isdigit():
            found.append(word)
    return found


# ------------------------------------------------------------------------------------------ exchange


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class KeepAliveConnection:
    """One reused HTTP/1.1 connection; reopened after the server closes it (or says it will)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.opened = 0

    def _open(self) -> socket.socket:
        if self.sock is not None:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:  # only EOF (or an unexpected byte) can be pending between exchanges
                self.close()
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=SOCKET_TIMEOUT)
            self.opened += 1
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes) -> Answer:
        sock = self._open()
        sock.sendall(request)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a response head: {buffer!r}")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        length = next((int(v) for k, v in headers if k == "content-length"), None)
        assert next((v for k, v in headers if k == "transfer-encoding"), None) is None, headers
        while length is None or len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                assert length is None, f"connection closed mid-body: {rest!r}"
                break
            rest += chunk
        body = rest if length is None else rest[:length]
        assert length is None or len(rest) == length, f"bytes after the response: {rest[length:]!r}"
        if length is None or status != 200 or (dict(headers).get("connection", "").lower() == "close"):
            self.close()
        return Answer(status, headers, body, head + b"\r\n\r\n" + body)


# ------------------------------------------------------------------------------------------ checks


def find_call(backend: Any, note: str) -> Any | None:
    calls = [call for call in list(backend.recorder.calls) if getattr(call.request, "note", None) == note]
    assert len(calls) <= 1, calls
    return calls[0] if calls else None


def check_response_headers(corpus: Corpus, answer: Answer) -> None:
    names = [name for name, _ in answer.headers]
    assert set(names) <= RESPONSE_HEADERS, set(names) - RESPONSE_HEADERS
    for name, value in answer.headers:
        if name == "connection":
            assert value.lower() == "close", (name, value)  # the server's own framing, never `upgrade`
        else:
            assert name not in HOP_BY_HOP, name
        assert name not in corpus.named, name
    assert len(names) == len(set(names)), names
    text = answer.raw.decode("latin-1")
    leaked = [m for m in corpus.forbidden_markers if m in text]
    assert not leaked, (leaked, text[:2000])


def check_metadata(corpus: Corpus, call: Any) -> None:
    metadata: list[tuple[str, str | bytes]] = list(call.metadata)
    keys = [key for key, _ in metadata]
    for key in keys:
        assert key not in HOP_BY_HOP, (key, metadata)
        assert not key.startswith(RESERVED_PREFIXES), (key, metadata)
        assert key not in {"content-type", "host", "te"}, (key, metadata)
    texts = [value.decode("latin-1") if isinstance(value, bytes) else value for _, value in metadata]
    leaked = [m for m in corpus.forbidden_markers for text in texts if m in text]
    assert not leaked, (leaked, metadata)
    values = {key: [v for k, v in metadata if k == key] for key in keys}
    # grpc's own user agent only; a client's never prefixes it.
    assert all(isinstance(v, str) and v.startswith("grpc-python") for v in values.get("user-agent", [])), (
        values
    )
    # The gateway's hop: the peer, after the client's value when there was one it may forward.
    assert len(values.get("x-forwarded-for", [])) == 1, values
    (forwarded_for,) = values["x-forwarded-for"]
    assert isinstance(forwarded_for, str)
    # Every client line, in order, then the peer: the gateway joins X-Forwarded-For lines (RFC 9110 §5.3).
    # The allowed client lines in the order they were sent (the corpus shuffles header order).
    allowed = set(corpus.forwarded_for)
    wire = [
        line.split(b":", 1)[1].strip().decode("latin-1")
        for line in corpus.head.split(b"\r\n")[1:]
        if line.lower().startswith(b"x-forwarded-for:")
    ]
    on_wire = [value for value in wire if value in allowed] or corpus.forwarded_for
    assert forwarded_for == ", ".join([*on_wire, PEER]), (forwarded_for, on_wire)
    assert len(values.get("x-forwarded-host", [])) <= 1, values
    assert set(values.get("x-forwarded-host", [])) <= set(corpus.forwarded_host), values
    # What must arrive did.
    assert values.get("probe") == corpus.probes, (values, corpus.probes)
    assert values.get("authorization", []) == corpus.authorization, values


@dataclass
class Stats:
    requests: int = 0
    ok: int = 0
    refused: int = 0
    ws_attempts: int = 0
    forbidden_values: int = 0
    padded_bytes: int = 0
    largest_head: int = 0
    seconds: float = 0.0


def run_corpus(port: int, backend: Any, *, examples: int, uvicorn: bool) -> Stats:
    stats = Stats()
    connection = KeepAliveConnection(port)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(corpus=corpora())
    def property_(corpus: Corpus) -> None:
        stats.requests += 1
        stats.forbidden_values += len(corpus.forbidden_markers)
        stats.ws_attempts += corpus.ws_attempt
        stats.padded_bytes += len(corpus.head)
        stats.largest_head = max(stats.largest_head, len(corpus.head))
        if next(_examples) % 200 == 0:
            backend.reset()
        try:
            answer = connection.exchange(corpus.request)
        except BaseException:
            connection.close()
            raise
        if corpus.close:
            connection.close()
        check_response_headers(corpus, answer)
        call = find_call(backend, corpus.note)
        if answer.status == 400 and uvicorn and corpus.ws_attempt:
            stats.refused += 1
            assert call is None, call.metadata
            return
        assert answer.status == 200, (answer.status, answer.body[:300], corpus.description)
        assert call is not None, corpus.note
        stats.ok += 1
        check_metadata(corpus, call)
        assert json.loads(answer.body)["note"] == corpus.note

    started = time.monotonic()
    try:
        property_()
    finally:
        connection.close()
        stats.seconds = time.monotonic() - started
    return stats


def report(server: str, stats: Stats) -> None:
    print(
        f"\n{server}: {stats.requests} generated requests, {stats.ok} answered 200, {stats.refused} refused "
        f"by the server as WebSocket handshakes ({stats.ws_attempts} looked like one); "
        f"{stats.forbidden_values} forbidden values; {stats.padded_bytes / max(stats.requests, 1):.0f} B "
        f"per head on average, {stats.largest_head} B the largest; {stats.seconds:.1f} s = "
        f"{stats.requests / stats.seconds:.0f} requests/s"
    )


# ------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def granian(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command with only the shop modules: no WebSocket route, so it runs granian."""
    server = GatewayServer(gen_dir, backend.port, extra=SHOP_MODULES)
    yield server
    server.stop()


UVICORN_EXAMPLES = 600
GRANIAN_EXAMPLES = 400


def test_header_corpus_uvicorn(uvicorn_gateway: GatewayServer, backend: Any) -> None:
    backend.reset()
    stats = run_corpus(uvicorn_gateway.port, backend, examples=UVICORN_EXAMPLES, uvicorn=True)
    report("uvicorn", stats)
    assert stats.requests >= UVICORN_EXAMPLES


def test_header_corpus_granian(granian: GatewayServer, backend: Any) -> None:
    backend.reset()
    stats = run_corpus(granian.port, backend, examples=GRANIAN_EXAMPLES, uvicorn=False)
    report("granian", stats)
    assert stats.requests >= GRANIAN_EXAMPLES
    assert stats.refused == 0


@pytest.fixture(params=["uvicorn", "granian"])
def server(request: pytest.FixtureRequest) -> GatewayServer:
    server: GatewayServer = request.getfixturevalue(
        "uvicorn_gateway" if request.param == "uvicorn" else "granian"
    )
    return server


def test_checks_catch_leaks() -> None:
    """The property's checks are not vacuous: a leaked value, key or missing probe each fails them."""

    @dataclass
    class FakeCall:
        metadata: tuple[tuple[str, str | bytes], ...]

    corpus = Corpus(
        head=b"",
        body=b"",
        note="n",
        named={"x-secret"},
        forbidden_markers=["F1Q"],
        probes=["P0Q"],
        authorization=[],
        forwarded_for=["198.51.100.7 P2Q"],
        forwarded_host=[HOST],
        ws_attempt=False,
        close=False,
    )
    good = (("probe", "P0Q"), ("x-forwarded-for", "198.51.100.7 P2Q, 127.0.0.1"), ("x-forwarded-host", HOST))
    check_metadata(corpus, FakeCall(good))
    bad: list[tuple[tuple[str, str | bytes], ...]] = [
        (*good, ("x-secret", "F1Q")),
        (*good, ("keep-alive", "1")),
        (*good, ("grpc-timeout", b"\x01")),
        (*good, ("host", HOST)),
        (*good, ("user-agent", "evil grpc-python")),
        (("probe", "P0Q"), ("x-forwarded-for", "198.51.100.7 P2Q"), ("x-forwarded-host", HOST)),
        (("probe", "P0Q"), ("x-forwarded-for", "6.6.6.6, 127.0.0.1")),
        (("probe", "P0Q"), ("x-forwarded-for", PEER), ("x-forwarded-host", "evil.example")),
        (("x-forwarded-for", PEER),),
    ]
    for metadata in bad:
        with pytest.raises(AssertionError):
            check_metadata(corpus, FakeCall(metadata))
    answer = Answer(200, [("upgrade", "h2c")], b"", b"HTTP/1.1 200 OK\r\nupgrade: h2c\r\n\r\n")
    with pytest.raises(AssertionError):
        check_response_headers(corpus, answer)
    answer = Answer(200, [("connection", "upgrade")], b"", b"HTTP/1.1 200 OK\r\nconnection: upgrade\r\n\r\n")
    with pytest.raises(AssertionError):
        check_response_headers(corpus, answer)
    answer = Answer(
        200, [("content-length", "3")], b"F1Q", b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nF1Q"
    )
    with pytest.raises(AssertionError):
        check_response_headers(corpus, answer)


# ------------------------------------------------------------------------------------------ framing

BASE = [("Host", HOST), ("Content-Type", "application/json")]
SMUGGLERS = [
    ("Connection", "x-secret"),
    ("X-Secret", "F1Q"),
    ("Grpc-Metadata-Transfer-Encoding", "F2Q"),
    ("Grpc-Metadata-Content-Length", "F3Q"),
]


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


#: name -> (header lines after BASE + SMUGGLERS, body builder, HTTP version). Every case is answered by
#: one of the servers with a 4xx; some by the other with 200 (each server's choice is its own).
MALFORMED: dict[str, tuple[list[bytes], Any, str]] = {
    "te-chunked-and-content-length": ([b"Transfer-Encoding: chunked", b"Content-Length: 3"], _chunked, "1.1"),
    "te-gzip": ([b"Transfer-Encoding: gzip", b"Content-Length: {n}"], bytes, "1.1"),
    "te-gzip-chunked": ([b"Transfer-Encoding: gzip, chunked"], _chunked, "1.1"),
    "te-chunked-chunked": ([b"Transfer-Encoding: chunked, chunked"], _chunked, "1.1"),
    "te-two-lines": ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], _chunked, "1.1"),
    "te-identity": ([b"Transfer-Encoding: identity", b"Content-Length: {n}"], bytes, "1.1"),
    "te-empty": ([b"Transfer-Encoding: ", b"Content-Length: {n}"], bytes, "1.1"),
    "te-space-before-colon": ([b"Transfer-Encoding : chunked", b"Content-Length: {n}"], bytes, "1.1"),
    "te-in-http-1.0": ([b"Transfer-Encoding: chunked"], _chunked, "1.0"),
    "content-length-twice-different": ([b"Content-Length: {n}", b"Content-Length: 99"], bytes, "1.1"),
    "content-length-list": ([b"Content-Length: {n}, {n}"], bytes, "1.1"),
    "content-length-negative": ([b"Content-Length: -1"], bytes, "1.1"),
    "content-length-plus": ([b"Content-Length: +{n}"], bytes, "1.1"),
    "obs-fold-smuggles-a-header": (
        [b"X-Innocent: a", b" Grpc-Metadata-Folded: F4Q", b"Keep-Alive: 1", b" F5Q", b"Content-Length: {n}"],
        bytes,
        "1.1",
    ),
    "line-without-colon": ([b"Grpc-Metadata-Nocolon F6Q", b"Content-Length: {n}"], bytes, "1.1"),
    "space-in-name": ([b"Grpc-Metadata-Two Words: F7Q", b"Content-Length: {n}"], bytes, "1.1"),
    "nul-in-value": ([b"Grpc-Metadata-Nul: F8Q\x00x", b"Content-Length: {n}"], bytes, "1.1"),
    "cr-in-value": ([b"Grpc-Metadata-Cr: F9Q\rx", b"Content-Length: {n}"], bytes, "1.1"),
    "websocket-upgrade-without-key": (
        [b"Connection: Upgrade", b"Upgrade: websocket", b"Content-Length: {n}"],
        bytes,
        "1.1",
    ),
}
MALFORMED_MARKERS = [f"F{i}Q" for i in range(1, 10)]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_framing_is_refused_cleanly(server: GatewayServer, backend: Any, case: str) -> None:
    """Deliberately malformed framing or header syntax: a clean 4xx from the server (or the gateway), or a
    200 when the server accepts it; never a 5xx, never a forbidden value at the backend or in the answer,
    and the connection stays in step (a request sent after it on the same connection gets its own answer,
    unless the server closed)."""
    backend.reset()
    note = uuid.uuid4().hex
    body = json.dumps({"note": note}).encode()
    lines, frame, version = MALFORMED[case]
    head = [f"POST {ECHO} HTTP/{version}".encode()]
    head += [f"{n}: {v}".encode() for n, v in BASE + SMUGGLERS]
    head += [line.replace(b"{n}", str(len(body)).encode()) for line in lines]
    request = b"\r\n".join(head) + b"\r\n\r\n" + frame(body)
    connection = KeepAliveConnection(server.port)
    try:
        answer = connection.exchange(request)
        corpus = Corpus(b"", b"", note, {"x-secret"}, MALFORMED_MARKERS, [], [], [], [HOST], False, False)
        check_response_headers(corpus, answer)
        assert answer.status in (200, 400, 431, 501), (answer.status, answer.body)
        call = find_call(backend, note)
        if answer.status == 200:
            assert call is not None
            metadata = [(k, v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in call.metadata]
            assert not [m for m in MALFORMED_MARKERS for _, v in metadata if m in v], metadata
            assert not {k for k, _ in metadata} & (HOP_BY_HOP | {"secret", "x-secret", "content-length"})
        else:
            assert call is None, call.metadata
        if connection.sock is None:
            return
        follow = uuid.uuid4().hex
        follow_body = json.dumps({"note": follow}).encode()
        second = connection.exchange(
            http_head([*BASE, ("Content-Length", str(len(follow_body)))]) + follow_body
        )
        assert second.status == 200, second.body
        assert json.loads(second.body)["note"] == follow
    finally:
        connection.close()


def http_head(lines: list[tuple[str, str]]) -> bytes:
    return (f"POST {ECHO} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in lines) + "\r\n").encode(
        "latin-1"
    )


def test_head_size_limits(uvicorn_gateway: GatewayServer, granian: GatewayServer, backend: Any) -> None:
    """The limits the corpus stays within: granian (hyper) refuses more than 100 header fields with 431;
    uvicorn with the gateway's zttp protocol (the serve default with WebSocket routes) refuses them too,
    and a head over 16 KiB, with 431 and a google.rpc.Status body. Below them, both answer."""
    gateway = uvicorn_gateway
    backend.reset()
    fields = [(f"X-Field-{i}", "v") for i in range(FIELD_LIMIT - 3)]
    body = b'{"note": "fields"}'
    ok = http_head(BASE + fields + [("Content-Length", str(len(body)))]) + body
    too_many = http_head([*BASE, *fields, ("X-One-More", "v"), ("Content-Length", str(len(body)))]) + body
    for port in (gateway.port, granian.port):
        assert KeepAliveConnection(port).exchange(ok).status == 200
    for port in (gateway.port, granian.port):
        refused = KeepAliveConnection(port).exchange(too_many)
        assert refused.status == 431
        assert {name for name, _ in refused.headers} <= RESPONSE_HEADERS
    # A head growing past 16 KiB (two segments): uvicorn (zttp) answers 431 with a Status and closes.
    big = http_head([*BASE, ("X-Big", "a" * HEAD_LIMIT), ("Content-Length", str(len(body)))]) + body
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=SOCKET_TIMEOUT) as sock:
        sock.sendall(big[: HEAD_LIMIT + 100])
        time.sleep(0.2)
        with contextlib.suppress(OSError):  # the server may have closed already
            sock.sendall(big[HEAD_LIMIT + 100 :])
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    assert b'"code":8' in data
    assert [call.request.note for call in backend.recorder.calls] == ["fields"] * 2


@pytest.mark.parametrize("value", ["1.2.3.4\x80", "caf\xe9"])
def test_unprintable_x_forwarded_for_keeps_the_peer(server: GatewayServer, backend: Any, value: str) -> None:
    backend.reset()
    body = b'{"note": "xff"}'
    request = http_head([*BASE, ("X-Forwarded-For", value), ("Content-Length", str(len(body)))]) + body
    answer = KeepAliveConnection(server.port).exchange(request)
    assert answer.status == 200
    assert backend.recorder.last("EchoMetadata").metadata_values("x-forwarded-for") == [PEER]
