"""The Upgrade matrix through more real proxies (tests/proxies.py): nginx with the common `Connection
"upgrade"` snippet, HAProxy, Caddy, Apache httpd (mod_proxy_http `upgrade=websocket`, and the classic
mod_rewrite + mod_proxy_wstunnel recipe), each in front of the shipped default serve configuration
(`python gen/pygateway_serve.py`), with a wire tap between proxy and gateway.

Every cell of tests/test_upgrade_matrix.py is sent through each proxy. Two things are compared with the
tables below: what reached the gateway (FORWARDED: the `Connection`/`Upgrade`/`HTTP2-Settings` headers
of the first request the proxy sent, as the wire tap recorded it) and what the client got (PROXY_MATRIX,
the outcome tokens of tests/test_upgrade_matrix.py).

PROXY_MATRIX holds the outcome each cell must have. A few cells are the known open item of issue 16
section 2 (the shipped default refuses `Upgrade: websocket` requests without `Sec-WebSocket-Key` with the
HTTP server's own 400, before the gateway runs): KNOWN_OPEN has the outcome they have today. Such a cell is
an xfail (strict=False) when, and only when, it shows exactly that outcome; any other outcome must be the
PROXY_MATRIX one. Once the default serves those requests, the cells pass and KNOWN_OPEN empties.

docs/upgrade-matrix.md has one section per proxy, rendered from these tables (`render_proxy_sections`,
called by tests/test_upgrade_matrix.py's `render_doc`); the cells run on each `make test`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import test_upgrade_matrix as upgrade_matrix
from tests.proxies import PROXIES, WireTap, forwarded_token, proxy_binary, start_proxy
from tests.servers import start_gateways
from tests.stream_support import RawStream, start_request
from tests.test_upgrade_matrix import CELLS, COUNT, OBSERVED, WATCH, Probe, has_stream_routes

ROWS = [f"{proxy}-default" for proxy in PROXIES]

SECTION2 = (
    "issue 16 section 2 (open): the shipped default answers `Upgrade: websocket` without "
    "`Sec-WebSocket-Key` with the HTTP server's own 400 before the gateway runs"
)

_OK = "200 next✓"
_S = f"200 {COUNT}/{COUNT} next✓"
#: Every cell served as plain HTTP (or a WebSocket accepted), bodies intact, the connection kept: what a
#: proxy in front of a gateway that serves every request should give.
_ALL_GOOD: dict[str, str] = {
    "a": _OK,
    "b": _OK,
    "c": _OK,
    "c2": _OK,
    "d": _OK,
    "f": _OK,
    "g": "200+200 next✓",
    # A valid handshake to a route without WebSocket: the default (uvicorn with the gateway's protocol)
    # answers a complete 404 and closes its connection; the proxy keeps the client's (see HAPROXY_RACE).
    "ws": "404 next✓",
    "sa": _S,
    "sb": _S,
    "sc": _S,
    "sc2": _S,
    "sd": _S,
    "sse": f"200 sse{COUNT}/{COUNT} next✓",
    "sf": "200 3/3 next✓",
    "sg": f"200 {COUNT}/{COUNT}+200 next✓",
    "up": _OK,
    "chat": "200 2/2 next✓",
    "sws": f"101→ws {COUNT}/{COUNT} close1000",
}

_KEYLESS = ("c2", "d", "sc2", "sd")
"""The cells sending `Upgrade: websocket` without `Sec-WebSocket-Key`."""
#: HAProxy answers `Upgrade: websocket` without a key itself (400 + HTML + close; nothing reaches the
#: gateway, whatever the gateway would do).
_HAPROXY_KEYLESS = dict.fromkeys(_KEYLESS, "400(server) close")

#: Rows whose paced stream cells may or may not show `buffered`, depending on scheduling: HAProxy without
#: `option http-no-delay` lets the kernel merge small writes, holding each stream message back for up to
#: 200 ms; 5 lines 40 ms apart then usually arrive together (`buffered`), but not when the machine is
#: busy enough to spread them over two holds. The cells are compared without that token, and
#: test_haproxy_holds_stream_messages measures the hold itself.
HELD_ROWS = {"haproxy-default"}
_PACED = ("sa", "sb", "sc", "sse", "sf", "sg")


def _without_buffered(outcome: str) -> str:
    return outcome.replace(" buffered", "")


#: row -> cell -> the outcome the cell must have.
PROXY_MATRIX: dict[str, dict[str, str]] = {
    "nginx-fixed-default": dict(_ALL_GOOD),
    "haproxy-default": {**_ALL_GOOD, **_HAPROXY_KEYLESS},
    "haproxy-nodelay-default": {**_ALL_GOOD, **_HAPROXY_KEYLESS},
    "caddy-default": dict(_ALL_GOOD),
    "apache-default": dict(_ALL_GOOD),
    "apache-wstunnel-default": dict(_ALL_GOOD),
}

#: row -> cell -> today's outcome of the cells that the section 2 refusal breaks (xfail when seen): the
#: proxy forwards the keyless `Upgrade: websocket` and granian (WebSocket on) answers 400 itself. nginx
#: and Caddy keep the client's connection; Apache closes it after an upgrade its backend did not accept.
KNOWN_OPEN: dict[str, dict[str, str]] = {}  # section 2 landed: the default serves them (all cells pass)

#: HAProxy forwards the gateway's 404 to a handshake on a unary route and, when the gateway's connection
#: close reaches it first, closes the client's connection too (seen once in three runs): either is right.
HAPROXY_RACE = {"404 next✓", "404 close"}


def _forwarded(
    plain: str, h2c_settings: str, h2c: str, websocket: str, *, bodies: str = "", keyless: str = ""
) -> dict[str, str]:
    """FORWARDED for one proxy from what it sends for each kind of request (`bodies`: the b headers on a
    request with a body, when that differs from b; `keyless`: c2/d, when that differs from `ws`)."""
    kinds = [
        (plain, ("a", "sa")),
        (h2c_settings, ("b", "sb")),
        (bodies or h2c_settings, ("f", "sf", "up", "chat")),
        (h2c, ("c", "g", "sc", "sse", "sg")),
        (websocket, ("ws", "sws")),
        (keyless or websocket, _KEYLESS),
    ]
    table = {cell: token for token, cells in kinds for cell in cells}
    return {cell: table[cell] for cell in CELLS}


_HAPROXY_FORWARDED = _forwarded(
    "-",
    "C: Upgrade, HTTP2-Settings · U: h2c · S",
    "C: upgrade · U: h2c",
    "C: Upgrade · U: websocket",
    bodies="C: Upgrade, HTTP2-Settings · S",
    keyless="none",
)

#: proxy -> cell -> the Connection (C) / Upgrade (U) / HTTP2-Settings (S) headers of the first request
#: that reached the gateway; `-` none of them, `none` nothing reached it.
FORWARDED: dict[str, dict[str, str]] = {
    # `Connection: upgrade` on every request; the client's Upgrade (and HTTP2-Settings) passed on.
    "nginx-fixed": _forwarded(
        "C: upgrade", "C: upgrade · U: h2c · S", "C: upgrade · U: h2c", "C: upgrade · U: websocket"
    ),
    # HAProxy passes the client's `Connection` and `Upgrade` as they are, except `Upgrade` on a request
    # with a body (dropped); keyless WebSocket upgrades never reach the gateway.
    "haproxy": _HAPROXY_FORWARDED,
    "haproxy-nodelay": _HAPROXY_FORWARDED,
    # Go's ReverseProxy: any `Upgrade` passes as `Connection: Upgrade` + `Upgrade`, the headers
    # `Connection` names (HTTP2-Settings) are dropped.
    "caddy": _forwarded("-", "C: Upgrade · U: h2c", "C: Upgrade · U: h2c", "C: Upgrade · U: websocket"),
    # mod_proxy_http: `Connection: Keep-Alive` of its own; only the upgrade it was told (websocket) passes.
    "apache": _forwarded("C: Keep-Alive", "C: Keep-Alive", "C: Keep-Alive", "C: Upgrade · U: websocket"),
    "apache-wstunnel": _forwarded(
        "C: Keep-Alive", "C: Keep-Alive", "C: Keep-Alive", "C: Upgrade · U: websocket"
    ),
}

#: One short verdict per proxy for the docs.
PROXY_VERDICTS: dict[str, str] = {
    "nginx-fixed": (
        "**fine**: every plain request reaches the gateway with `Connection: upgrade` (harmless to it), "
        "the client's `Upgrade` is passed on, and `X-Accel-Buffering: no` on the gateway's streams turns "
        "nginx's default buffering off for them; keyless `Upgrade: websocket` requests are served as "
        "plain HTTP by the default."
    ),
    "haproxy": (
        "**use with `option http-no-delay`**: as commonly configured, HAProxy holds each stream message "
        "back for up to 200 ms (it lets the kernel merge small writes; `option http-no-delay` stops "
        "that), so paced streams arrive in bursts (`buffered`). It passes `Upgrade: h2c` on (dropping it "
        "from requests with a body) and answers `Upgrade: websocket` without a key with its own 400 and a "
        "closed connection: those requests never reach the gateway, whatever the gateway does."
    ),
    "haproxy-nodelay": (
        "**use**: every stream cell paced; the keyless `Upgrade: websocket` cells are HAProxy's own 400 "
        "(not configurable, not the gateway's)."
    ),
    "caddy": (
        "**fine**: streams flushed as they come, `Upgrade: h2c` passed on as `Connection: Upgrade` "
        "(harmless to the gateway); keyless `Upgrade: websocket` requests served as plain HTTP."
    ),
    "apache": (
        "**fine**: mod_proxy_http passes only the WebSocket upgrade it is told and flushes streams as "
        "they come; keyless `Upgrade: websocket` requests served as plain HTTP."
    ),
    "apache-wstunnel": (
        "**fine**: the same cells as `apache` (since httpd 2.4.47 mod_proxy_wstunnel "
        "leaves `ws://` to mod_proxy_http's upgrade handling: `ProxyWebsocketFallbackToProxyHttp` is on "
        "by default)."
    ),
}


def _known_open(row: str, cell: str) -> bool:
    return cell in KNOWN_OPEN.get(row, {})


class KnownOpenError(AssertionError):
    """The cell shows exactly the known-open outcome (issue 16 section 2)."""


def _params() -> list[Any]:
    params = []
    for row in ROWS:
        for cell in CELLS:
            marks = []
            if _known_open(row, cell):
                marks.append(pytest.mark.xfail(reason=SECTION2, strict=False, raises=KnownOpenError))
            params.append(pytest.param(row, cell, marks=marks, id=f"{row}-{cell}"))
    return params


def require_proxy(proxy: str) -> str:
    """The proxy's binary; a failure on CI (CI=true), where .ci/run installs it, else a skip."""
    binary = proxy_binary(proxy)
    if binary is None:
        package = PROXIES[proxy][0]
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{proxy} is not installed: on CI .ci/run installs it (apt-get install {package})")
        pytest.skip(f"{proxy} is not installed (CI installs it; locally: apt-get install {package})")
    return binary


