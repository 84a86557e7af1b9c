"""Every input under tests/fuzz_corpus/ (the seed corpus and any crash `make fuzz` saved) replayed through
the fuzz harness (tests/fuzz_gateway.py): a crash, once found, stays a regression test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz_gateway import (
    CORPUS,
    SEEDS,
    GatewayFuzzError,
    Harness,
    corpus_files,
    format_request,
    parse_input,
)

FILES = list(corpus_files())

#: Crashes found by `make fuzz` whose fix is outside the fuzzer's reach yet: file name -> what fails.
#: They run as strict xfails, so the fix turns them into failures until their entry here is removed.
KNOWN_OPEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def harness(gen_dir: Path) -> Iterator[Harness]:
    running = Harness(gen_dir)
    yield running
    running.close()


def test_corpus_is_there() -> None:
    assert len([f for f in FILES if f.parent == SEEDS]) >= 12


def _case(path: Path) -> object:
    reason = KNOWN_OPEN.get(path.name)
    marks = [pytest.mark.xfail(strict=True, raises=GatewayFuzzError, reason=reason)] if reason else []
    return pytest.param(path, marks=marks, id=path.relative_to(CORPUS).as_posix())


@pytest.mark.parametrize("path", [_case(f) for f in FILES])
def test_replay(harness: Harness, path: Path) -> None:
    harness.check(path.read_bytes())


def test_known_open_crashes_are_in_the_corpus() -> None:
    assert set(KNOWN_OPEN) <= {f.name for f in FILES}


def test_seeds_reach_the_upstream(harness: Harness) -> None:
    """The seeds are routed and parsed: most get as far as the (unreachable) upstream."""
    statuses = {f.name: harness.check(f.read_bytes()).status for f in FILES if f.parent == SEEDS}
    assert sum(status == 503 for status in statuses.values()) >= 12, statuses


def test_input_format_roundtrip() -> None:
    for path in FILES:
        request = parse_input(path.read_bytes())
        assert parse_input(format_request(request)) == request
