"""`pip install .` gives a working `protoc-gen-pygateway`; a standalone protoc drives it like grpc_tools.

Builds the wheel, installs it into a fresh virtual environment (templates must ship inside it), and runs
Debian's `protoc` (CI installs protobuf-compiler) with only that venv's bin on PATH. Output must equal
the golden files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from protoc_gen_pygateway.render import render_support
from tests.golden import GOLDEN, RUNTIME_PREFIX, read_tree
from tests.protoc_support import PROTOS, ROOT, include_paths


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout installed; returns its bin directory."""
    work = tmp_path_factory.mktemp("install")
    wheels = work / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = wheels.glob("*.whl")
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return bin_dir


def test_console_script_version(installed: Path) -> None:
    result = subprocess.run(
        [str(installed / "protoc-gen-pygateway"), "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("protoc-gen-pygateway ")


def test_standalone_protoc_generates_the_golden_output(installed: Path, tmp_path: Path) -> None:
    protoc = shutil.which("protoc")
    if protoc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("protoc missing: .ci/run installs Debian's protobuf-compiler")
        pytest.skip("no standalone protoc on this machine (apt-get install protobuf-compiler)")
    env = {**os.environ, "PATH": f"{installed}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    includes = [f"-I{PROTOS}", *(f"-I{p}" for p in include_paths())]
    result = subprocess.run(
        [protoc, *includes, f"--pygateway_out={tmp_path}", "shop/v1/shop.proto", "shop/v1/feed.proto"],
        cwd=PROTOS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = read_tree(tmp_path)
    runtime = {name: text for name, text in written.items() if name.startswith(RUNTIME_PREFIX)}
    assert {name: text for name, text in written.items() if name not in runtime} == read_tree(
        GOLDEN / "default"
    )
    # The wheel holds every runtime module: a subpackage missing from pyproject's list shows here.
    assert runtime == {
        name: text for name, text in render_support().items() if name.startswith(RUNTIME_PREFIX)
    }


def test_installed_wrapper_resolves_google_api(installed: Path, tmp_path: Path) -> None:
    """`python -m protoc_gen_pygateway.protoc` from the installed wheel finds google/api and the WKTs."""
    result = subprocess.run(
        [
            str(installed / "python"),
            "-m",
            "protoc_gen_pygateway.protoc",
            f"-I{PROTOS}",
            f"--pygateway_out={tmp_path}",
            "shop/v1/shop.proto",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "shop" / "v1" / "shop_pb2_gateway_shop_service.py").exists()
