"""Build tests/native_go/main.go (the grpc-go peer of tests/native_backend.py) with Debian's golang-go and
golang-google-grpc-dev, GOPATH mode, no network: the binary lands in .cache/native_go/ and is rebuilt
when main.go changes. `python -m tests.native_go` builds and prints its path."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "native_go" / "main.go"
GOCODE = Path("/usr/share/gocode")


def go_available() -> bool:
    return shutil.which("go") is not None and (GOCODE / "src" / "google.golang.org" / "grpc").is_dir()


def build_go_backend() -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = ROOT / ".cache" / "native_go"
    binary = out / f"native_go_backend-{digest}"
    if binary.exists():
        return binary
    gopath = out / "gopath"
    package = gopath / "src" / "nativegobackend"
    package.mkdir(parents=True, exist_ok=True)
    shutil.copy(SOURCE, package / "main.go")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}:{GOCODE}",
        "GOCACHE": str(out / "gocache"),
        "GOFLAGS": "",
    }
    tmp = binary.with_suffix(".tmp")
    subprocess.run(["go", "build", "-o", str(tmp), "nativegobackend"], check=True, env=env, timeout=600)
    tmp.rename(binary)
    return binary


if __name__ == "__main__":
    print(build_go_backend())
