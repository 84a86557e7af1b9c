"""Probe (issue 16 §2): which serving candidates answer every Upgrade-matrix cell as plain HTTP while still
accepting WebSocket handshakes on streaming routes?

    .venv/bin/python -m bench.probes.keyless_upgrade [CANDIDATE ...]

Generates the testdata tree, starts the demo backend, serves the gateway with each candidate
(tests/servers.py runs uvicorn with the given protocol classes) and prints each Upgrade-matrix cell's
outcome (tests/test_upgrade_matrix.py's Probe), marking the cells that differ from plain HTTP.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests import servers
from tests.protoc_support import generate_tree
from tests.test_upgrade_matrix import CELLS, MATRIX, Probe

CANDIDATES: dict[str, tuple[str, dict[str, str]]] = {
    "granian-embedded-ws": ("serve-command", {"server": "granian", "websocket": "on"}),
    "uvicorn-h11-wsproto": ("uvicorn", {"http": "h11", "ws": "wsproto"}),
    "uvicorn-h11-keyless": ("uvicorn", {"http": "tests.upgrade_candidates:KeylessH11", "ws": "wsproto"}),
    "uvicorn-zttp-wsproto": ("uvicorn", {"http": "zttp", "ws": "wsproto"}),
    "uvicorn-zttp-keyless": ("uvicorn", {"http": "tests.upgrade_candidates:KeylessZttp", "ws": "wsproto"}),
    "uvicorn-zttp-keyless-h2": (
        "uvicorn",
        {"http": "tests.upgrade_candidates:KeylessAutoZttp", "ws": "wsproto"},
    ),
}

#: What every cell must be for "plain HTTP everywhere, WebSocket on streaming routes".
GREEN = {**MATRIX["granian"], "sws": MATRIX["uvicorn-h11-wsproto"]["sws"]}


def main(argv: list[str]) -> int:
    names = argv or list(CANDIDATES)
    servers.CONFIGS.update({name: CANDIDATES[name] for name in names})
    with tempfile.TemporaryDirectory() as tmp:
        gen = Path(tmp) / "gen"
        generate_tree(gen, ["shop/v1/shop.proto", "shop/v1/feed.proto"])
        sys.path.insert(0, str(gen))
        from demo.backend import BackgroundBackend

        with BackgroundBackend() as backend:
            started = servers.start_gateways(names, gen, backend.target, Path(tmp))
            try:
                for name in names:
                    bad = []
                    for cell in CELLS:
                        backend.reset()
                        outcome = getattr(Probe(started[name].port, backend), cell)()
                        if cell == "ws" and outcome.startswith(("404", "101→ws error5")):
                            good = True  # a refused handshake to a unary route, complete
                        else:
                            good = outcome == GREEN[cell]
                        if not good:
                            bad.append(f"{cell}={outcome}")
                    print(f"{name}: {'all green' if not bad else 'not green: ' + ', '.join(bad)}", flush=True)
            finally:
                for process in started.values():
                    process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
