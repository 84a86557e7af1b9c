"""`python gen/pygateway_serve.py` where no ASGI server is installed: a usage error naming what to install,
not a ModuleNotFoundError traceback. The environment is real: this venv's site-packages without the
servers (a directory of links to every other top-level package, run with `python -S`)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

SERVERS = ("granian", "uvicorn", "zttp", "wsproto", "h11", "uvloop", "hypercorn")


def _site_without(tmp: Path, removed: tuple[str, ...]) -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    target = tmp / "site"
    target.mkdir()
    for entry in site.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top not in removed:
            (target / entry.name).symlink_to(entry)
    return target


def _serve(gen: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-S", str(gen / "pygateway_serve.py"), "--upstream", "127.0.0.1:1", *args],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_no_server_installed_says_what_to_install(gen_dir: Path, tmp_path: Path) -> None:
    result = _serve(gen_dir, _site_without(tmp_path, SERVERS))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "no ASGI server is installed" in result.stderr
    assert "pip install uvicorn zttp wsproto uvloop" in result.stderr
    assert "pip install granian uvloop" in result.stderr


@pytest.mark.parametrize(
    ("removed", "args", "message"),
    [
        (("granian",), ["--server", "granian"], "--server granian needs granian: pip install granian uvloop"),
        (("uvicorn",), ["--server", "uvicorn"], "--server uvicorn needs uvicorn: pip install uvicorn zttp"),
        (("wsproto",), ["--server", "uvicorn"], "--server uvicorn needs wsproto"),
    ],
)
def test_a_missing_chosen_server_is_named(
    gen_dir: Path, tmp_path: Path, removed: tuple[str, ...], args: list[str], message: str
) -> None:
    result = _serve(gen_dir, _site_without(tmp_path, removed), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
