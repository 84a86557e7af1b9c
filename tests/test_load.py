"""Load (issue 4): 200 concurrent server streams held ~5 s through the gateway, every event's `seq` checked
by the client - 0 lost, 0 duplicated, 0 reordered, every stream complete - and the gateway's resident
memory per open stream measured, under both server choices of the serve command (uvicorn h11 + wsproto,
its default with streaming modules, and granian with `--websocket off`). The long version is
`make soak` (tests/soak.py, results in the README)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayServer
from tests.soak import StreamResult, Summary, run_streams

STREAMS = 200
INTERVAL_MS = 100
COUNT = 50  # ~5 s per stream
TIMEOUT = 15.0
#: Generous: measured ~20-60 KiB per open stream (see the printed summary).
MAX_RSS_PER_STREAM = 500 * 1024


@pytest.fixture(scope="module")
def granian_streams(gen_dir: Path, backend: Any) -> Iterator[GatewayServer]:
    """The serve command with every module but without WebSocket: it then serves them with granian."""
    server = GatewayServer(gen_dir, backend.port, extra=["--websocket", "off"])
    yield server
    server.stop()


def check(summary: Summary, backend: Any) -> None:
    print("\n" + "\n".join(summary.lines()))
    failed = [r for r in summary.results if r.errors or r.status != 200 or not r.complete]
    assert not failed, failed[:3]
    assert (summary.lost, summary.duplicated, summary.reordered) == (0, 0, 0)
    assert all(r.seqs == list(range(COUNT)) for r in summary.results)
    assert summary.open_at is not None and summary.open_at < 3.0, summary.open_at
    assert summary.rss_per_stream < MAX_RSS_PER_STREAM, summary.rss_per_stream
    # The backend's side: every stream's handler wrote every event, none was cancelled.
    calls = [c for c in backend.recorder.for_method("/Watch") if c.request.shelf.startswith("shelves/load-")]
    assert len(calls) == STREAMS
    assert all(c.messages_sent == COUNT and not c.cancelled for c in calls)


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_concurrent_streams_lose_nothing(request: pytest.FixtureRequest, backend: Any, server: str) -> None:
    gateway: GatewayServer = request.getfixturevalue(
        "uvicorn_gateway" if server == "uvicorn" else "granian_streams"
    )
    assert httpx.get(gateway.url + "/v1/metadata").headers.get("server") == (
        "granian" if server == "granian" else None
    )
    backend.reset()
    # Warm up (upstream channel, lazy imports) so that the baseline RSS holds them.
    run_streams(gateway.port, gateway.process.pid, streams=2, count=2, interval_ms=0, timeout=5)
    backend.reset()
    summary = run_streams(
        gateway.port,
        gateway.process.pid,
        streams=STREAMS,
        count=COUNT,
        interval_ms=INTERVAL_MS,
        timeout=TIMEOUT,
    )
    check(summary, backend)


def test_summary_counts_what_went_wrong() -> None:
    """The accounting the load tests rely on: loss, duplication, reordering and incomplete streams."""
    results = [
        StreamResult(status=200, seqs=[0, 1, 2, 3], complete=True),
        StreamResult(status=200, seqs=[0, 2, 1, 3, 3], complete=True),  # 1 reordered, 1 duplicated
        StreamResult(status=200, seqs=[0, 1], complete=False),  # 2 lost, incomplete
        StreamResult(status=503, errors=["unavailable"]),  # 4 lost, failed
    ]
    summary = Summary(4, 4, 10, results, 1.0, 1000, 5096, 0.5, 0.1, 0.2)
    assert (summary.lost, summary.duplicated, summary.reordered, summary.incomplete) == (6, 1, 1, 2)
    assert summary.rss_per_stream == 1024
    assert not summary.ok()
    assert Summary(1, 4, 10, results[:1], 1.0, 0, 0, 0, 0, 0).ok()
