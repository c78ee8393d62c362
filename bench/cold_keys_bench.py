#!/usr/bin/python3
"""Cold API keys (issue 24, item 2): every request a key that no cache has seen,
beside the cached key, in one run.

    /usr/bin/python3 bench/cold_keys_bench.py [--keys 100000] [--duration 10]
        [--connections 50] [--threads 2] [--workers 2] [--rounds 2] [--out FILE]

1. Starts PostgreSQL and Redis (tests/e2e/pcsupport), migrates the schema
   through authsvc (then stops it) and inserts one hot key plus, per round and
   per cold row, --keys fresh keys straight into "apikey" (INSERT ... SELECT,
   hashed as Better Auth stores them; ANALYZE after).
2. Starts the demo upstream and two gateways (GATEWAY_WORKERS=--workers, one
   catch-all UPSTREAM_URL route, access log off), identical but for
   GATEWAY_PG_BATCH_MAX: the default (64: misses that queue together share one
   "= ANY($1)" round trip) and 1 (one query per miss, as before batching).
3. Per round, back to back, each through wrk (-t/-c as given):
     cached     the hot key, already in L1, for --duration seconds
                (bench/gateway.lua)
     cold       fresh keys, each sent once (bench/sequential.lua), for
                --cold-duration seconds, on each gateway
     unknown    random well-formed keys that do not exist, each sent once, for
                --cold-duration seconds, on each gateway (401; they end as
                negative L1 entries)
   A row that used up its --keys keys says so ("repeats": requests after that,
   L1 hits, left out of its requests/s, their time kept in).
   Every cold or unknown key is new to both L1 and Redis, so each costs an L1
   miss, a Redis miss and a PostgreSQL lookup. /_stats before and after each
   run gives PostgreSQL round trips (pg_queries) per key sent and lookups that
   rode along another's (pg_batched).

Prints a markdown report (and writes it to --out): requests/s, p50/p99, the
ratio to the cached row of the same gateway and round, queries per key, the
statuses, and how busy the machine was (load average, and the CPU share no
process of this run used). Every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
import pcsupport as H  # noqa: E402
from gateway_bench import (Gateway, Meter, Upstream, insert_keys, new_key, run_wrk,  # noqa: E402
                           write_table)
from signin_storm import git_rev, machine  # noqa: E402

SEQ_LUA = REPO / "bench" / "sequential.lua"
STATS = ("pg_queries", "pg_batched", "pg_errors", "l1_hits", "l2_hits", "requests")


def run_seq(wrk: str, port: int, table: Path, args, seconds: int) -> dict:
    """The lines of table in turn, each once while they last (bench/sequential.lua),
    against 127.0.0.1:port for `seconds`."""
    argv = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
            "--timeout", "10s", "-s", str(SEQ_LUA), f"http://127.0.0.1:{port}/bench"]
    env = dict(os.environ, BENCH_TABLE=str(table), BENCH_HEADER="x-api-key",
               BENCH_THREADS=str(args.threads))
    r = H.run_bounded(argv, env=env, timeout=seconds + 60)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^SEQ_RESULT (\{.*\})$", out, re.M)
    if r.returncode != 0 or not m:
        raise SystemExit(f"wrk failed ({r.returncode}):\n{out}\n{r.stderr.decode(errors='replace')}")
    return json.loads(m.group(1))


def stats(g) -> dict:
    s = g.stats()
    return {k: s.get(k, 0) for k in STATS}


def measured(g, fn) -> tuple:
    a = stats(g)
    res = fn()
    b = stats(g)
    return res, {k: b[k] - a[k] for k in STATS}


def rate(res: dict) -> float:
    """Requests/s; for a sequential run only the first sending of each key counts
    (repeats, after the keys ran out, are L1 hits: left out, their time kept in)."""
    n = res["requests"] - res.get("repeats", 0)
    return n / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100000, help="cold keys per row (default 100000)")
    ap.add_argument("--duration", type=int, default=10, help="seconds of the cached row")
    ap.add_argument("--cold-duration", type=int, default=5,
                    help="seconds of each cold and unknown row (default 5; --keys must outlast it)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out")
    args = ap.parse_args()
    if not (1000 <= args.keys <= 1000000 and 1 <= args.duration <= 120 and 1 <= args.rounds <= 5
            and 1 <= args.cold_duration <= 60
            and args.connections >= args.threads >= 1):
        ap.error("bad arguments")
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk not found (apt-get install wrk; bench/run.sh does that)")

    ctx = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "rev": git_rev(), "load0": os.getloadavg()}
    meter = Meter()
    work = Path(tempfile.mkdtemp(prefix="pc-coldbench-"))
    secret = "bench-" + os.urandom(24).hex()
    rows = []   # (round, row, gateway, result, counters)
    t0 = time.monotonic()
    c0 = meter.snapshot()
    with H.Postgres() as pg, H.Redis() as rd, contextlib.ExitStack() as stack:
        db = pg.create_database("authsvc")
        env = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
               "RATE_LIMIT_ENABLED": "false"}
        print("== setup: PostgreSQL, Redis, schema (authsvc), keys", flush=True)
        with H.Authsvc(env) as svc:
            client = H.ApiClient(svc, timeout=60)
            user = client.sign_up(H.unique_email("bench"), "Bench-" + os.urandom(9).hex(),
                                  "Bench User")
            client.close()
        hot = new_key()
        cold = {(rnd, gw): [new_key() for _ in range(args.keys)]
                for rnd in range(args.rounds) for gw in ("batch", "single")}
        conn = pg.connect("authsvc")
        try:
            insert_keys(conn, user.id, [hot])
            for ks in cold.values():
                insert_keys(conn, user.id, ks)
            with conn.cursor() as cur:
                cur.execute('analyze "apikey"')
                cur.execute('select count(*) from "apikey"')
                ctx["rows"] = cur.fetchone()[0]
        finally:
            conn.close()
        hot_t = work / "hot.tsv"
        write_table(hot_t, [hot])
        up = Upstream(work, args.workers)
        stack.callback(up.stop)
        base = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
                "UPSTREAM_URL": up.url, "GATEWAY_WORKERS": str(args.workers),
                "LOG_LEVEL": "warn", "GATEWAY_ACCESS_LOG": "false"}
        gws = {"batch": Gateway(work, base, "gateway-batch"),
               "single": Gateway(work, dict(base, GATEWAY_PG_BATCH_MAX="1"), "gateway-single")}
        stack.callback(lambda: [g.stop() for g in gws.values()])
        # the hot key into each gateway's L1
        for name, g in gws.items():
            run_wrk(wrk, f"http://127.0.0.1:{g.port}/bench", hot_t, "x-api-key", args, 1, 1)
        for rnd in range(args.rounds):
            for name, g in gws.items():
                print(f"== round {rnd + 1}: {name}", flush=True)
                _argv, res = run_wrk(wrk, f"http://127.0.0.1:{g.port}/bench", hot_t, "x-api-key",
                                     args, rnd + 1)
                rows.append((rnd, "cached", name, res, {}))
                t = work / f"cold-{rnd}-{name}.txt"
                t.write_text("\n".join(cold[(rnd, name)]) + "\n")
                res, d = measured(g, lambda: run_seq(wrk, g.port, t, args, args.cold_duration))
                rows.append((rnd, "cold", name, res, d))
                t = work / f"unknown-{rnd}-{name}.txt"
                t.write_text("\n".join(new_key() for _ in range(args.keys)) + "\n")
                res, d = measured(g, lambda: run_seq(wrk, g.port, t, args, args.cold_duration))
                rows.append((rnd, "unknown", name, res, d))
    busy = Meter.diff(c0, meter.snapshot())
    ctx["wall"] = time.monotonic() - t0
    ctx["load1"] = os.getloadavg()
    ctx["other"] = busy.get("other processes", 0.0) / max(busy.get("wall", 1.0), 1e-9)
    text = report(ctx, args, rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


def report(ctx, args, rows) -> str:
    L = [f"# Cold API keys ({ctx['date']}, {ctx['rev']})", "",
         f"{ctx['machine']}; load average {ctx['load0'][0]:.2f} before, "
         f"{ctx['load1'][0]:.2f} after; other processes used {ctx['other']:.2f} cores on "
         f"average; {ctx['rows']} apikey rows; wrk -t{args.threads} -c{args.connections}; "
         f"gateway workers {args.workers}; {args.keys} keys per cold row.", "",
         "| round | row | GATEWAY_PG_BATCH_MAX | requests/s | x cached | p50 ms | p99 ms "
         "| PG round trips per key | lookups batched | statuses | repeats |",
         "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    cached = {(r, g): rate(res) for r, row, g, res, _ in rows if row == "cached"}
    ratios = {}
    for r, row, g, res, d in rows:
        rq = rate(res)
        x = rq / cached[(r, g)] if row != "cached" and cached[(r, g)] else None
        if x is not None:
            ratios.setdefault((row, g), []).append(x)
        sent = res["requests"] - res.get("repeats", 0)
        per = f"{d['pg_queries'] / sent:.3f}" if d and sent else ""
        bat = f"{d['pg_batched']}" if d else ""
        st = ", ".join(f"{k}: {v}" for k, v in sorted(res["status"].items()))
        lat = res["latency_us"]
        L.append(f"| {r + 1} | {row} | {'64' if g == 'batch' else '1'} | {rq:,.0f} | "
                 f"{'' if x is None else f'{x:.2f}x'} | {lat['p50'] / 1000:.2f} | "
                 f"{lat['p99'] / 1000:.2f} | {per} | {bat} | {st} | {res.get('repeats', '')} |")
    L += ["", "Medians over the rounds, as a share of the same gateway's cached-key requests/s "
          "(goal: cold distinct keys at least 0.25x):", ""]
    for (row, g), xs in sorted(ratios.items()):
        L.append(f"- {row}, GATEWAY_PG_BATCH_MAX={'64' if g == 'batch' else '1'}: "
                 f"{statistics.median(xs):.2f}x")
    L += ["", "Command: `" + "/usr/bin/python3 bench/cold_keys_bench.py "
          + " ".join(shlex.quote(a) for a in sys.argv[1:]) + "`", ""]
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
