"""Every fenced block of README.md, run as a new user would paste it.

The blocks run in order in a scratch project holding a copy of testdata/protos, with this interpreter's
bin directory first on PATH (python, protoc-gen-pygateway, uvicorn) and the demo backend running. Only
addresses change: `localhost:50051`/`127.0.0.1:50051` become the backend's, `127.0.0.1:8080` (or no
`--listen`) a free port, uvicorn's port comes from UVICORN_PORT. Per block:

* `sh` made only of `make TARGET` lines: each target is in `make help` and `make -n TARGET` succeeds (the
  targets themselves are what CI runs; `make demo` has its own test in tests/test_demo.py);
* `python`: written to app.py for the next block;
* `sh` with a server command (`uvicorn ...`, `python gen/pygateway_serve.py --upstream ...`): the lines
  before it run, then the server starts, must answer GET /v1/shelves/fiction/books/dune with the book
  (and /openapi.json when given `--openapi`), and exits 0 on SIGTERM (uvicorn's own command: by the
  signal, as it does);
* `text`: a usage synopsis: every option in it is one `pygateway_serve.py --help` lists;
* any other `sh`: run with bash -euo pipefail, must exit 0.

A block no rule covers fails the test, so a new README block is tested or the test says why not.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.doc_blocks import Block, blocks

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BOOK = "/v1/shelves/fiction/books/dune"
SERVER = re.compile(r"^(PYTHONPATH=\S+ )?uvicorn |^python gen/pygateway_serve\.py --upstream ")


def _commands(text: str) -> list[str]:
    """The block's commands: backslash continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _env(project: Path) -> dict[str, str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1", "HOME": str(project)}


def _sh(command: str, project: Path, upstream: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _addresses(command, upstream)],
        cwd=project, env=_env(project), capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _addresses(text: str, upstream: str) -> str:
    return text.replace("localhost:50051", upstream).replace("127.0.0.1:50051", upstream)


def _check_make(block: Block) -> None:
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    for command in _commands(block.text):
        target = command.split()[1]
        assert f"make {target} " in listed, f"{block.where}: `make {target}` is not in `make help`"
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"{block.where}: make -n {target}: {dry.stderr}"


def _serve(command: str, project: Path, upstream: str, tmp: Path) -> None:
    port = free_port()
    command = _addresses(command.split("  #", 1)[0].split(" # ", 1)[0], upstream)
    env = {**_env(project), "UVICORN_PORT": str(port)}
    if "pygateway_serve.py" in command:
        if "127.0.0.1:8080" in command:
            command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        else:
            command += f" --listen 127.0.0.1:{port}"
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["bash", "-c", command], cwd=project, env=env, stdout=out, stderr=out,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline, answer = time.monotonic() + 30, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = httpx.get(url + BOOK, timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None, f"{command}: no answer\n{log.read_text()}"
        assert answer.status_code == 200 and answer.json()["title"] == "Dune", (command, answer.text)
        if "--openapi" in command:
            document = httpx.get(url + "/openapi.json", timeout=5)
            assert document.status_code == 200 and document.json()["openapi"].startswith("3.1")
    finally:
        with_signal = server.poll() is None
        if with_signal:
            os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(30)
    # uvicorn's own command re-raises the signal after its graceful shutdown; the serve command exits 0.
    expected = (0, -signal.SIGTERM) if "uvicorn " in command else (0,)
    assert code in expected, f"{command}: exit {code}\n{log.read_text()}"
    assert "Traceback" not in log.read_text(), log.read_text()


def _check_synopsis(block: Block, project: Path) -> None:
    serve = project / "gen" / "pygateway_serve.py"
    assert serve.exists(), f"{block.where}: a synopsis before anything generated the serve command"
    listed = subprocess.run(
        [sys.executable, str(serve), "--help"], cwd=project, capture_output=True, text=True, timeout=60
    ).stdout
    options = set(re.findall(r"--[a-z][a-z0-9-]*", block.text))
    assert options, block.where
    missing = sorted(option for option in options if option not in listed)
    assert not missing, f"{block.where}: not options of the serve command: {missing}"


def test_every_readme_block_runs(tmp_path: Path, backend: Any) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "testdata" / "protos", project / "testdata" / "protos")
    upstream = backend.target
    handled: list[str] = []
    for block in blocks(README):
        commands = _commands(block.text)
        if block.lang == "sh" and commands and all(c.startswith("make ") for c in commands):
            _check_make(block)
        elif block.lang == "python":
            (project / "app.py").write_text(_addresses(block.text, upstream))
        elif block.lang == "text":
            _check_synopsis(block, project)
        elif block.lang == "sh":
            for command in commands:
                if SERVER.match(command):
                    _serve(command, project, upstream, tmp_path)
                else:
                    result = _sh(command, project, upstream)
                    assert result.returncode == 0, f"{block.where}: {command}\n{result.stdout}{result.stderr}"
        else:
            pytest.fail(f"{block.where}: no rule runs a {block.lang or 'plain'} block: add one to this test")
        handled.append(block.where)
    assert len(handled) >= 8, handled
