"""The demo backend (demo.backend.start_backend) in its own process, with a recorder that keeps nothing
(the stock Recorder appends every call, which grows without bound under wrk). Prints `PORT <n>`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "gen"))
sys.path.insert(0, str(ROOT))

from demo.backend import Recorder, start_backend  # noqa: E402


class _NoKeepRecorder(Recorder):
    def record(self, method, request, context):
        call = super().record(method, request, context)
        self.calls.clear()
        return call


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server, bound, _ = await start_backend("127.0.0.1", port, recorder=_NoKeepRecorder())
    print(f"PORT {bound}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
