#!/usr/bin/python3
"""Gateway scale (issue 7): requests/s and p99 against connections, and against
the number of distinct cached credentials with the gateway's resident memory.

    /usr/bin/python3 bench/scale_bench.py [--duration 8] [--threads 2]
        [--connections 10,50,200,1000] [--counts 1,10000,1000000]
        [--warm-timeout 300] [--out FILE] [--dat FILE]

1. Starts PostgreSQL and Redis (tests/e2e/pcsupport); authsvc migrates the
   schema and one user signs up (the owner of the keys); authsvc stops. The
   open-files limit is raised to its hard limit (wrk and the gateway inherit it).
   max(--counts) API keys go into "apikey" with one INSERT ... SELECT over
   generate_series, the key hashes computed in SQL (base64url(sha256(key)),
   Better Auth's storage); key i is "oc_" + a per-run random 20-letter salt +
   i written in 44 letters, so this script knows every key without reading it back.
2. Connections: the demo upstream (2 threads) and one gateway
   (GATEWAY_WORKERS=2, access log off); the hot key (key 1), 1 s of warm-up,
   then wrk -t2 -d8s at each connection count.
3. Credentials: for each count N a fresh gateway (L1_MAX_ENTRIES = 1.5 N +
   1000, L1_TTL_SECONDS 3600 so nothing ages out during the run); a first pass sends
   every key in order (wrk with a sequential table, stopped as soon as /_stats
   shows N entries in L1), then wrk -t2 -c50 -d8s picks keys uniformly at random
   among the N (bench/gateway.lua). VmRSS of the gateway from /proc before the
   pass, after it and after the measured run.

Prints a markdown report (and writes it to --out); --dat writes
"label<TAB>requests/s<TAB>p99 ms" lines for bench/plot.gp. Every step is bounded
in time; every process this script starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
import pcsupport as H  # noqa: E402
from gateway_bench import (Gateway, fmt_counts, Meter, Upstream, http_get, random_letters,  # noqa: E402
                           run_wrk, summarize_run, tool_version, write_dat, write_table)
from signin_storm import git_rev, machine  # noqa: E402

KEY_DIGITS = 44
DIGIT_LETTERS = "ABCDEFGHIJ"

# Sequential first pass: thread t of T sends lines t, t+T, t+2T, ... in order,
# then starts over (the bench stops wrk by SIGINT once /_stats shows every key
# in L1; a thread stopping itself would drop its requests in flight). Requests
# are formatted lazily (a million formatted requests per thread cost memory).
SEQ_LUA = r"""
local path_ = os.getenv("BENCH_TABLE")
local header = os.getenv("BENCH_HEADER")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local threads = {}
local count = 0
function setup(thread)
   count = count + 1
   thread:set("thread_no", count)
   table.insert(threads, thread)
end
local vals = {}
local n, i = 0, 0
function init(args)
   local k = 0
   for line in io.lines(path_) do
      k = k + 1
      if (k - thread_no) % nthreads == 0 then
         n = n + 1
         vals[n] = line:match("\t(.*)$")
      end
   end
end
function request()
   i = i + 1
   if i > n then
      i = 1         -- again from the start until the bench stops wrk (L1 hits)
   end
   local h = {}
   h[header] = vals[i]
   return wrk.format("GET", "/bench", h)
