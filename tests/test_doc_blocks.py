"""Every code block of docs/generating.md and docs/linting.md, run verbatim as a new user would paste it.

The blocks run in order in a scratch project holding a copy of testdata/protos: `sh` blocks with bash
(`set -euo pipefail`), yaml blocks whose first line is `# FILE` are written to FILE. PATH holds this
interpreter's bin directory (python, protoc-gen-pygateway), buf from npm (tests/buf: `npm ci --prefix
tests/buf`, as .ci/run does) and the system's (Debian's protoc). Before each block that generates,
`gen/` is removed, so each generation is checked on its own: the gateway modules of the bundled wrapper,
of a standalone protoc and of buf must be byte-identical (but for the header line naming the parameters).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doc_blocks import Block, blocks

ROOT = Path(__file__).resolve().parent.parent
GENERATING = ROOT / "docs" / "generating.md"
LINTING = ROOT / "docs" / "linting.md"
BUF_BIN = ROOT / "tests" / "buf" / "node_modules" / ".bin"
SHOP_GATEWAYS = [
    "shop/v1/shop_pb2_gateway_shop_service.py",
    "shop/v1/shop_pb2_gateway_shelf_admin_service.py",
]


def _require(what: str, found: bool, hint: str) -> None:
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{what} is missing: .ci/run must install it ({hint})")
        pytest.skip(f"{what} is not installed ({hint})")


def _env() -> dict[str, str]:
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(BUF_BIN), "/usr/local/bin", "/usr/bin", "/bin"]
    )
    return {**os.environ, "PATH": path}


def _run_sh(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _gateways(gen: Path) -> dict[str, bytes]:
    """The shop gateway modules, without the header line naming the plugin parameters (buf's example
    passes `openapi=true`, which changes nothing else in them)."""
    return {
        name: re.sub(rb"^# parameters: .*\n", b"", (gen / name).read_bytes(), count=1, flags=re.MULTILINE)
        for name in SHOP_GATEWAYS
    }


def test_generating_blocks_run_verbatim(tmp_path: Path) -> None:
    _require(
        "protoc",
        shutil.which("protoc", path="/usr/local/bin:/usr/bin:/bin") is not None,
        "apt-get install protobuf-compiler",
    )
    _require("buf", (BUF_BIN / "buf").exists(), "npm ci --prefix tests/buf")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "testdata" / "protos", project / "testdata" / "protos")
    found = blocks(GENERATING)
    assert [block.lang for block in found] == ["sh", "sh", "sh", "yaml", "yaml", "sh"], found
    outputs: dict[str, dict[str, bytes]] = {}
    for block in found:
        if block.lang == "yaml":
            assert block.file_name, f"{block.where}: a yaml block must start with `# FILE`"
            (project / block.file_name).write_text(block.text)
            continue
        generates = "--pygateway_out" in block.text or "buf generate" in block.text
        if generates:
            shutil.rmtree(project / "gen", ignore_errors=True)
        result = _run_sh(block, project)
        assert result.returncode == 0, (
            f"{block.where} failed:\n{block.text}\n{result.stdout}\n{result.stderr}"
        )
        if generates:
            outputs[block.where] = _gateways(project / "gen")
    assert len(outputs) == 3
    first, *others = outputs.values()
    for where, output in zip(list(outputs)[1:], others, strict=True):
        assert output == first, f"{where}: gateway modules differ from those of the bundled wrapper"
    # buf generated every file of the input (the feed service too) and the runtime once.
    gen = project / "gen"
    assert (gen / "shop" / "v1" / "feed_pb2_gateway_feed_service.py").is_file()
    assert (gen / "shop" / "v1" / "shop.openapi.json").is_file()
    assert (gen / "pygateway_serve.py").is_file()
    assert not (gen / "google").exists(), "buf must not generate the copied google/api files"
    check = subprocess.run(
        [sys.executable, "-c", "import shop.v1.shop_pb2_gateway_shop_service as m; print(m.create_app)"],
        cwd=gen,
        env={**_env(), "PYTHONPATH": str(gen)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_protoc_without_the_include_path_names_the_missing_file(tmp_path: Path) -> None:
    """What the docs explain: a bare standalone protoc cannot find google/api/annotations.proto."""
    _require(
        "protoc",
        shutil.which("protoc", path="/usr/local/bin:/usr/bin:/bin") is not None,
        "apt-get install protobuf-compiler",
    )
    (tmp_path / "gen").mkdir()
    result = subprocess.run(
        ["protoc", f"-I{ROOT / 'testdata' / 'protos'}", "--pygateway_out=gen", "shop/v1/shop.proto"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "google/api/annotations.proto" in result.stderr
    text = GENERATING.read_text()
    assert "protoc-gen-pygateway --include-path" in text and "google/api/annotations.proto" in text


def test_linting_blocks_run_verbatim(tmp_path: Path) -> None:
    """The generated gateway, runtime and serve command pass plain `ruff check` (ruff's defaults: only
    protoc's files excluded) and `mypy` with the documented settings (strict)."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "testdata" / "protos", project / "testdata" / "protos")
    found = blocks(LINTING)
    assert [block.lang for block in found] == ["toml", "sh"], found
    toml, script = found
    assert toml.file_name == "pyproject.toml"
    (project / "pyproject.toml").write_text(toml.text)
    result = _run_sh(script, project)
    assert result.returncode == 0, f"{script.where}:\n{result.stdout}\n{result.stderr}"
    gen = project / "gen"
    assert (gen / "pygateway_runtime" / "app.py").is_file() and (gen / "pygateway_serve.py").is_file()
    # Without the exclusion (ruff's defaults, the tree first-party), what ruff reports is protoc's output
    # only, never ours.
    bare = subprocess.run(
        ["ruff", "check", "--isolated", "--config", "src = ['.', 'gen']", "--no-cache",
         "--output-format", "concise", "gen"],
        cwd=project, env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    flagged = {line.split(":", 1)[0] for line in bare.stdout.splitlines() if line.startswith("gen/")}
    assert flagged and all(re.search(r"_pb2(_grpc)?\.pyi?$", name) for name in flagged), bare.stdout
