"""The generated code for testdata/protos must equal testdata/golden/<case> byte for byte.

Every change to generated output is then reviewed as a diff of testdata/golden. Intended changes:
run `make golden` (`python -m tests.golden --update`) and commit the result.
"""

from __future__ import annotations

import difflib

import pytest

from tests.golden import GOLDEN, all_cases, generate_case

HINT = "generated code differs from testdata/golden; if the change is intended, run `make golden` and commit"


def _golden_files(case: str) -> dict[str, bytes]:
    root = GOLDEN / case
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(all_cases()))
def test_golden(case: str) -> None:
    expected = _golden_files(case)
    protos, parameter = all_cases()[case]
    actual = {name: content.encode("utf-8") for name, content in generate_case(parameter, protos).items()}
    assert expected, f"testdata/golden/{case} is missing: run `make golden`"
    missing, extra = sorted(set(actual) - set(expected)), sorted(set(expected) - set(actual))
    assert not missing and not extra, f"{HINT}\nnot in golden: {missing}\nonly in golden: {extra}"
    for name in sorted(actual):
        if actual[name] != expected[name]:
            diff = difflib.unified_diff(
                expected[name].decode("utf-8", "replace").splitlines(keepends=True),
                actual[name].decode("utf-8").splitlines(keepends=True),
                f"golden/{case}/{name}",
                f"generated/{name}",
                n=2,
            )
            shown = "".join(list(diff)[:60])
            pytest.fail(f"{HINT}\n{case}/{name}:\n{shown}", pytrace=False)


def test_no_stale_golden_cases() -> None:
    on_disk = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    cases = set(all_cases())
    assert on_disk == cases, f"{HINT} (testdata/golden has {sorted(on_disk)}, cases are {sorted(cases)})"
