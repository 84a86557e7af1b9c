"""Load and soak: many concurrent server streams (shop.v1.FeedService.Watch as NDJSON) through the gateway,
every event's `seq` checked by the client (0 lost, 0 duplicated, 0 reordered, every stream complete), the
gateway's resident memory per open stream and the CPU it costs reported.

`tests/test_load.py` runs a short version in `make test` (`run_streams` below). The long one is this
script, not collected by pytest (`make soak`)::

    python -m tests.soak --streams 1000 --seconds 60 [--interval-ms 1000] [--server uvicorn|granian]

It generates the testdata tree into a temporary directory, starts the example backend and the serve command
as subprocesses (client, gateway and backend each get a process of their own), holds `--streams` streams of
`seconds * 1000 / interval_ms` events each open at once, and prints a summary; the exit status is 1 when
any event was lost, duplicated or reordered or a stream did not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------ processes


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (granian serves from a child process of the serve command)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def rss_bytes(pids: list[int]) -> int:
    """Summed resident set size (VmRSS) of `pids`; processes gone in between count 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by `pids`."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


# ------------------------------------------------------------------------------------------ client


@dataclass
class StreamResult:
    status: int = 0
    seqs: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    complete: bool = False  # the chunked body ended with its last chunk
    first_at: float | None = None
    max_gap: float = 0.0  # the longest pause between two events, seconds


@dataclass
class Summary:
    streams: int
    count: int
    interval_ms: int
    results: list[StreamResult]
    seconds: float
    rss_before: int
    rss_open: int  # the highest sample while every stream was open
    cpu_gateway: float
    cpu_client: float
    open_at: float | None  # seconds from the start until every stream had its first event

    @property
    def received(self) -> int:
        return sum(len(r.seqs) for r in self.results)

    @property
    def lost(self) -> int:
        return sum(len(set(range(self.count)) - set(r.seqs)) for r in self.results)

    @property
    def duplicated(self) -> int:
        return sum(len(r.seqs) - len(set(r.seqs)) for r in self.results)

    @property
    def reordered(self) -> int:
        return sum(sum(1 for a, b in itertools.pairwise(r.seqs) if b < a) for r in self.results)

    @property
    def incomplete(self) -> int:
        return sum(1 for r in self.results if not r.complete or r.status != 200 or r.errors)

    @property
    def rss_per_stream(self) -> float:
        return (self.rss_open - self.rss_before) / self.streams

    @property
    def max_gap(self) -> float:
        return max((r.max_gap for r in self.results), default=0.0)

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.incomplete)

    def lines(self) -> list[str]:
        expected = self.streams * self.count
        open_at = f"{self.open_at:.2f} s" if self.open_at is not None else "never"
        cpu = 100 * self.cpu_gateway / self.seconds
        return [
            f"streams: {self.streams} x {self.count} events, {self.interval_ms} ms apart",
            f"events: {self.received}/{expected} received; lost {self.lost}, duplicated {self.duplicated}, "
            f"reordered {self.reordered}; incomplete or failed streams {self.incomplete}",
            f"all streams open after {open_at}; run {self.seconds:.1f} s; longest gap between two events of "
            f"a stream {self.max_gap * 1000:.0f} ms",
            f"gateway RSS: {self.rss_before / 2**20:.1f} MiB before, {self.rss_open / 2**20:.1f} MiB with "
            f"all streams open = {self.rss_per_stream / 1024:.1f} KiB per open stream",
            f"CPU: gateway {self.cpu_gateway:.1f} s ({cpu:.0f}% of a core), client {self.cpu_client:.1f} s, "
            f"{self.received / self.seconds:.0f} events/s through the gateway",
        ]


