"""`make demo`'s script runs end to end: backend, generated gateway, the request tour."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port
from tests.protoc_support import ROOT


def test_demo_tour_runs(gen_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo.run", "--once", "--gen", str(gen_dir), "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "HTTP 200" in out
    assert '"title": "Dune"' in out
    assert "HTTP 404" in out and "HTTP 405  allow: GET, POST" in out
    assert '"tenant"' in out and '"upgrade"' not in out and '"connection"' not in out
    assert '{"result":{"user":"system","text":"joined lobby","seq":"-1"}}' in out  # bidi
    assert "event: end" in out and "text/event-stream" in out  # SSE
    assert '"title":"event 2"' in out and '{"error":{"code":9' in out  # NDJSON stream, error line
    assert "Traceback" not in result.stderr


def test_demo_curl_lines_work_when_pasted(gen_dir: Path, tmp_path: Path) -> None:
    """Every `$ ...` line the demo prints, run through sh against the serving demo, gets the status the
    tour printed below it (curl's status via a .curlrc, so the lines run exactly as printed); the serve
    command's output has no `Unsupported upgrade request` noise."""
    curlrc = tmp_path / ".curlrc"
    curlrc.write_text('silent\nwrite-out = "\\nHTTP %{http_code}\\n"\n')
    env = {**os.environ, "CURL_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo.run", "--gen", str(gen_dir), "--port", str(free_port())],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline().decode()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C to stop."):
                break
        assert lines and lines[-1].startswith("Ctrl-C"), "\n".join(lines) + log.read_text()
        pasted = 0
        for index, line in enumerate(lines):
            if not line.startswith("$ "):
                continue
            status = next(text for text in lines[index + 1 :] if text.startswith("HTTP "))
            expected = status.split()[1]
            command = line[2:]
            result = subprocess.run(
                ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=30, check=False
            )
            assert result.returncode == 0, f"{command}\n{result.stderr}"
            got = result.stdout.rstrip().rsplit("\n", 1)[-1]
            if "/books -H" in command and "POST" in command and got == "HTTP 409":
                continue  # the tour created that book already: ALREADY_EXISTS, the body was read
            assert got == f"HTTP {expected}", f"{command}\n{result.stdout}"
            if "x-ndjson" in command:
                assert "}\\n" not in command and command.startswith("printf")
            pasted += 1
        assert pasted >= 18
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
    errors = log.read_text()
    assert "Unsupported upgrade request" not in errors and "Traceback" not in errors, errors
