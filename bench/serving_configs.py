#!/usr/bin/env python3
"""Which ASGI server configuration should serve the generated gateway by default? Measure them.

Starts the demo gRPC backend (bench/backend_proc.py: demo.backend.start_backend) once, then, one at a time,
the generated gateway (every module of gen/ combined with pygateway_runtime.combine, channel created in
the server's loop: bench/gw_app.py) under each server configuration, on its own loopback port:

  uvicorn-h11-wsnone      uvicorn --http h11 --ws none            (the matrix's safe default)
  uvicorn-h11-wsproto     uvicorn --http h11 --ws wsproto         (what gen/pygateway_serve.py picks when a WS route exists)
  uvicorn-httptools-wsnone uvicorn --http httptools --ws none     (unsafe: body drop / lost pipelined request)
  uvicorn-zttp-wsnone     uvicorn --http zttp --ws none
  granian-h1-nows         granian --interface asgi --http 1 --no-ws --workers 1
  granian-h1-ws           granian --interface asgi --http 1 --ws --workers 1
  shipped (opt-in)        python gen/pygateway_serve.py (uvicorn h11 + wsproto here, log level info = access log on)
  shipped-log-warning (opt-in)  the same with --log-level warning (access log off)

All uvicorn configs: --lifespan off --loop asyncio --no-access-log --log-level warning --no-server-header
--no-proxy-headers; granian: --loop asyncio (uvloop is not installed, so both run the stdlib loop).
Gateway pinned to core 1 (taskset -c 1), backend and load generator to core 0.

Per (config, repetition), repetitions interleaved (the config order rotates each round):
  warm-up wrk -d1s GET (discarded);
  wrk -t1 -c32 -d5s --latency GET /v1/shelves/fiction/books/dune;
  wrk -t1 -c32 -d5s --latency -s echo_post.lua  (POST /v1/metadata:echo, 25-byte JSON body);
  curl -N GET /v1/shelves/fiction/events:watch?count=20000 (wall time, gateway CPU for the whole stream);
and in the first round only, raw-socket correctness probes (%2F path, POST + Upgrade: h2c body intact,
pipelined request after an upgrade request, Upgrade: websocket without key, WebSocket handshakes).
Gateway CPU = utime+stime of every process in the gateway's process group from /proc/PID/stat.
"other CPU" = whole-machine busy time minus gateway, backend and wrk/curl: > 0 means foreign load.
--clean waits for a quiet machine and repeats noisy runs (use it when the machine is shared).
Medians over the repetitions; raw rows in bench/results/serving_configs.json, server logs in bench/results/logs/.

    .venv/bin/python bench/serving_configs.py [--reps 3] [--duration 5] [--configs a,b,...]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = str(ROOT / ".venv" / "bin" / "python")
TCK = os.sysconf("SC_CLK_TCK")
RESULTS = HERE / "results"
LOGS = RESULTS / "logs"

GET_PATH = "/v1/shelves/fiction/books/dune"
RESULT_MARK = b'{"result"'
STREAM_COUNT = 20000
STREAM_PATH = f"/v1/shelves/fiction/events:watch?count={STREAM_COUNT}"

UVICORN_COMMON = [
    "--lifespan",
    "off",
    "--loop",
    "asyncio",
    "--no-access-log",
    "--log-level",
    "warning",
    "--no-server-header",
    "--no-proxy-headers",
]


def uvicorn_cmd(http: str, ws: str):
    return lambda port: [
        PY,
        "-m",
        "uvicorn",
        "gw_app:app",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        http,
        "--ws",
        ws,
        *UVICORN_COMMON,
    ]


def granian_cmd(ws: bool):
    return lambda port: [
        PY,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--http",
        "1",
        "--ws" if ws else "--no-ws",
        "--workers",
        "1",
        "--loop",
        "asyncio",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--working-dir",
        str(HERE),
        "gw_app:app",
    ]


def shipped_cmd(port: int, upstream: str, *extra: str):
    return [
        PY,
        str(ROOT / "gen" / "pygateway_serve.py"),
        "--upstream",
        upstream,
        "--listen",
        f"127.0.0.1:{port}",
        *extra,
    ]


CONFIGS = {
    "uvicorn-h11-wsnone": uvicorn_cmd("h11", "none"),
    "uvicorn-h11-wsproto": uvicorn_cmd("h11", "wsproto"),
    "uvicorn-httptools-wsnone": uvicorn_cmd("httptools", "none"),
    "uvicorn-zttp-wsnone": uvicorn_cmd("zttp", "none"),
    "granian-h1-nows": granian_cmd(False),
    "granian-h1-ws": granian_cmd(True),
    # issue 16 §2 candidates: WebSocket only for real handshakes (tests/upgrade_candidates.py)
    "uvicorn-h11keyless-wsproto": uvicorn_cmd("tests.upgrade_candidates:KeylessH11", "wsproto"),
    "uvicorn-zttpkeyless-wsproto": uvicorn_cmd("tests.upgrade_candidates:KeylessZttp", "wsproto"),
    "uvicorn-zttpkeyless-h2-wsproto": uvicorn_cmd("tests.upgrade_candidates:KeylessAutoZttp", "wsproto"),
    "shipped": None,  # filled in with the upstream
    "shipped-log-warning": None,  # the same with --log-level warning (uvicorn's access log off)
}
DEFAULT_CONFIGS = [name for name in CONFIGS if not name.startswith("shipped")]


# ------------------------------------------------------------------------------------------ CPU accounting


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from `state` on (field 3)


def group_ticks(pgid: int) -> int:
    """utime+stime of every live process whose process group is `pgid`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields and int(fields[2]) == pgid:  # field 5 = pgrp
            total += int(fields[11]) + int(fields[12])  # fields 14, 15
    return total