#: The serve configuration the rows measure, and the one that shows what a KNOWN_OPEN cell must become:
#: the serve command with `--websocket off` already serves keyless `Upgrade: websocket` requests as plain
#: HTTP, so the same proxy in front of it measures the target of those cells.
MEASURED, TARGET = "default", "default-no-ws"


@pytest.fixture(scope="module")
def proxied(
    gen_dir: Path, backend: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str], tuple[int, WireTap]]]:
    """(proxy, serve configuration) -> (the proxy's port, the tap between it and that serve command)."""
    work = tmp_path_factory.mktemp("proxies")
    gateways = start_gateways([MEASURED, TARGET], gen_dir, backend.target, work)
    taps: list[WireTap] = []
    proxies: list[Any] = []
    found: dict[tuple[str, str], tuple[int, WireTap]] = {}
    try:
        for proxy in PROXIES:
            binary = proxy_binary(proxy)
            if binary is None:
                continue
            for config in (MEASURED, TARGET):
                if config == TARGET and not any(KNOWN_OPEN.get(f"{proxy}-default", {})):
                    continue
                tap = WireTap(gateways[config].port)
                taps.append(tap)
                process = start_proxy(proxy, binary, tap.port, work / f"{proxy}-{config}")
                proxies.append(process)
                found[(proxy, config)] = (process.port, tap)
        yield found
    finally:
        for process in proxies:
            process.stop()
        for tap in taps:
            tap.close()
        for gateway in gateways.values():
            gateway.stop()


