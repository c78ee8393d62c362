#!/usr/bin/python3
"""SIGHUP reloads under load (issue 17): how many requests fail while the routes file
is reloaded 100 times, how long a reload takes, and what it costs the requests.

    /usr/bin/python3 bench/reload_bench.py [--reloads 100] [--seconds 10] [--out FILE]

PostgreSQL, Redis, authsvc and the demo upstream through tests/e2e/pcsupport
(pcsupport.cluster, no gateway of its own), and one gateway (GATEWAY_WORKERS=2) whose
routes file has 40 routes; the measured one, /perm/, takes an API key with a required
permission (the key is in L1: its permission bits are per table, so every reload makes
it parse them again once). wrk (bench/gateway.lua, -t2 -c50) runs on /perm/x for --seconds
at a time, --rounds times each way in turn, in one run:

  quiet     no reload
  reloads   --reloads SIGHUPs spread over the run, the file alternating between two
            tables that differ in every route's timeout_ms and in one route more

and reports for each: requests/s, every answer that was not 200 and every socket error
wrk saw (goal: 0 in the reloads run), and the latency percentiles. Each reload's time is
the gateway's own ("reloaded ... in N us" in its log: read, parse, validate, publish)
and, from outside, SIGHUP to /_stats counting it. Every wait is bounded; every process
is stopped by PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "bench")]
import pcsupport as H  # noqa: E402
import pcsupport as G  # noqa: E402
from pcsupport import cluster as C  # noqa: E402
from gateway_bench import run_wrk  # noqa: E402
from revocation_bench import summarize  # noqa: E402
from signin_storm import git_rev, machine, write_report  # noqa: E402

def tables(up: str) -> tuple:
    def table(timeout_ms: int, extra: bool) -> dict:
        routes = [{"prefix": f"/r{i}/", "upstream": up, "auth": ["api_key"],
                   "timeout_ms": timeout_ms} for i in range(38)]
        routes.append({"prefix": "/perm/", "upstream": up, "auth": ["api_key"],
                       "permissions": {"files": ["read"]}, "timeout_ms": timeout_ms})
        routes.append({"prefix": "/pub/", "upstream": up, "auth": ["none"]})
        if extra:
            routes.append({"prefix": "/extra/", "upstream": up, "auth": ["none"]})
        return {"routes": routes}
    return table(5000, False), table(6000, True)


def wrk_path() -> str:
    w = shutil.which("wrk")
    if w is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
        w = shutil.which("wrk")
    return w


def run_wrk_key(wrk: str, url: str, key: str, seconds: int, work: Path) -> dict:
    """gateway_bench's wrk run (bench/gateway.lua, -t2 -c50) on /perm/x with key."""
    table = work / "key.table"
    table.write_text(f"1.0\t{key}\n")
    opts = types.SimpleNamespace(threads=2, connections=50, duration=seconds)
    return run_wrk(wrk, url, table, "x-api-key", opts, 1, path="/perm/x")[1]


def reloader(g, files: tuple, n: int, seconds: float, out: dict):
    """n SIGHUPs spread over seconds, alternating the two files; each one waited for."""
    rf = Path(g.env["GATEWAY_ROUTES"])
    gap = seconds / (n + 1)
    t_end = time.monotonic() + seconds + 30
    seen = g.stats()["reloads"]
    for i in range(n):
        time.sleep(gap)
        rf.write_text(files[i % 2])
        t0 = time.perf_counter()
        g.proc.send_signal(signal.SIGHUP)
        while g.stats()["reloads"] + g.stats()["reloads_failed"] <= seen:
            if time.monotonic() > t_end:
                raise TimeoutError("a reload was not counted")
            time.sleep(0.002)
        seen += 1
        out["outside_ms"].append((time.perf_counter() - t0) * 1e3)


