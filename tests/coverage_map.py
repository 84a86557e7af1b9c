"""`make coverage`'s last step: count what ran in emitted runtime copies as coverage of their source.

Most of the runtime runs as `pygateway_runtime/` inside generated trees (the servers the end-to-end tests
start). Each emitted module is its source below the two-line generated-code header (as
tests/test_runtime_package.py holds), so its lines and arcs map to protoc_gen_pygateway/runtime/<same
path> shifted by two lines.
coverage's own `[paths]` remapping cannot shift lines, hence this script.

`python -m tests.coverage_map --remap DATA_FILE` rewrites the combined data file in place;
`--summary DATA_FILE` prints line and branch coverage of the runtime and of the plugin, and fails when the
runtime's line coverage is below 90%.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from coverage import Coverage, CoverageData

from protoc_gen_pygateway.render import RUNTIME_PACKAGE, header
from tests.protoc_support import ROOT

SOURCE = ROOT / "protoc_gen_pygateway" / "runtime"
SHIFT = header("x", None).count("\n") + 1  # the header's lines above the verbatim source


def _source_of(measured: str) -> Path | None:
    """The runtime source file an emitted copy was made from, or None for any other file."""
    parts = Path(measured).parts
    if RUNTIME_PACKAGE not in parts:
        return None
    index = len(parts) - 1 - parts[::-1].index(RUNTIME_PACKAGE)
    source = SOURCE.joinpath(*parts[index + 1 :])
    return source if source.is_file() else None


def _shift(line: int) -> int:
    """Arcs use -N for entering/leaving the code object that starts at line N: shift the magnitude."""
    return line - SHIFT if line > 0 else line + SHIFT


def remap(data_file: Path) -> tuple[int, int]:
    old = CoverageData(str(data_file))
    old.read()
    arcs: dict[str, set[tuple[int, int]]] = {}
    lines: dict[str, set[int]] = {}
    mapped = 0
    for measured in old.measured_files():
        source = _source_of(measured)
        target = str(source) if source is not None else measured
        mapped += source is not None
        if old.has_arcs():
            for a, b in old.arcs(measured) or ():
                arcs.setdefault(target, set()).add((_shift(a), _shift(b)) if source else (a, b))
        else:
            for n in old.lines(measured) or ():
                lines.setdefault(target, set()).add(n - SHIFT if source else n)
    new_file = data_file.with_name(data_file.name + ".mapped")
    new = CoverageData(str(new_file))
    if arcs:
        new.add_arcs({f: sorted(a) for f, a in arcs.items()})
    if lines:
        new.add_lines({f: sorted(n) for f, n in lines.items()})
    new.write()
    new_file.replace(data_file)
    return mapped, len(arcs or lines)


#: `make coverage` fails below this line coverage of the runtime.
RUNTIME_LINES_MIN = 90.0


def summary(data_file: Path) -> dict[str, tuple[float, float]]:
    """Line and branch coverage (percent) of the runtime and of the rest of the plugin."""
    cov = Coverage(data_file=str(data_file))
    cov.load()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        cov.json_report(outfile=str(out), include=[str(ROOT / "protoc_gen_pygateway" / "*")])
        files = json.loads(out.read_text("utf-8"))["files"]
    totals: dict[str, list[int]] = {"runtime": [0, 0, 0, 0], "plugin": [0, 0, 0, 0]}
    for name, data in files.items():
        part = "runtime" if Path(name).resolve().is_relative_to(SOURCE) else "plugin"
        numbers = data["summary"]
        for i, key in enumerate(("covered_lines", "num_statements", "covered_branches", "num_branches")):
            totals[part][i] += numbers[key]
    return {part: (100.0 * t[0] / max(t[1], 1), 100.0 * t[2] / max(t[3], 1)) for part, t in totals.items()}


def main(argv: list[str]) -> int:
    step, data_file = argv[0], Path(argv[1])
    if step == "--remap":
        mapped, files = remap(data_file)
        print(f"coverage: {mapped} emitted runtime files counted as their sources ({files} files measured)")
        return 0
    results = summary(data_file)
    for part, (lines, branches) in results.items():
        print(f"coverage of the {part}: lines {lines:.1f}%, branches {branches:.1f}%")
    if results["runtime"][0] < RUNTIME_LINES_MIN:
        print(f"runtime line coverage below {RUNTIME_LINES_MIN:.0f}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
