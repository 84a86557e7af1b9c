"""The `gateway` marker (tests/gateway_marker.py) that `make test`'s native pass selects: applied to every
test that serves a gateway through the shared helpers, directly, through fixtures, or through
`request.getfixturevalue`, and to none of the plugin / golden / transport-only tests."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ROOT


def _collected(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 5), result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


FILES = [
    "tests/test_e2e_unary.py",  # the `client` fixture, and the serve command run by a test itself
    "tests/test_slowloris.py",  # request.getfixturevalue("uvicorn_gateway" if ... else "granian")
    "tests/test_hooks.py",  # tests/ops_support.py's serve_app
    "tests/test_upgrade_matrix.py",  # tests/servers.py's configurations
    "tests/test_golden.py",
    "tests/test_native_transport_core.py",
]


def test_marker_selects_the_tests_that_serve_a_gateway() -> None:
    everything = _collected(*FILES)
    marked = _collected("-m", "gateway", *FILES)

    def ids(name: str, among: set[str]) -> set[str]:
        return {t for t in among if t.startswith(f"tests/{name}.py::")}

    for name in ("test_e2e_unary", "test_slowloris", "test_hooks"):
        assert ids(name, everything) and ids(name, marked) == ids(name, everything), name
    matrix = ids("test_upgrade_matrix", marked)
    assert len(matrix) > 100, len(matrix)
    # The matrix's document checks serve nothing.
    assert "tests/test_upgrade_matrix.py::test_matrix_is_complete" not in marked
    for name in ("test_golden", "test_native_transport_core"):
        assert ids(name, everything) and not ids(name, marked), name
