#!/usr/bin/env python3
"""Pool the runs of several serving_configs.py result files, keep only clean runs, print medians.

A wrk run is clean when "other CPU" (machine busy minus gateway, backend and wrk) stayed below 10% of a
core over the run (0.5 s for -d5s): the machine is shared with other sessions.

    .venv/bin/python bench/summarize.py bench/results/serving_configs*.json
"""

from __future__ import annotations

import json
import statistics
import sys

LIMIT = 0.5


def main(paths: list[str]) -> None:
    rows = [r for p in paths for r in json.load(open(p))["rows"]]
    names = list(dict.fromkeys(r["config"] for r in rows))
    print(
        "| config | GET n | GET req/s | GET gw us/req (min–max) | GET p50 / p99 ms | POST n | POST req/s "
        "| POST gw us/req (min–max) | POST p50 / p99 ms | stream n | 20k-msg stream s | msg/s | gw us/msg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        rs = [r for r in rows if r["config"] == name]
        cells = [name]
        for kind in ("get", "post"):
            ok = [r[kind] for r in rs if r[kind]["other_cpu_s"] < LIMIT]
            if not ok:
                cells += ["0", "-", "-", "-"]
                continue
            us = [x["gw_us_per_req"] for x in ok]
            m = lambda k: statistics.median(x[k] for x in ok)  # noqa: E731
            cells += [
                str(len(ok)),
                f"{m('rps'):.0f}",
                f"**{statistics.median(us):.0f}** ({min(us):.0f}–{max(us):.0f})",
                f"{m('p50_ms'):.1f} / {m('p99_ms'):.1f}",
            ]
        ok = [r["stream"] for r in rs if r["stream"]["other_cpu_s"] < LIMIT * 2.3 / 5]
        m = lambda k: statistics.median(x[k] for x in ok)  # noqa: E731
        cells += (
            [str(len(ok)), f"{m('wall_s'):.2f}", f"{m('msg_per_s'):.0f}", f"{m('gw_us_per_msg'):.0f}"]
            if ok
            else ["0", "-", "-", "-"]
        )
        print("| " + " | ".join(cells) + " |")
    errs = sum(r[k]["non2xx"] for r in rows for k in ("get", "post"))
    lines = {r["stream"]["lines"] for r in rows}
    print(
        f"\nall runs: {len(rows)}; non-2xx responses in all wrk runs: {errs}; stream line counts seen: {sorted(lines)}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
