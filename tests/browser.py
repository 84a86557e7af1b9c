"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests where browsers are
the users (CORS): a page served from one loopback origin runs fetch() against the gateway on another, and
reports its results into `window.__results`; the test reads them and the browser's console/log entries
(where Chromium writes "blocked by CORS policy").

`Chromium` is one browser process (its own process group, stopped by PID); `PageServer` serves fixed HTML
pages on a free loopback port (a thread). Only the standard library and `websockets` are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


def chromium_binary() -> str | None:
    """The Chromium executable (Debian's `chromium`, or `chromium-browser`), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PageServer:
    """Serves `pages` (path -> HTML) at http://127.0.0.1:PORT; any other path is 404."""

    def __init__(self, port: int | None = None) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page = pages.get(self.path.split("?")[0])
                body = (page or "not found").encode("utf-8")
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.port = int(self.server.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PageRun:
    """What one page did: `results` (its `window.__results`) and the browser's log/console entries."""

    def __init__(self, results: Any, log: list[str]) -> None:
        self.results = results
        self.log = log

    def log_mentions(self, text: str) -> bool:
        return any(text in entry for entry in self.log)


class Chromium:
    """One headless Chromium with DevTools on a loopback port, in its own process group."""

    def __init__(self, workdir: Path) -> None:
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("chromium is not installed (Debian: apt-get install chromium)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chromium.log"
        argv = [
            binary,
            "--headless=new",
            "--no-sandbox",  # tests run as root in containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            f"--user-data-dir={workdir / 'profile'}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.process.pid
        self.ws_url = self._wait_devtools()

    def _wait_devtools(self) -> str:
        found: list[str] = []
        lines: list[str] = []
        assert self.process.stderr is not None
        stderr = self.process.stderr

        def read() -> None:
            with self.log_path.open("a", encoding="utf-8", errors="replace") as log:
                for raw in stderr:
                    line = raw.decode("utf-8", "replace")
                    log.write(line)
                    lines.append(line)
                    if not found and "DevTools listening on " in line:
                        found.append(line.split("DevTools listening on ", 1)[1].strip())

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("chromium did not start its DevTools endpoint:\n" + "".join(lines[-30:]))

    def run(self, url: str, timeout: float = 30.0) -> PageRun:
        """Open `url` in a new tab, wait until the page sets `window.__results` (bounded by `timeout`),
        return it with the log entries the page caused."""
        return asyncio.run(asyncio.wait_for(self._run(url, timeout), timeout + 10))

    async def _run(self, url: str, timeout: float) -> PageRun:
        import websockets

        log: list[str] = []
        pending: dict[int, asyncio.Future[Any]] = {}
        counter = iter(range(1, 1_000_000))
        async with websockets.connect(self.ws_url, max_size=None) as ws:

            async def reader() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if "id" in message and message["id"] in pending:
                        pending.pop(message["id"]).set_result(message)
                    elif message.get("method") == "Log.entryAdded":
                        entry = message["params"]["entry"]
                        log.append(f"{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}")
                    elif message.get("method") == "Runtime.consoleAPICalled":
                        args = message["params"].get("args", [])
                        log.append(
                            "console: " + " ".join(str(a.get("value", a.get("description"))) for a in args)
                        )
                    elif message.get("method") == "Runtime.exceptionThrown":
                        log.append("exception: " + json.dumps(message["params"]["exceptionDetails"]))

            async def command(
                method: str, params: dict[str, Any] | None = None, session: str | None = None
            ) -> Any:
                ident = next(counter)
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                pending[ident] = future
                payload: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
                if session is not None:
                    payload["sessionId"] = session
                await ws.send(json.dumps(payload))
                answer = await future
                if "error" in answer:
                    raise RuntimeError(f"DevTools {method}: {answer['error']}")
                return answer.get("result", {})

            task = asyncio.ensure_future(reader())
            try:
                target = await command("Target.createTarget", {"url": "about:blank"})
                attached = await command(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
                )
                session = attached["sessionId"]
                for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                    await command(domain, session=session)
                await command("Page.navigate", {"url": url}, session)
                deadline = time.monotonic() + timeout
                while True:
                    answer = await command(
                        "Runtime.evaluate",
                        {"expression": "JSON.stringify(window.__results ?? null)", "returnByValue": True},
                        session,
                    )
                    value = answer.get("result", {}).get("value")
                    if value not in (None, "null"):
                        await asyncio.sleep(0.2)  # let late log entries (CORS errors) arrive
                        return PageRun(json.loads(value), log)
                    if time.monotonic() > deadline:
                        raise AssertionError(f"page {url} set no results within {timeout}s; log: {log}")
                    await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await command("Target.closeTarget", {"targetId": target["targetId"]})
                task.cancel()

    def stop(self) -> None:
        """Stop the browser's process group (it forks helpers) by the PID it leads."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


@contextlib.contextmanager
def chromium(workdir: Path) -> Iterator[Chromium]:
    browser = Chromium(workdir)
    try:
        yield browser
    finally:
        browser.stop()
