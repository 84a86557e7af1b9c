"""`make demo`'s script runs end to end: backend, generated gateway, the request tour."""

from __future__ import annotations

import subprocess
import sys
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
