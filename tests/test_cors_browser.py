"""CORS in a real browser (issue 14 §2): headless Chromium (Debian's package, over DevTools) loads a page
from one loopback origin that calls the gateway — the shipped serve command with `--cors-origin` and
`--cors-credentials`, on another origin — with fetch(): an allowed GET, a POST with JSON (preflighted,
with a Grpc-Metadata header), an NDJSON stream read incrementally through response.body.getReader(); a
header the policy does not allow is refused by the browser; and a page from a third origin is refused by
the browser, its preflighted POST never reaching the backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser import PageServer, chromium, chromium_binary
from tests.conftest import GatewayServer

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(chromium_binary() is None, reason="chromium not installed (.ci/run installs it)"),
]

SERVERS = {"default": [], "uvicorn": ["--server", "uvicorn"]}

SCRIPT = """
<!doctype html><meta charset="utf-8"><title>cors</title>
<script>
const GW = %(gateway)s;
async function attempt(name, run) {
  try { return [name, await run()]; } catch (e) { return [name, {error: String(e)}]; }
}
window.addEventListener("load", async () => {
  const results = {};
  const steps = [
    attempt("get", async () => {
      const r = await fetch(GW + "/v1/shelves/fiction/books/dune", {credentials: "include"});
      return {status: r.status, body: await r.json()};
    }),
    attempt("post", async () => {
      const r = await fetch(GW + "/v1/shelves/fiction/books", {
        method: "POST", credentials: "include",
        headers: {"Content-Type": "application/json", "Grpc-Metadata-X-Trace": %(trace)s},
        body: JSON.stringify({title: %(title)s}),
      });
      return {status: r.status, body: await r.json()};
    }),
    attempt("stream", async () => {
      const started = performance.now();
      const r = await fetch(GW + "/v1/shelves/fiction/events:watch?count=4&intervalMs=300");
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      const reads = []; let text = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        const chunk = decoder.decode(value, {stream: true});
        text += chunk;
        const lines = chunk.split("\\n").filter(Boolean).length;
        reads.push({at: Math.round(performance.now() - started), lines});
      }
      return {status: r.status, type: r.headers.get("content-type"), reads,
              lines: text.split("\\n").filter(Boolean).map((l) => JSON.parse(l))};
    }),
    attempt("unknown_header", async () => {
      const r = await fetch(GW + "/v1/shelves/fiction/books/dune", {headers: {"X-Unknown": "1"}});
      return {status: r.status};
    }),
  ];
  for (const [name, value] of await Promise.all(steps)) results[name] = value;
  window.__results = results;
});
</script>
"""


def page(gateway: str, title: str, trace: str) -> str:
    return SCRIPT % {"gateway": json.dumps(gateway), "title": json.dumps(title), "trace": json.dumps(trace)}


@pytest.mark.parametrize("server", SERVERS)
def test_browser_cors(gen_dir: Path, backend: Any, tmp_path: Path, server: str) -> None:
    allowed_page, blocked_page = PageServer(), PageServer()
    gateway = GatewayServer(
        gen_dir, backend.port, [*SERVERS[server], "--cors-origin", allowed_page.origin, "--cors-credentials"]
    )
    backend.reset()
    try:
        allowed_page.pages["/"] = page(gateway.url, "From The Browser", "trace-allowed")
        blocked_page.pages["/"] = page(gateway.url, "Blocked Book", "trace-blocked")
        with chromium(tmp_path / "chromium") as browser:
            run = browser.run(allowed_page.origin + "/")
            blocked = browser.run(blocked_page.origin + "/")
        results = run.results

        assert results["get"] == {"status": 200, "body": results["get"]["body"]}, run.log
        assert results["get"]["body"]["name"] == "shelves/fiction/books/dune"

        assert results["post"]["status"] == 200, (results["post"], run.log)
        assert results["post"]["body"]["title"] == "From The Browser"
        created = backend.recorder.last("CreateBook")
        assert created.metadata_values("x-trace") == ["trace-allowed"]

        stream = results["stream"]
        assert stream["status"] == 200 and stream["type"] == "application/x-ndjson", (stream, run.log)
        assert [line["result"]["seq"] for line in stream["lines"]] == ["0", "1", "2", "3"]
        # Read incrementally: the events arrived in separate reads, spread over the stream's ~0.9 s.
        with_lines = [read for read in stream["reads"] if read["lines"]]
        assert len(with_lines) >= 3, stream["reads"]
        assert with_lines[-1]["at"] - with_lines[0]["at"] >= 500, stream["reads"]

        # A request header the policy does not allow: the preflight leaves it out, the browser refuses.
        assert "Failed to fetch" in results["unknown_header"].get("error", ""), results["unknown_header"]
        assert run.log_mentions("x-unknown is not allowed by Access-Control-Allow-Headers"), run.log

        # Another origin: every fetch refused by the browser, for CORS.
        for name in ("get", "post", "stream"):
            assert "Failed to fetch" in blocked.results[name].get("error", ""), (name, blocked.results[name])
        assert blocked.log_mentions("has been blocked by CORS policy"), blocked.log
        # Its POST needed a preflight, which was refused: the backend never saw it.
        titles = [call.request.book.title for call in backend.recorder.for_method("CreateBook")]
        assert titles == ["From The Browser"]
    finally:
        gateway.stop()
        allowed_page.stop()
        blocked_page.stop()