end
"""


def key_of(salt: str, i: int) -> str:
    return "oc_" + salt + str(i).zfill(KEY_DIGITS).translate(str.maketrans("0123456789",
                                                                             DIGIT_LETTERS))


def insert_keys_sql(conn, user_id: str, salt: str, n: int) -> None:
    key = (f"'oc_' || '{salt}' || translate(lpad(g::text, {KEY_DIGITS}, '0'), '0123456789', "
           f"'{DIGIT_LETTERS}')")
    with conn.cursor() as cur:
        cur.execute(
            'insert into "apikey" (id, "configId", "referenceId", key, prefix, start, enabled, '
            '"rateLimitEnabled", "requestCount", "createdAt", "updatedAt") '
            "select 'bk' || g, 'default', %s, "
            f"rtrim(translate(encode(sha256(convert_to({key}, 'UTF8')), 'base64'), '+/', '-_'), '='), "
            f"'oc_', left({key}, 6), true, false, 0, now(), now() "
            "from generate_series(1, %s) as g", (user_id, n))
        cur.execute('analyze "apikey"')


def vmrss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_nofile() -> tuple:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", default="10,50,200,1000")
    ap.add_argument("--counts", default="1,10000,1000000",
                    help="distinct cached credentials (default 1,10000,1000000)")
    ap.add_argument("--count-connections", type=int, default=50,
                    help="connections of the credential runs (default 50)")
    ap.add_argument("--warm-timeout", type=int, default=600,
                    help="bound of each sequential first pass, seconds (default 600; the "
                         "1,000,000 pass took over 300 s on a 2-core machine)")
    ap.add_argument("--out")
    ap.add_argument("--dat")
    args = ap.parse_args()
    conns = [int(x) for x in args.connections.split(",") if x]
    counts = [int(x) for x in args.counts.split(",") if x]
    if not (1 <= args.duration <= 120 and conns and counts and min(counts) >= 1
            and min(conns) >= args.threads >= 1):
        ap.error("bad arguments")
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk not found (apt-get install wrk; bench/run.sh does that)")

    def _term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _term)
    nofile = raise_nofile()
    if nofile[0] < max(conns) * 2 + 256:
        raise SystemExit(f"open-files limit {nofile[0]} too low for {max(conns)} connections")

    ctx = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "rev": git_rev(), "build": str(H.build_dir()), "nofile": nofile[0],
           "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "wrk_version": tool_version(["wrk", "-v"], r"wrk (\S+)"),
           "commands": ["BENCH_ONLY=scale sh bench/run.sh",
                        "/usr/bin/python3 bench/scale_bench.py "
                        + " ".join(shlex.quote(a) for a in sys.argv[1:])],
           "conn_rows": [], "count_rows": []}
    t0 = time.monotonic()
    meter = Meter()
    work = Path(tempfile.mkdtemp(prefix="pc-scalebench-"))
    secret = "bench-" + os.urandom(24).hex()
    salt = random_letters(20)
    try:
        with H.Postgres() as pg, H.Redis() as rd, contextlib.ExitStack() as stack:
            db = pg.create_database("authsvc")
            print("== setup: PostgreSQL, Redis, authsvc (sign-up), keys", flush=True)
            with H.Authsvc({"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
                            "RATE_LIMIT_ENABLED": "false"}) as svc:
                client = H.ApiClient(svc, timeout=60)
                user = client.sign_up(H.unique_email("scale"), "Scale-" + os.urandom(9).hex(),
                                      "Scale Bench")
                client.close()
            ti = time.monotonic()
            conn = pg.connect("authsvc")
            try:
                insert_keys_sql(conn, user.id, salt, max(counts))
            finally:
                conn.close()
            ctx["insert_s"] = time.monotonic() - ti
            print(f"   {max(counts):,} keys inserted in {ctx['insert_s']:.1f} s", flush=True)
            up = Upstream(work, 2)
            stack.callback(up.stop)
            base_env = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
                        "UPSTREAM_URL": up.url, "GATEWAY_WORKERS": "2", "LOG_LEVEL": "warn",
                        "GATEWAY_ACCESS_LOG": "false"}
            meter.groups = {"upstream": up.proc.pid, "PostgreSQL": pg.proc.pid,
                            "Redis": rd.proc.pid}

            class A:
                threads, duration = args.threads, args.duration
                connections = 50

            def measure(gw, table, c, label):
                A.connections = c
                c0 = meter.snapshot()
                argv, w = run_wrk(wrk, f"http://127.0.0.1:{gw.port}/bench", table, "x-api-key",
                                  A, 7)
                usage = Meter.diff(c0, meter.snapshot())
                if gw.proc.poll() is not None:
                    raise SystemExit(f"gateway died during {label}: {gw.death_report()}")
                s = summarize_run({"wrk": w, "usage": usage})
                print(f"   {label}: {s['rps']:,.0f} req/s, p50 {s['p50']:.2f} ms, p99 "
                      f"{s['p99']:.2f} ms, non-200 {s['non200'] or 'none'}, socket errors "
                      f"{s['sock_errors'] or 'none'}", flush=True)
                return argv, s

            # -- connections, hot key
            hot = work / "hot.tsv"
            write_table(hot, [key_of(salt, 1)])
            gw = Gateway(work, base_env, "gateway-conn")
            meter.groups["gateway"] = gw.proc.pid
            st, body = http_get(gw.port, "/bench", {"x-api-key": key_of(salt, 1)})
            if st != 200:
                raise SystemExit(f"gateway refused key 1 ({st}): {body[:300]!r}")
            A.duration = 1
            measure(gw, hot, 50, "warm-up")
            A.duration = args.duration
            for c in conns:
                argv, s = measure(gw, hot, c, f"{c} connections")
                ctx["conn_rows"].append((c, s))
                if c == conns[0]:
                    ctx["commands"].append("BENCH_TABLE=<hot key> BENCH_HEADER=x-api-key "
                                           + " ".join(shlex.quote(a) for a in argv).replace(
                                               str(gw.port), "<gateway port>")
                                           + "    # -c " + ",".join(map(str, conns)))
            ctx["conn_rss"] = vmrss_kib(gw.proc.pid)
            gw.stop()

            # -- distinct credentials
            for n in counts:
                print(f"== {n:,} distinct credentials", flush=True)
                table = work / f"keys-{n}.tsv"
                write_table(table, [key_of(salt, i) for i in range(1, n + 1)])
                env = dict(base_env, L1_MAX_ENTRIES=str(n + n // 2 + 1000), L1_TTL_SECONDS="3600")
                gw = Gateway(work, env, f"gateway-{n}")
                meter.groups["gateway"] = gw.proc.pid
                rss0 = vmrss_kib(gw.proc.pid)
                # Sequential first pass over every key.
                lua = work / "seq.lua"
                lua.write_text(SEQ_LUA)
                wc = min(50, n)
                wt = min(args.threads, wc)
                wargv = [wrk, "-t", str(wt), "-c", str(wc), "-d", f"{args.warm_timeout}s",
                         "--timeout", "10s", "-s", str(lua), f"http://127.0.0.1:{gw.port}/bench"]
                tw = time.monotonic()
                p = subprocess.Popen(wargv, env=dict(os.environ, BENCH_TABLE=str(table),
                                                     BENCH_HEADER="x-api-key",
                                                     BENCH_THREADS=str(wt)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    entries, last_change, last = 0, time.monotonic(), -1
                    while True:
                        entries = gw.stats().get("l1_entries", 0)
                        now = time.monotonic()
                        if entries != last:
                            last, last_change = entries, now
                        if entries >= n or p.poll() is not None or now - last_change > 5 \
                                or now - tw > args.warm_timeout:
                            break
                        time.sleep(0.2)
                finally:
                    if p.poll() is None:
                        p.send_signal(signal.SIGINT)     # wrk stops and prints at SIGINT
                        try:
                            p.wait(15)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            p.wait(5)
                warm_s = time.monotonic() - tw
                st = gw.stats()
                rss1 = vmrss_kib(gw.proc.pid)
                print(f"   first pass: {warm_s:.1f} s, l1_entries {st.get('l1_entries'):,}, "
                      f"pg_queries {st.get('pg_queries'):,}, VmRSS {rss1 / 1024:.1f} MiB",
                      flush=True)
                argv, s = measure(gw, table, args.count_connections, f"{n:,} keys, uniform")
                st2 = gw.stats()
                rss2 = vmrss_kib(gw.proc.pid)
                ctx["count_rows"].append({"n": n, "s": s, "warm_s": warm_s, "rss0": rss0,
                                          "warm_entries": st.get("l1_entries", 0),
                                          "rss1": rss1, "rss2": rss2,
                                          "entries": st2.get("l1_entries", 0),
                                          "misses": st2.get("pg_queries", 0) - st.get("pg_queries", 0)
                                          + st2.get("l2_hits", 0) - st.get("l2_hits", 0),
                                          "distinct": s["distinct"]})
                if n == counts[0]:
                    ctx["commands"].append(" ".join(shlex.quote(a) for a in wargv).replace(
                        str(gw.port), "<gateway port>") + "    # sequential first pass")
                    ctx["commands"].append("BENCH_TABLE=<N keys> BENCH_HEADER=x-api-key "
                                           + " ".join(shlex.quote(a) for a in argv).replace(
                                               str(gw.port), "<gateway port>"))
                gw.stop()
                table.unlink()
            stack.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    L = [f"# Gateway scale: connections and cached credentials, {ctx['date']}", ""]
    L.append(f"Machine: {ctx['machine']}. Source: {ctx['rev']}. Binaries: `{ctx['build']}`; wrk "
             f"{ctx['wrk_version']}. Gateway `GATEWAY_WORKERS=2`, `GATEWAY_ACCESS_LOG=false`, "
             f"demo upstream 2 threads, PostgreSQL 15 and Redis, all on this machine over "
             f"loopback; open-files limit {ctx['nofile']}. {max(counts):,} keys inserted by one "
             f"INSERT ... SELECT (hashes by sha256() in SQL) in {ctx['insert_s']:.1f} s. "
             f"Load average before: {ctx['load']}. One run of each (no rounds).")
    L.append("")
    L.append(f"## Connections (cached API key, wrk -t{args.threads} -d{args.duration}s)")
    L.append("")
    L.append("| connections | requests/s | p50 | p99 | max | gateway CPU per request | non-200 "
             "| socket errors |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, s in ctx["conn_rows"]:
        L.append(f"| {c:,} | **{s['rps']:,.0f}** | {s['p50']:.2f} ms | **{s['p99']:.2f} ms** | "
                 f"{s['max']:.2f} ms | {s['us_per_req']['gateway']:.1f} µs | "
                 f"{fmt_counts(s['non200'])} | {fmt_counts(s['sock_errors'])} |")
    L.append("")
    L.append(f"Gateway VmRSS after the connection runs: {ctx['conn_rss'] / 1024:.1f} MiB. "
             "Requests/s counts 200 answers only. A 503 here is the gateway's `UPSTREAM_BUSY` "
             "(gateway/proxy.c): each worker keeps at most `UPSTREAM_POOL` (default 1024) "
             "requests in flight to one upstream and refuses the rest at once, so with "
             "`GATEWAY_WORKERS=2` more than about 512 connections get some 503s by design; "
             "p50/p99 include those fast refusals.")
    L.append("")
    L.append(f"## Distinct cached credentials (wrk -t{args.threads} -c{args.count_connections} "
             f"-d{args.duration}s, keys uniform)")
    L.append("")
    L.append("| credentials | requests/s | p50 | p99 | distinct keys sent | first pass | L1 entries "
             "| L1 misses in the run | VmRSS at start | after first pass | after run "
             "| per credential |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = ctx["count_rows"][0]["rss2"] if ctx["count_rows"] else 0
    for r in ctx["count_rows"]:
        s = r["s"]
        per = ((r["rss2"] - base) * 1024 / (r["n"] - ctx["count_rows"][0]["n"])
               if r["n"] > ctx["count_rows"][0]["n"] else float("nan"))
        L.append(f"| {r['n']:,} | **{s['rps']:,.0f}** | {s['p50']:.2f} ms | **{s['p99']:.2f} ms** | "
                 f"{r['distinct']:,} | {r['warm_s']:.1f} s"
                 + ("" if r["warm_entries"] >= r["n"] else
                    f" (**bound hit: {r['warm_entries']:,} in L1**)")
                 + f" | {r['entries']:,} | {r['misses']:,} | "
                 f"{r['rss0'] / 1024:.1f} MiB | {r['rss1'] / 1024:.1f} MiB | "
                 f"**{r['rss2'] / 1024:.1f} MiB** | "
                 + ("–" if per != per else f"{per:,.0f} B") + " |")
    L.append("")
    L.append("Each count runs on a fresh gateway process (L1_MAX_ENTRIES = count x 1.5 + 1000, "
             "L1_TTL_SECONDS 3600 s). **First pass**: every key sent once, in order, by wrk (a sequential "
             "table, stopped when `/_stats` showed every key in L1); keys already in Redis from "
             "an earlier count's pass were filled from Redis, the rest from PostgreSQL. "
             "**L1 misses in the run**: Redis hits + PostgreSQL queries during the measured "
             "run (0 means every request was answered from L1). **Per credential**: VmRSS "
             "after the run minus the 1-credential gateway's, over the extra credentials "
             "(L1 entry, hash table slot and allocator overhead). "
             "In the uniform run every request picks one of the N keys with equal probability, "
             "the worst case for the CPU caches (no hot set).")
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```sh")
    L.extend(ctx["commands"])
    L.append("```")
    L.append("")
    L.append(f"Whole run: {time.monotonic() - t0:.0f} s.")
    L.append("")
    text = "\n".join(L)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    write_dat(args.dat, [(f"gateway, {c} conns", s["rps"], s["p99"]) for c, s in ctx["conn_rows"]]
              + [(f"gateway, {r['n']:,} key" + ("s" if r["n"] > 1 else ""), r["s"]["rps"], r["s"]["p99"])
                 for r in ctx["count_rows"]])
    print()
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        H.kill_all()
        sys.exit(130)