async def _watch(
    port: int, index: int, count: int, interval_ms: int, started: Callable[[], None]
) -> StreamResult:
    result = StreamResult()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        target = f"/v1/shelves/load-{index}/events:watch?count={count}&intervalMs={interval_ms}"
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: gateway.test\r\nAccept: application/x-ndjson\r\n\r\n".encode()
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        result.status = int(head.split(" ", 2)[1])
        if result.status != 200 or "transfer-encoding: chunked" not in head:
            result.errors.append(head + (await reader.read(4096)).decode("latin-1"))
            return result
        pending = b""
        last = None
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # trailer fields
                result.complete = not pending
                return result
            pending += (await reader.readexactly(size + 2))[:-2]
            *lines, pending = pending.split(b"\n")
            for line in lines:
                item = json.loads(line)
                if "result" not in item:
                    result.errors.append(line.decode())
                    continue
                now = time.monotonic()
                if last is None:
                    result.first_at = now
                    started()
                else:
                    result.max_gap = max(result.max_gap, now - last)
                last = now
                result.seqs.append(int(item["result"].get("seq", 0)))
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        result.errors.append(repr(exc))
        return result
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run_streams_async(
    port: int, gateway_pid: int, *, streams: int, count: int, interval_ms: int, timeout: float
) -> Summary:
    """Open `streams` Watch streams at once and read them to the end, sampling the gateway's memory."""
    pids = process_tree(gateway_pid)
    cpu_before = cpu_seconds(pids)
    client_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    rss_before = rss_bytes(pids)
    all_open = asyncio.Event()
    opened = 0

    def started() -> None:
        nonlocal opened
        opened += 1
        if opened == streams:
            all_open.set()

    begin = time.monotonic()
    tasks = [asyncio.create_task(_watch(port, i, count, interval_ms, started)) for i in range(streams)]
    done = asyncio.gather(*tasks)
    rss_open = 0
    open_at = None
    waiting = asyncio.ensure_future(all_open.wait())
    await asyncio.wait({waiting, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if all_open.is_set():
        open_at = time.monotonic() - begin
        # Sample while every stream is open (until the first one could end).
        until = begin + max(count - 2, 1) * interval_ms / 1000
        while time.monotonic() < until and not done.done():
            rss_open = max(rss_open, rss_bytes(process_tree(gateway_pid)))
            await asyncio.sleep(0.2)
    try:
        results = await asyncio.wait_for(done, max(timeout - (time.monotonic() - begin), 0.1))
    except asyncio.TimeoutError:
        results = [
            task.result() if task.done() and not task.cancelled() else StreamResult() for task in tasks
        ]
    seconds = time.monotonic() - begin
    return Summary(
        streams=streams,
        count=count,
        interval_ms=interval_ms,
        results=list(results),
        seconds=seconds,
        rss_before=rss_before,
        rss_open=rss_open or rss_before,
        cpu_gateway=cpu_seconds(process_tree(gateway_pid)) - cpu_before,
        cpu_client=sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - client_before,
        open_at=open_at,
    )


def run_streams(
    port: int, gateway_pid: int, *, streams: int, count: int, interval_ms: int, timeout: float
) -> Summary:
    return asyncio.run(
        run_streams_async(
            port, gateway_pid, streams=streams, count=count, interval_ms=interval_ms, timeout=timeout
        )
    )


# ------------------------------------------------------------------------------------------ soak


@contextlib.contextmanager
def backend_process(gen: Path) -> Iterator[int]:
    """`python -m demo.backend --port 0 --gen GEN` as a subprocess; yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "demo.backend", "--port", "0", "--gen", str(gen)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"backend did not start: {line!r}")
        yield int(line.rsplit(":", 1)[1])
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each stream lasts")
    parser.add_argument("--interval-ms", type=int, default=1000, help="pause between two events of a stream")
    parser.add_argument(
        "--server",
        choices=("default", "uvicorn", "granian"),
        default="default",
        help="default: the serve command as shipped (embedded granian, WebSocket on); uvicorn: --server "
        "uvicorn; granian: --websocket off",
    )
    args = parser.parse_args(argv)
    count = max(int(args.seconds * 1000 / args.interval_ms), 1)
    # Each client socket and each gateway-side socket needs a descriptor.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.streams + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.streams * 2 + 256), hard))

    sys.path.insert(0, str(ROOT))
    from tests.conftest import SHOP, GatewayServer
    from tests.protoc_support import generate_tree

    with tempfile.TemporaryDirectory(prefix="pygateway-soak-") as tmp:
        gen = Path(tmp)
        generate_tree(gen, SHOP)
        with backend_process(gen) as backend_port:
            extra = {"default": [], "uvicorn": ["--server", "uvicorn"], "granian": ["--websocket", "off"]}[
                args.server
            ]
            gateway = GatewayServer(gen, backend_port, extra=extra)
            try:
                # Warm up: the upstream channel and the first imports happen on the first request.
                run_streams(gateway.port, gateway.process.pid, streams=4, count=2, interval_ms=0, timeout=10)
                summary = run_streams(
                    gateway.port,
                    gateway.process.pid,
                    streams=args.streams,
                    count=count,
                    interval_ms=args.interval_ms,
                    timeout=args.seconds + 60,
                )
            finally:
                gateway.stop()
    print(f"soak ({args.server}, {os.cpu_count()} cores):")
    for line in summary.lines():
        print("  " + line)
    print("  result: " + ("OK" if summary.ok() else "FAILED"))
    return 0 if summary.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