def busy_ticks() -> int:
    with open("/proc/stat") as f:
        parts = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return user + nice + system + irq + softirq + steal


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# ------------------------------------------------------------------------------------------ processes


def start(cmd: list[str], log: Path, env: dict[str, str], core: str) -> subprocess.Popen:
    f = open(log, "ab")
    f.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
    f.flush()
    return subprocess.Popen(
        ["taskset", "-c", core, *cmd],
        stdout=f,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=str(ROOT),
    )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group we created (pgid == our child's pid), SIGKILL after 5 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # leftovers of the group (granian workers) if the leader exited first
    for _ in range(50):
        if not group_ticks_alive(proc.pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def group_ticks_alive(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


# ------------------------------------------------------------------------------------------ raw HTTP


def _read_response(
    sock: socket.socket, buf: bytes, deadline: float
) -> tuple[int | None, bytes, bytes, bytes]:
    """One HTTP/1.1 response from `buf` + the socket: (status, headers, body, rest). status None: none came."""

    def more() -> bool:
        nonlocal buf
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, OSError):
            return False
        if not chunk:
            return False
        buf += chunk
        return True

    while b"\r\n\r\n" not in buf:
        if not more():
            return None, b"", b"", buf
    head, _, buf = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    m = re.search(rb"\r\ncontent-length: *(\d+)", headers)
    if m:
        n = int(m.group(1))
        while len(buf) < n and more():
            pass
        return status, head, buf[:n], buf[n:]
    if b"transfer-encoding: chunked" in headers:
        body = b""
        while True:
            while b"\r\n" not in buf:
                if not more():
                    return status, head, body, buf
            size_line, _, rest = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                if not more():
                    return status, head, body + rest, b""
                rest = buf.partition(b"\r\n")[2]
            body += rest[:size]
            buf = rest[size + 2 :]  # the last chunk (size 0) is followed by the final CRLF (no trailers sent)
            if size == 0:
                return status, head, body, buf
    if status in (101, 204, 304) or 100 <= status < 200:
        return status, head, b"", buf
    while more():  # until close
        pass
    return status, head, buf, b""


def raw_exchange(port: int, data: bytes, responses: int = 1, timeout: float = 2.0) -> list[tuple]:
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        for _ in range(responses):
            status, head, body, buf = _read_response(sock, buf, deadline)
            out.append((status, head, body))
            if status is None or status == 101:
                out[-1] = (status, head, body + buf)
                if status == 101:
                    sock.settimeout(1.0)
                    rest = b""
                    try:
                        while True:
                            chunk = sock.recv(65536)
                            if not chunk:
                                break
                            rest += chunk
                            if b"\x88" in rest[-200:] and _ws_closed(body + buf + rest):
                                break
                    except (TimeoutError, OSError):
                        pass
                    out[-1] = (status, head, body + buf + rest)
                break
    return out


def _ws_closed(data: bytes) -> bool:
    return any(op == 8 for op, _ in ws_frames(data))


def ws_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, i = [], 0
    while i + 2 <= len(data):
        op, ln = data[i] & 0x0F, data[i + 1] & 0x7F
        j = i + 2
        if ln == 126:
            ln, j = int.from_bytes(data[j : j + 2], "big"), j + 2
        elif ln == 127:
            ln, j = int.from_bytes(data[j : j + 8], "big"), j + 8
        if j + ln > len(data):
            break
        frames.append((op, data[j : j + ln]))
        i = j + ln
    return frames


def req(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def probes(port: int) -> dict[str, str]:
    """Correctness of the gateway under this server (not timed)."""
    res: dict[str, str] = {}
    ws_key = base64.b64encode(os.urandom(16)).decode()

    def short(r):
        status, _head, body = r
        return f"{status} {body[:90]!r}"

    try:
        (r,) = raw_exchange(port, req("GET", GET_PATH))
        res["get"] = short(r)
        (r,) = raw_exchange(port, req("GET", "/v1/books/shelves%2Ffiction%2Fbooks%2Fdune"))
        res["pct2F"] = short(r)
        body = b'{"note":"seven77"}'
        (r,) = raw_exchange(
            port,
            req(
                "POST",
                "/v1/metadata:echo",
                {
                    "Upgrade": "h2c",
                    "Connection": "Upgrade, HTTP2-Settings",
                    "HTTP2-Settings": "AAMAAABkAAQAAP__",
                },
                body,
            ),
        )
        res["post_h2c"] = f"{r[0]} note_echoed={b'seven77' in r[2]} {r[2][:70]!r}"
        rs = raw_exchange(
            port,
            req(
                "GET", "/v1/shelves/fiction/events:watch?count=3", {"Upgrade": "h2c", "Connection": "upgrade"}
            )
            + req("GET", GET_PATH),
            responses=2,
            timeout=2.5,
        )
        res["pipelined_after_h2c"] = " | ".join(
            f"{s} ({b.count(RESULT_MARK)} stream lines)" if s else "no answer" for s, _, b in rs
        )
        (r,) = raw_exchange(port, req("GET", GET_PATH, {"Upgrade": "websocket", "Connection": "Upgrade"}))
        res["ws_nokey"] = short(r)
        ws_headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": ws_key,
            "Sec-WebSocket-Version": "13",
        }
        (r,) = raw_exchange(port, req("GET", "/v1/shelves/fiction/events:watch?count=3", ws_headers))
        if r[0] == 101:
            fr = ws_frames(r[2])
            texts = [p for op, p in fr if op == 1]
            close = [p for op, p in fr if op == 8]
            res["ws_stream_route"] = (
                f"101 text={len(texts)} last={texts[-1][:60]!r} "
                f"close={int.from_bytes(close[0][:2], 'big') if close else None}"
            )
        else:
            res["ws_stream_route"] = short(r)
        (r,) = raw_exchange(port, req("GET", GET_PATH, ws_headers))
        res["ws_unary_route"] = short(r) if r[0] != 101 else f"101 {ws_frames(r[2])[:2]!r}"
    except Exception as exc:  # a probe failing is a result, not a crash
        res["error"] = repr(exc)
    return res


# ------------------------------------------------------------------------------------------ load


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            (r,) = raw_exchange(port, req("GET", GET_PATH), timeout=1.0)
            if r[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server not ready")


def wrk(port: int, duration: int, lua: bool) -> tuple[str, float]:
    args = ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{duration}s", "--latency"]
    if lua:
        args += ["-s", str(HERE / "echo_post.lua"), f"http://127.0.0.1:{port}/v1/metadata:echo"]
    else:
        args += [f"http://127.0.0.1:{port}{GET_PATH}"]
    c0 = children_cpu()
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30).stdout
    return out, children_cpu() - c0


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def parse_wrk(out: str) -> dict:
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {
        "reqs": reqs,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "sock_errors": sock.group(1) if sock else "",
    }


def wait_quiet(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most max_wait s) until the machine is idle apart from us: busy < threshold cores over 0.5 s.
    Other sessions share this machine; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        b0 = busy_ticks()
        time.sleep(0.5)
        if (busy_ticks() - b0) / TCK / 0.5 < threshold:
            break
    return time.monotonic() - t0


CLEAN = False  # --clean: wait for a quiet machine before each server, repeat noisy wrk runs once


def measured_wrk(port: int, gw: int, be: int, duration: int, lua: bool) -> dict:
    """One wrk run; with --clean repeated once (the cleaner run kept) when other processes used > 10% of a core."""
    row = _measured_wrk(port, gw, be, duration, lua)
    if CLEAN and row["other_cpu_s"] > 0.1 * duration:
        wait_quiet(5)
        again = _measured_wrk(port, gw, be, duration, lua)
        again["retried_other_cpu_s"] = row["other_cpu_s"]
        row = min(row, again, key=lambda r: r["other_cpu_s"])
    return row


def _measured_wrk(port: int, gw: int, be: int, duration: int, lua: bool) -> dict:
    g0, b0, m0 = group_ticks(gw), group_ticks(be), busy_ticks()
    out, wrk_cpu = wrk(port, duration, lua)
    g1, b1, m1 = group_ticks(gw), group_ticks(be), busy_ticks()
    row = parse_wrk(out)
    gs, bs = (g1 - g0) / TCK, (b1 - b0) / TCK
    row.update(
        gw_cpu_s=gs,
        be_cpu_s=bs,
        gw_us_per_req=gs * 1e6 / max(row["reqs"], 1),
        be_us_per_req=bs * 1e6 / max(row["reqs"], 1),
        wrk_cpu_s=wrk_cpu,
        other_cpu_s=(m1 - m0) / TCK - gs - bs - wrk_cpu,
    )
    return row


def measured_stream(port: int, gw: int, be: int) -> dict:
    out = RESULTS / "stream.out"
    subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            "curl",
            "-s",
            "-N",
            "-o",
            "/dev/null",
            f"http://127.0.0.1:{port}/v1/shelves/fiction/events:watch?count=200",
        ],
        timeout=30,
    )
    g0, b0, m0, c0 = group_ticks(gw), group_ticks(be), busy_ticks(), children_cpu()
    t0 = time.monotonic()
    cp = subprocess.run(
        [
            "taskset",
            "-c",
            "0",
            "curl",
            "-s",
            "-N",
            "-o",
            str(out),
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{port}{STREAM_PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.monotonic() - t0
    g1, b1, m1, c1 = group_ticks(gw), group_ticks(be), busy_ticks(), children_cpu()
    data = out.read_bytes()
    lines = data.count(b'{"result"')
    gs, bs = (g1 - g0) / TCK, (b1 - b0) / TCK
    return {
        "status": cp.stdout,
        "lines": lines,
        "bytes": len(data),
        "last": data.rstrip().rsplit(b"\n", 1)[-1][:120].decode(),
        "wall_s": wall,
        "msg_per_s": lines / wall if wall else 0,
        "gw_cpu_s": gs,
        "be_cpu_s": bs,
        "gw_us_per_msg": gs * 1e6 / max(lines, 1),
        "other_cpu_s": (m1 - m0) / TCK - gs - bs - (c1 - c0),
    }


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    ap.add_argument("--out", default=str(RESULTS / "serving_configs.json"))
    ap.add_argument(
        "--clean",
        action="store_true",
        help="machine shared with other work: wait (<=10 s) for it to go quiet before each server and "
        "repeat a wrk run once when other processes used >10%% of a core (no longer bounded to 5 min)",
    )
    args = ap.parse_args()
    global CLEAN
    CLEAN = args.clean
    names = args.configs.split(",")
    for n in names:
        if n not in CONFIGS:
            ap.error(f"unknown config {n}; known: {', '.join(CONFIGS)}")
    RESULTS.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    t_start = time.monotonic()

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    blog = LOGS / "backend.log"
    offset = blog.stat().st_size if blog.exists() else 0
    backend = start([PY, str(HERE / "backend_proc.py")], blog, env, "0")
    try:
        port_line = ""
        for _ in range(200):
            text = blog.read_bytes()[offset:].decode(errors="replace")
            found = re.findall(r"PORT (\d+)", text)
            if found and backend.poll() is None:
                port_line = found[-1]
                break
            time.sleep(0.1)
        if not port_line:
            raise RuntimeError("backend did not start")
        upstream = f"127.0.0.1:{port_line}"
        env["PYGW_UPSTREAM"] = upstream
        print(
            f"# backend pid {backend.pid} on {upstream}; gateway on core 1, backend+wrk+curl on core 0; "
            f"{os.cpu_count()} cores; CLK_TCK {TCK}; loadavg {open('/proc/loadavg').read().split()[:3]}",
            flush=True,
        )
        rows: list[dict] = []
        probe_results: dict[str, dict] = {}
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for _i, name in enumerate(order):
                port = 18100 + names.index(name) * 10 + rep
                if name == "shipped":
                    cmd = shipped_cmd(port, upstream)
                elif name == "shipped-log-warning":
                    cmd = shipped_cmd(port, upstream, "--log-level", "warning")
                else:
                    cmd = CONFIGS[name](port)
                waited = wait_quiet(10) if CLEAN else 0.0
                proc = start(cmd, LOGS / f"{name}.log", env, "1")
                try:
                    wait_ready(port, proc)
                    wrk(port, 1, False)  # warm-up (the channel is already connected by wait_ready)
                    row = {
                        "config": name,
                        "rep": rep,
                        "waited_quiet_s": waited,
                        "get": measured_wrk(port, proc.pid, backend.pid, args.duration, False),
                        "post": measured_wrk(port, proc.pid, backend.pid, args.duration, True),
                        "stream": measured_stream(port, proc.pid, backend.pid),
                    }
                    if rep == 0:
                        probe_results[name] = probes(port)
                    row["alive"] = proc.poll() is None
                finally:
                    stop(proc)
                rows.append(row)
                g, p, s = row["get"], row["post"], row["stream"]
                print(
                    f"[{time.monotonic() - t_start:5.0f}s] rep{rep} {name:26s} "
                    f"GET {g['rps']:6.0f} r/s {g['gw_us_per_req']:5.0f} us/req p50 {g['p50_ms']:.2f} p99 {g['p99_ms']:.2f} "
                    f"| POST {p['rps']:6.0f} r/s {p['gw_us_per_req']:5.0f} us/req p99 {p['p99_ms']:.2f} "
                    f"| stream {s['lines']} in {s['wall_s']:.2f}s {s['gw_us_per_msg']:.1f} us/msg "
                    f"| errs {g['non2xx']}/{p['non2xx']} {g['sock_errors']}{p['sock_errors']} "
                    f"| other cpu {max(g['other_cpu_s'], p['other_cpu_s']):.2f}s",
                    flush=True,
                )
    finally:
        stop(backend)

    med = lambda xs: statistics.median(xs)  # noqa: E731
    summary = {}
    for name in names:
        rs = [r for r in rows if r["config"] == name]
        summary[name] = {
            "get_rps": med([r["get"]["rps"] for r in rs]),
            "get_us": med([r["get"]["gw_us_per_req"] for r in rs]),
            "get_p50": med([r["get"]["p50_ms"] for r in rs]),
            "get_p99": med([r["get"]["p99_ms"] for r in rs]),
            "post_rps": med([r["post"]["rps"] for r in rs]),
            "post_us": med([r["post"]["gw_us_per_req"] for r in rs]),
            "post_p50": med([r["post"]["p50_ms"] for r in rs]),
            "post_p99": med([r["post"]["p99_ms"] for r in rs]),
            "stream_s": med([r["stream"]["wall_s"] for r in rs]),
            "stream_msg_s": med([r["stream"]["msg_per_s"] for r in rs]),
            "stream_us": med([r["stream"]["gw_us_per_msg"] for r in rs]),
            "be_us": med([r["get"]["be_us_per_req"] for r in rs]),
            "gw_core_util_get": med([r["get"]["gw_cpu_s"] / args.duration for r in rs]),
            "errors": sum(r["get"]["non2xx"] + r["post"]["non2xx"] for r in rs),
            "stream_lines": sorted({r["stream"]["lines"] for r in rs}),
            "max_other_cpu": max(max(r["get"]["other_cpu_s"], r["post"]["other_cpu_s"]) for r in rs),
        }
    Path(args.out).write_text(
        json.dumps({"rows": rows, "summary": summary, "probes": probe_results}, indent=1)
    )

    print(
        f"\n## medians of {args.reps} interleaved runs (wrk -t1 -c32 -d{args.duration}s; gateway CPU us per request)\n"
    )
    print(
        "| config | GET req/s | GET us/req | GET p50/p99 ms | POST req/s | POST us/req | POST p50/p99 ms "
        f"| stream {STREAM_COUNT} msgs: s / msg/s / us/msg | non-2xx | gw core busy (GET) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['get_rps']:.0f} | {s['get_us']:.0f} | {s['get_p50']:.2f} / {s['get_p99']:.2f} "
            f"| {s['post_rps']:.0f} | {s['post_us']:.0f} | {s['post_p50']:.2f} / {s['post_p99']:.2f} "
            f"| {s['stream_s']:.2f} / {s['stream_msg_s']:.0f} / {s['stream_us']:.1f} | {s['errors']} "
            f"| {s['gw_core_util_get']:.2f} |"
        )
    print(
        "\nbackend CPU per GET (median per config): "
        + ", ".join(f"{n} {s['be_us']:.0f} us" for n, s in summary.items())
    )
    print("stream line counts seen: " + ", ".join(f"{n} {s['stream_lines']}" for n, s in summary.items()))
    print(
        "max other CPU per run (s): " + ", ".join(f"{n} {s['max_other_cpu']:.2f}" for n, s in summary.items())
    )
    print("\n## probes (first round)\n")
    for name, pr in probe_results.items():
        print(f"### {name}")
        for k, v in pr.items():
            print(f"- {k}: {v}")
    print(f"\n# total {time.monotonic() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