def pcts(lat: dict) -> str:
    return ", ".join(f"{k} {lat[k] / 1000:.2f} ms" for k in ("p50", "p99", "max"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reloads", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="quiet/reloading pairs (default 2)")
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args()
    started = dt.datetime.now()
    wrk = wrk_path()
    work = Path(tempfile.mkdtemp(prefix="pc-reload-bench-"))
    cl = C.Cluster(work / "cluster", "bench-" + os.urandom(20).hex(), n_gateways=0, haproxy=False)
    g = None
    problems = []
    try:
        a, b = tables(cl.upstream.url)
        env = G.gw_base_env(cl.pg, cl.redis, cl.secret, GATEWAY_WORKERS="2", L1_TTL_SECONDS="300",
                            UPSTREAM_TIMEOUT_SECONDS="10")
        g = G.Gateway(env, a, workdir=work, name="gateway-reload-bench")
        u = cl.client().sign_up(name="Reload bench")
        k = cl.keys.create(u.id, permissions={"files": ["read"]})
        assert g.get("/perm/x", headers={"x-api-key": k.key}).status_code == 200
        rel = {"outside_ms": []}
        files = (json.dumps(b), json.dumps(a))
        runs = []   # (label, wrk result), quiet and reloading in turn
        for rnd in range(args.rounds):
            runs.append(("quiet", run_wrk_key(wrk, g.base_url, k.key, args.seconds, work)))
            before = g.stats()
            th = threading.Thread(target=reloader,
                                  args=(g, files, args.reloads, args.seconds, rel))
            th.start()
            res = run_wrk_key(wrk, g.base_url, k.key, args.seconds, work)
            th.join(timeout=120)
            st = g.stats()
            runs.append((f"{st['reloads'] - before['reloads']} reloads "
                         f"({st['reloads_failed'] - before['reloads_failed']} refused)", res))
        inside = [int(x) / 1000 for x in
                  re.findall(r"reloaded .*? in (\d+) us", g.log_path.read_text(errors="replace"))]
    finally:
        if g is not None:
            problems += H.check_stopped(g, fail=False)
        problems += cl.close()

    def failed(res):
        bad = sum(v for s, v in res["status"].items() if s != "200")
        return bad, sum(res.get("errors", {}).values())

    def rps(res):
        return res["requests"] / (res["duration_us"] / 1e6)

    quiet_rps = sum(rps(r) for lab, r in runs if lab == "quiet") / args.rounds
    rows, fails = [], 0
    for lab, r in runs:
        nb, ne = failed(r)
        if lab != "quiet":
            fails += nb + ne
        rows.append(f"| {lab} | {rps(r):,.0f} ({rps(r) / quiet_rps:.2f}x quiet mean) | {nb} | "
                    f"{ne} | {pcts(r['latency_us'])} |")
    si, so = summarize(inside), summarize(rel["outside_ms"])
    rev, host = git_rev(), machine()
    lines = [
        f"# SIGHUP reloads under load ({started:%Y-%m-%d %H:%M}, {rev})",
        "",
        f"Machine: {host}. Command: `/usr/bin/python3 bench/reload_bench.py --reloads "
        f"{args.reloads} --seconds {args.seconds} --rounds {args.rounds}`.",
        "",
        "One gateway (2 workers), 40 routes, wrk -t2 -c50 on an API-key route with a required "
        "permission (the key in L1), every run in one process of this script.",
        "",
        f"| run ({args.seconds} s each, in this order) | requests/s | not 200 | socket errors "
        "| latency |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Reload time, the gateway's own (read, parse, validate, publish; {si['n']} reloads): "
        f"p50 {si['p50']:.2f} ms, p99 {si['p99']:.2f} ms, max {si['max']:.2f} ms.",
        f"SIGHUP to /_stats counting it, from outside (includes the polling): "
        f"p50 {so['p50']:.2f} ms, p99 {so['p99']:.2f} ms.",
        f"Goal: 0 failed requests while reloading: {'met' if fails == 0 else f'NOT met ({fails})'}.",
    ]
    write_report(lines, problems, args.out)
    return 0 if fails == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
