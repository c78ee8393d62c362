#!/usr/bin/python3
"""Two gateway builds side by side in one run: is a change faster or slower on the
cached paths? (A before/after check for a change, not a goal.)

    /usr/bin/python3 bench/ab_bench.py --a /path/to/old/build --b build [--rounds 3]
        [--seconds 10] [--out FILE]

PostgreSQL, Redis, authsvc and the demo upstream through tests/e2e/pcsupport
(pcsupport.cluster, no gateway of its own), then one gateway from each build
(GATEWAY_WORKERS=2, the same routes and environment, both running all along). wrk
(bench/gateway.lua, -t2 -c50) runs --rounds times on each in turn, A then B, for
--seconds, on three paths: an API key in L1 (/k/), a session cookie in L1 (/s/), and
an API key route with a required permission (/perm/). The report gives each run's
requests/s and p99 and, per path, B's mean over A's mean. Every run must answer 200
only. Every wait is bounded; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "bench")]
import pcsupport as H  # noqa: E402
import pcsupport as G  # noqa: E402
from pcsupport import cluster as C  # noqa: E402
from gateway_bench import run_wrk  # noqa: E402
from reload_bench import wrk_path  # noqa: E402
from signin_storm import git_rev, machine, write_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="build directory of A (the baseline)")
    ap.add_argument("--b", default=str(REPO / "build"), help="build directory of B")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args()
    started = dt.datetime.now()
    wrk = wrk_path()
    work = Path(tempfile.mkdtemp(prefix="pc-ab-bench-"))
    cl = C.Cluster(work / "cluster", "bench-" + os.urandom(20).hex(), n_gateways=0, haproxy=False)
    gws, problems = {}, []
    results = {}   # (path, side) -> [wrk result]
    try:
        # defaults only: an older build may not know a newer variable's name
        env = G.gw_base_env(cl.pg, cl.redis, cl.secret, GATEWAY_WORKERS="2")
        for side, build in (("A", args.a), ("B", args.b)):
            g = G.Gateway(env, cl.routes, workdir=work, name=f"gateway-{side}", start=False)
            g.exe = Path(build).resolve() / "gateway"
            g.start()
            gws[side] = g
        u = cl.client().sign_up(name="AB bench")
        key = cl.keys.create(u.id).key
        pkey = cl.keys.create(u.id, permissions={"files": ["read", "write"],
                                                   "projects": ["list"]}).key
        paths = (("/k/x", "x-api-key", key), ("/s/x", "Cookie", u.cookie.split("; ")[0]),
                 ("/perm/x", "x-api-key", pkey))
        opts = types.SimpleNamespace(threads=2, connections=50, duration=args.seconds)
        for path, header, value in paths:
            table = work / f"t{len(results)}.table"
            table.write_text(f"1.0\t{value}\n")
            for side in ("A", "B"):
                for _ in range(3):   # warm: L1 filled, pools open
                    h = {header: value}
                    assert gws[side].get(path, headers=h).status_code == 200, (side, path)
            for _ in range(args.rounds):
                for side in ("A", "B"):
                    res = run_wrk(wrk, gws[side].base_url, table, header, opts, 1, path=path)[1]
                    results.setdefault((path, side), []).append(res)
    finally:
        for g in gws.values():
            problems += H.check_stopped(g, fail=False)
        problems += cl.close()

    def rps(res):
        return res["requests"] / (res["duration_us"] / 1e6)

    lines = [f"# Two gateway builds side by side ({started:%Y-%m-%d %H:%M}, {git_rev()})", "",
             f"Machine: {machine()}. A: `{args.a}`, B: `{args.b}`. Command: "
             f"`/usr/bin/python3 bench/ab_bench.py --a {args.a} --b {args.b} --rounds "
             f"{args.rounds} --seconds {args.seconds}`.", "",
             "| path | A requests/s (each round) | B requests/s (each round) | B / A (means) "
             "| A p99 | B p99 | not 200 |", "|---|---|---|---|---|---|---|"]
    bad_total = 0
    for path in dict.fromkeys(p for p, _ in results):
        a, b = results[(path, "A")], results[(path, "B")]
        bad = sum(v for r in a + b for s, v in r["status"].items() if s != "200")
        bad += sum(sum(r.get("errors", {}).values()) for r in a + b)
        bad_total += bad
        ma, mb = sum(map(rps, a)) / len(a), sum(map(rps, b)) / len(b)
        lines.append(f"| {path} | {', '.join(f'{rps(r):,.0f}' for r in a)} | "
                     f"{', '.join(f'{rps(r):,.0f}' for r in b)} | {mb / ma:.3f} | "
                     f"{max(r['latency_us']['p99'] for r in a) / 1000:.2f} ms | "
                     f"{max(r['latency_us']['p99'] for r in b) / 1000:.2f} ms | {bad} |")
    write_report(lines, problems, args.out)
    return 0 if bad_total == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
