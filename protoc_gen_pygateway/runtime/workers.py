"""`--workers N|auto` for the serve command: worker processes sharing one listening port, supervised.

The parent binds the address first (so a port in use, or port 0, is settled once), then starts N copies of
the serve command as subprocesses, each with its own event loop, gateway and upstream channel:

* where the kernel balances connections over SO_REUSEPORT sockets (Linux), every worker listens on its
  own socket bound with SO_REUSEPORT; the parent keeps its socket bound but never listens on it, so the
  kernel gives it no connections, and only processes of the same user can join the port;
* elsewhere the parent listens on one socket and every worker inherits it (`--listen-fd`): the workers
  accept from one queue.

A worker that exits while the parent is not stopping is logged and started again after a backoff (0.5 s,
doubling up to 30 s; back to 0.5 s once a worker has run 30 s). SIGTERM or SIGINT to the parent is passed
to every worker as SIGTERM, so each drains as a single serve process does (streams end with their final
status, calls in flight get the grace period); the parent exits 0 once all have exited 0 (1 otherwise).
Workers watch their parent and drain by themselves when it disappears. Only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

__all__ = [
    "Supervisor",
    "bind_listener",
    "parse_workers",
    "reuse_port_balances",
    "supervise",
    "usable_cores",
]

LOG = logging.getLogger("pygateway")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0
"""A worker that ran this long resets its backoff."""
POLL = 0.05


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells), at least 1."""
    sched_getaffinity = getattr(os, "sched_getaffinity", None)
    if sched_getaffinity is not None:
        return max(1, len(sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_workers(text: str) -> int:
    """`auto` -> usable_cores(); else a positive integer (ValueError otherwise)."""
    if text == "auto":
        return usable_cores()
    count = int(text)
    if count < 1:
        raise ValueError(f"--workers must be at least 1 or auto, not {text}")
    return count


def reuse_port_balances() -> bool:
    """Whether SO_REUSEPORT sockets share incoming connections (Linux); elsewhere one socket is shared."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_listener(
    host: str, port: int, *, reuse_port: bool, listen: bool, backlog: int = 1024
) -> socket.socket:
    """A TCP socket bound to host:port (SO_REUSEADDR; SO_REUSEPORT when `reuse_port`), listening if asked."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        if listen:
            sock.listen(backlog)
        sock.set_inheritable(not reuse_port)
    except BaseException:
        sock.close()
        raise
    return sock


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = BACKOFF_FIRST
        self.restart_at: float | None = None
        self.returncode: int | None = None
        self.signalled = False  # sent SIGTERM by the parent's shutdown


class Supervisor:
    """Runs `count` workers, each the argv `command(index)` with `pass_fds` inherited; see the module doc."""

    def __init__(
        self, count: int, command: Callable[[int], Sequence[str]], pass_fds: Sequence[int] = ()
    ) -> None:
        self.count = count
        self.command = command
        self.pass_fds = tuple(pass_fds)
        self.slots = [_Slot(index) for index in range(1, count + 1)]
        self.stopping = False

    def _start(self, slot: _Slot) -> None:
        argv = list(self.command(slot.index))
        slot.process = subprocess.Popen(argv, pass_fds=self.pass_fds)
        slot.started = time.monotonic()
        slot.restart_at = None
        LOG.info("worker %d/%d started (pid %d)", slot.index, self.count, slot.process.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            LOG.info("%s: stopping %d worker(s)", signal.Signals(signum).name, self.count)
        self.stopping = True
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGTERM)
                    slot.signalled = True

    def _reap(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if process is None or process.poll() is None:
            return
        slot.process = None
        slot.returncode = process.returncode
        if self.stopping:
            LOG.info(
                "worker %d/%d (pid %d) exited with %s",
                slot.index,
                self.count,
                process.pid,
                process.returncode,
            )
            return
        if now - slot.started >= HEALTHY_AFTER:
            slot.backoff = BACKOFF_FIRST
        LOG.warning(
            "worker %d/%d (pid %d) exited with %s; restarting in %.1f s",
            slot.index,
            self.count,
            process.pid,
            process.returncode,
            slot.backoff,
        )
        slot.restart_at = now + slot.backoff
        slot.backoff = min(BACKOFF_MAX, slot.backoff * 2)

    def run(self) -> int:
        """Start the workers and supervise them until a signal and their exit; the parent's exit code."""
        previous = {
            signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for slot in self.slots:
                self._start(slot)
            while True:
                now = time.monotonic()
                for slot in self.slots:
                    self._reap(slot, now)
                    due = slot.restart_at is not None and now >= slot.restart_at
                    if not self.stopping and slot.process is None and due:
                        self._start(slot)
                if self.stopping and all(slot.process is None for slot in self.slots):
                    break
                time.sleep(POLL)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        # A worker ended by the SIGTERM we sent (not by its handler: it was still starting, before the
        # server installed its signal handlers, so it served nothing) stopped as asked.
        stopped = (0, None)
        failed = [
            slot
            for slot in self.slots
            if slot.returncode not in stopped and not (slot.signalled and slot.returncode == -signal.SIGTERM)
        ]
        return 1 if failed else 0


def parent_watch(
    parent_pid: int, on_orphaned: Callable[[], None], interval: float = 1.0
) -> Callable[[], None]:
    """A callback for `loop.call_later` chains: calls `on_orphaned` once the parent is gone (reparented)."""
    import asyncio

    def check() -> None:
        if os.getppid() != parent_pid:
            LOG.warning("supervisor (pid %d) is gone: draining", parent_pid)
            on_orphaned()
            return
        asyncio.get_running_loop().call_later(interval, check)

    return check


def supervise(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: list[str] | None,
    server: str,
    host: str,
    port: int,
    workers: int,
) -> int:
    """`--workers N` > 1: bind, then run N copies of the serve command as supervised workers."""
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    reuse = reuse_port_balances() if args.worker_socket == "auto" else args.worker_socket == "reuseport"
    if reuse and not reuse_port_balances():
        parser.error("--worker-socket reuseport needs SO_REUSEPORT load balancing (Linux)")
    if not reuse and server == "granian":
        # granian binds its own SO_REUSEPORT socket; it cannot serve an inherited one.
        parser.error("--workers with granian needs SO_REUSEPORT load balancing (Linux): use --server uvicorn")
    try:
        # With SO_REUSEPORT this socket only holds the port (never listening, so it gets no connections);
        # without, it is the one listening socket the workers inherit.
        holder = bind_listener(host, port, reuse_port=reuse, listen=not reuse)
    except OSError as err:
        parser.error(f"--listen {host}:{port}: {err.strerror or err}")
    port = holder.getsockname()[1]
    script = str(Path(sys.argv[0]).resolve()) if sys.argv and sys.argv[0].endswith(".py") else None
    base = [sys.executable, script] if script else [sys.executable, "-m", "pygateway_runtime.serve"]
    own = list(sys.argv[1:] if argv is None else argv)
    # argparse keeps the last value of an option: these override the parent's own.
    extra = ["--workers", "1", "--listen", f"{host}:{port}", "--parent-pid", str(os.getpid())]
    if not reuse:
        extra += ["--listen-fd", str(holder.fileno())]
    logging.getLogger("pygateway").info(
        "%d workers (%s) on http://%s:%d (%s)",
        workers,
        server,
        host,
        port,
        "SO_REUSEPORT" if reuse else "one inherited socket",
    )
    supervisor = Supervisor(workers, lambda index: [*base, *own, *extra], () if reuse else (holder.fileno(),))
    try:
        return supervisor.run()
    finally:
        holder.close()