def _probe(
    proxied: dict[tuple[str, str], tuple[int, WireTap]], proxy: str, config: str, cell: str, backend: Any
) -> tuple[str, str]:
    """(what the client got, what reached the gateway) for `cell` through `proxy` to `config`."""
    port, tap = proxied[(proxy, config)]
    backend.reset()
    tap.reset()
    outcome = getattr(Probe(port, backend), cell)()
    requests = tap.requests()
    return outcome, forwarded_token(requests[0] if requests else None)


PROXIED_HANG_WAIT = 4.0
"""tests/test_upgrade_matrix.py's HANG_WAIT for cells through a proxy: the plain GET that follows a cell
takes two more hops (the proxy opens a new upstream connection, through the wire tap), and on a loaded
machine 1.5 s was seen to pass. No cell here expects `hang` or `+lost`, so a larger wait costs nothing."""


@pytest.fixture(autouse=True)
def _proxied_hang_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upgrade_matrix, "HANG_WAIT", PROXIED_HANG_WAIT)


FORWARDED_OBSERVED: dict[str, dict[str, str]] = {}


@pytest.mark.parametrize(("row", "cell"), _params())
def test_proxy_cell(
    row: str, cell: str, proxied: dict[tuple[str, str], tuple[int, WireTap]], backend: Any, gen_dir: Path
) -> None:
    proxy = row.removesuffix("-default")
    require_proxy(proxy)
    if CELLS[cell][0] == "stream" and not has_stream_routes(gen_dir):
        pytest.skip("the gateway does not generate the FeedService streaming routes")
    outcome, forwarded = _probe(proxied, proxy, MEASURED, cell, backend)
    OBSERVED.setdefault(row, {})[cell] = outcome
    FORWARDED_OBSERVED.setdefault(proxy, {})[cell] = forwarded
    expected_forwarded = FORWARDED.get(proxy, {}).get(cell)
    assert forwarded == expected_forwarded, (
        f"{proxy} cell {cell}: the gateway received {forwarded!r}, table says {expected_forwarded!r}"
    )
    known = KNOWN_OPEN.get(row, {}).get(cell)
    if known is not None and outcome == known:
        raise KnownOpenError(f"{row} cell {cell}: {outcome!r} ({SECTION2})")
    expected = PROXY_MATRIX[row][cell]
    if row in HELD_ROWS:
        outcome = _without_buffered(outcome)
    if row.startswith("haproxy") and cell == "ws" and outcome in HAPROXY_RACE:
        outcome = expected
    assert outcome == expected, f"{row} cell {cell}: got {outcome!r}, table says {expected!r}"


