"""The plugin is mypy --strict and ruff clean, and so are the demo and the tests (what `make lint` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.protoc_support import ROOT

BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_ruff() -> None:
    result = run(str(BIN / "ruff"), "check", "--no-cache", "protoc_gen_pygateway", "demo", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run(
        str(BIN / "ruff"), "format", "--check", "--no-cache", "protoc_gen_pygateway", "demo", "tests"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_plugin() -> None:
    result = run(str(BIN / "mypy"), "--no-incremental", "protoc_gen_pygateway")
    assert result.returncode == 0, result.stdout + result.stderr