@pytest.mark.parametrize(
    ("row", "cell"), [(row, cell) for row, cells in KNOWN_OPEN.items() for cell in cells] or [("", "")]
)
def test_known_open_target(
    row: str, cell: str, proxied: dict[tuple[str, str], tuple[int, WireTap]], backend: Any
) -> None:
    """What a KNOWN_OPEN cell must become is measured, not guessed: the same proxy in front of the serve
    command with `--websocket off` (which serves keyless `Upgrade: websocket` requests) gives it, with
    the same headers reaching the server."""
    if not row:
        pytest.skip("no known-open cells")
    proxy = row.removesuffix("-default")
    require_proxy(proxy)
    outcome, forwarded = _probe(proxied, proxy, TARGET, cell, backend)
    assert forwarded == FORWARDED[proxy][cell], f"{proxy} to {TARGET}, cell {cell}: received {forwarded!r}"
    assert outcome == PROXY_MATRIX[row][cell], f"{proxy} to {TARGET}, cell {cell}: got {outcome!r}"


HOLD_COUNT, HOLD_INTERVAL_MS = 6, 250


def _message_delays(port: int) -> list[float]:
    """How late each message of a stream paced HOLD_INTERVAL_MS apart arrives, against its schedule
    (message k is written about k intervals after the request; the last one, followed by the end of the
    response, is left out: nothing holds it)."""
    with RawStream(port) as stream:
        sent = time.monotonic()
        stream.send(start_request("GET", f"{WATCH}?count={HOLD_COUNT}&intervalMs={HOLD_INTERVAL_MS}"))
        assert stream.read_head() == 200
        lines = [(at, item) for at, item in stream.timed_json_lines() if "result" in item]
    assert len(lines) == HOLD_COUNT
    return [at - sent - k * HOLD_INTERVAL_MS / 1000 for k, (at, _) in enumerate(lines[:-1])]


def test_haproxy_holds_stream_messages(
    proxied: dict[tuple[str, str], tuple[int, WireTap]], backend: Any
) -> None:
    """HAProxy as commonly configured holds every stream message back for about 200 ms (the kernel's
    limit for merged writes); `option http-no-delay` sends each at once. Measured on the same stream
    through both, median of the delays."""
    require_proxy("haproxy")
    held = statistics.median(_message_delays(proxied[("haproxy", MEASURED)][0]))
    prompt = statistics.median(_message_delays(proxied[("haproxy-nodelay", MEASURED)][0]))
    print(f"HAProxy: messages {held * 1000:.0f} ms late, {prompt * 1000:.0f} ms with http-no-delay")
    assert 0.15 <= held <= 0.6, f"HAProxy without http-no-delay: messages {held * 1000:.0f} ms late"
    assert prompt <= held - 0.1, f"with http-no-delay {prompt * 1000:.0f} ms, without {held * 1000:.0f} ms"


def test_proxy_tables_complete() -> None:
    assert set(PROXY_MATRIX) == set(ROWS) and set(FORWARDED) == set(PROXIES) == set(PROXY_VERDICTS)
    for outcomes in [*PROXY_MATRIX.values(), *FORWARDED.values()]:
        assert set(outcomes) == set(CELLS)
    for row, cells in KNOWN_OPEN.items():
        assert row in PROXY_MATRIX and set(cells) <= set(CELLS)


@pytest.fixture(scope="module", autouse=True)
def _write_observed() -> Iterator[None]:
    yield
    target = os.environ.get("PYGATEWAY_PROXIES_OBSERVED")
    if target:
        import json

        Path(target).write_text(
            json.dumps({"outcomes": OBSERVED, "forwarded": FORWARDED_OBSERVED}, indent=1, ensure_ascii=False)
            + "\n"
        )


# ------------------------------------------------------------------------------------------------ the docs


def render_proxy_sections() -> str:
    """One docs section per proxy: what reached the gateway and what the client got, cell by cell."""
    parts = [
        "## More proxies in front of the shipped default\n",
        "Each proxy below is the Debian package, configured as its users configure it for WebSocket "
        "pass-through, in front of `default` (`python gen/pygateway_serve.py`), with a TCP wire tap between "
        "proxy and gateway (`tests/proxies.py`, `tests/test_upgrade_proxies.py`). *Reached the gateway*: the "
        "`Connection` (C), `Upgrade` (U) and `HTTP2-Settings` (S) headers of the request the proxy sent "
        "(`-` none of them, `none` the proxy answered by itself). *Client got*: the outcome tokens above. "
        "Keyless `Upgrade: websocket` cells were the open item of issue 16 section 2 until the default "
        "became uvicorn with the gateway's HTTP protocol (docs/serving.md): every cell now passes. A cell "
        "marked † has each stream message held back up to 200 ms by the "
        "proxy: `buffered` when the messages fall within one hold, as 5 lines 40 ms apart usually do "
        "(measured on a slower stream by `test_haproxy_holds_stream_messages`).\n",
    ]
    for proxy, (package, text) in PROXIES.items():
        row = f"{proxy}-default"
        known = KNOWN_OPEN.get(row, {})
        parts.append(f"### `{row}`\n")
        parts.append(f"{text} (Debian package `{package}`).\n")
        parts.append(f"**Verdict**: {PROXY_VERDICTS[proxy]}\n")
        header = "| cell | reached the gateway | client got |"
        rule = "|---|---|---|"
        if known:
            header += " must be |"
            rule += "---|"
        parts += [header, rule]
        for cell in CELLS:
            got = f"{known[cell]} ‡" if cell in known else PROXY_MATRIX[row][cell]
            if row in HELD_ROWS and cell in _PACED:
                got += " †"
            line = f"| {cell} | {FORWARDED[proxy][cell]} | {got} |"
            if known:
                line += f" {PROXY_MATRIX[row][cell] if cell in known else ''} |"
            parts.append(line)
        parts.append("")
    return "\n".join(parts)
