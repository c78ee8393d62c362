#!/usr/bin/python3
"""Better Auth beside authsvc and the gateway (issue 7, "the peer with auth"):
the same session checked three ways, on one database and one machine.

    /usr/bin/python3 bench/peer_bench.py [--duration 10] [--rounds 3]
        [--connections 50] [--threads 2] [--out FILE] [--dat FILE]

1. Starts PostgreSQL and Redis (tests/e2e/pcsupport); authsvc migrates the
   schema and starts. Better Auth 1.7.25 (tests/e2e/interop/install.sh, npm,
   cached) starts as users run it: `node server.mjs`, one Node process, on the
   same database with the same BETTER_AUTH_SECRET. One user signs up on Better
   Auth; its session cookie is used everywhere.
2. Starts the demo upstream (2 threads) and the gateway (GATEWAY_WORKERS=2,
   UPSTREAM_URL, access log off) on loopback.
3. Rounds (--rounds, default 3) of three scenarios back to back, each
   `wrk -t2 -c50 -d10s -s bench/gateway.lua` with the cookie:
   Better Auth's GET /api/auth/get-session, authsvc's GET /api/auth/get-session,
   and GET /bench through the gateway (the session route: the gateway
   authenticates the cookie, L1 after the first request, and proxies to the
   upstream). One second of warm-up each first.

Prints a markdown report (and writes it to --out): medians of requests/s, p50,
p99, ratios against Better Auth, CPU per request of each server, where the
machine's CPU went. --dat writes "label<TAB>requests/s<TAB>p99 ms" lines for
bench/plot.gp. Every step is bounded in time; every process this script starts
is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
import pcsupport as H  # noqa: E402
from gateway_bench import (Gateway, Meter, Upstream, http_get, med, run_wrk,  # noqa: E402
                           summarize_run, tool_version, write_dat, write_table)
from signin_storm import git_rev, machine  # noqa: E402

INTEROP = REPO / "tests" / "e2e" / "interop"

SCENARIOS = [
    # id, label, target, path
    ("ba", "Better Auth 1.7.25 (Node), GET /api/auth/get-session", "ba", "/api/auth/get-session"),
    ("authsvc", "authsvc, GET /api/auth/get-session", "authsvc", "/api/auth/get-session"),
    ("gw_session", "gateway, session cookie, GET /bench (proxied)", "gateway", "/bench"),
]


def node_env(extra: dict) -> dict:
    drop = set(H.AUTHSVC_ENV_VARS) | {"NODE_ENV", "TEST", "NODE_OPTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.setdefault("TZ", "UTC")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def install_better_auth() -> str:
    for t in ("node", "npm"):
        if shutil.which(t) is None:
            raise SystemExit(f"{t} not found: the peer bench needs Node.js (>= 20) and npm")
    r = H.run_bounded(["sh", str(INTEROP / "install.sh")], env=node_env({}), timeout=600)
    out = r.stdout.decode(errors="replace").strip().splitlines()
    if r.returncode != 0 or not out:
        raise SystemExit(f"tests/e2e/interop/install.sh failed ({r.returncode}):\n"
                         f"{r.stderr.decode(errors='replace')[-3000:]}")
    return out[-1].strip()


class BetterAuth:
    """`node server.mjs` from the install directory; waits for `ready <port>`."""

    def __init__(self, npm_dir: str, workdir: Path, db: str, secret: str):
        self.port = H.free_port()
        self.host = "127.0.0.1"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {"DATABASE_URL": db, "BETTER_AUTH_SECRET": secret,
                    "BETTER_AUTH_URL": self.base_url, "PORT": str(self.port)}
        self.argv = ["node", "server.mjs"]
        self.proc = H.Proc(self.argv, env=node_env(self.env), cwd=npm_dir,
                           stdout=workdir / "better-auth.out", stderr=workdir / "better-auth.err",
                           name="better-auth")

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"better-auth exited with {self.proc.returncode}:\n"
                                   f"{H.tail(workdir / 'better-auth.err', 3000)}")
            return f"ready {self.port}" in H.tail(workdir / "better-auth.out", 2000)
        H.wait_until(ready, 30, interval=0.05, what="Better Auth 'ready'")
        # Better Auth checks the schema on its first request and exits on a mismatch.
        st, body = http_get(self.port, "/api/auth/ok", timeout=20)
        if st != 200:
            raise SystemExit(f"Better Auth /api/auth/ok answered {st} {body[:200]!r}:\n"
                             f"{H.tail(workdir / 'better-auth.err', 3000)}")

    def stop(self):
        self.proc.stop(signal.SIGTERM, timeout=10)


def report(ctx: dict, args) -> str:
    runs = ctx["runs"]
    M = {sid: {k: med([r[k] for r in rs]) for k in ("rps", "p50", "p99")}
         for sid, rs in runs.items()}
    for sid, rs in runs.items():
        M[sid]["us"] = {k: med([r["us_per_req"][k] for r in rs]) for k in rs[0]["us_per_req"]}
        M[sid]["non200"] = sum(sum(r["non200"].values()) for r in rs)
        M[sid]["other"] = med([r["other"] for r in rs])
    ba = M["ba"]
    own = {"ba": "better-auth", "authsvc": "authsvc", "gw_session": "gateway"}
    L = [f"# Better Auth beside authsvc and the gateway, {ctx['date']}", ""]
    L.append(f"Machine: {ctx['machine']}. Source: {ctx['rev']}. Binaries: `{ctx['build']}`; "
             f"Better Auth 1.7.25 on Node {ctx['node_version']} (`tests/e2e/interop/server.mjs`: "
             f"pg pool, email+password, bearer plugin, rate limit off; one Node process, as "
             f"users run it); wrk {ctx['wrk_version']}. One PostgreSQL database for all three "
             f"(authsvc migrated it, Better Auth accepted its schema), one user signed up on "
             f"Better Auth, its session cookie sent by every request. authsvc and the gateway "
             f"with their defaults (`GATEWAY_WORKERS=2`, L1_TTL_SECONDS 60 s) except "
             f"`RATE_LIMIT_ENABLED=false` and `GATEWAY_ACCESS_LOG=false`. wrk `-t{args.threads} "
             f"-c{args.connections} -d{args.duration}s`, {args.rounds} rounds of the three "
             f"back to back; medians. Load average before: {ctx['load']}.")
    L.append("")
    L.append("| scenario | requests/s | p50 | p99 | rps / Better Auth | p99 / Better Auth "
             "| server CPU per request | PostgreSQL + Redis CPU per request | non-200 |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sid, label, *_ in SCENARIOS:
        m = M[sid]
        srv = m["us"][own[sid]] + (m["us"]["upstream"] if sid == "gw_session" else 0.0)
        L.append(f"| {label} | **{m['rps']:,.0f}** | {m['p50']:.2f} ms | {m['p99']:.2f} ms | "
                 f"**{m['rps'] / ba['rps']:.2f}x** | {m['p99'] / ba['p99']:.2f}x | "
                 f"{srv:.1f} µs | {max(0.0, m['us']['PostgreSQL'] + m['us']['Redis']):.1f} µs | "
                 f"{m['non200']} |")
    L.append("")
    L.append("Requests/s counts 200 answers over wrk's duration; p50/p99 are wrk's. **Server "
             "CPU per request**: CPU time of that server's processes over the run divided by "
             "the requests completed (for the gateway row, gateway + demo upstream, since the "
             "gateway proxies every request to it). The gateway row also pays for a second HTTP "
             "hop (to the demo upstream) that the other two do not have; what it saves is the "
             "session lookup, answered from its in-process L1 after the first request.")
    L.append("")
    L.append("## Every run")
    L.append("")
    L.append("| round | scenario | requests/s | p50 | p99 | rps / Better Auth (same round) "
             "| other processes (cores) |")
    L.append("|---:|---|---:|---:|---:|---:|---:|")
    for i in range(args.rounds):
        for sid, label, *_ in SCENARIOS:
            r = runs[sid][i]
            L.append(f"| {i + 1} | {label} | {r['rps']:,.0f} | {r['p50']:.2f} ms | "
                     f"{r['p99']:.2f} ms | {r['rps'] / runs['ba'][i]['rps']:.2f}x | "
                     f"{r['other']:.2f} |")
    L.append("")
    L.append("\"Other processes\": CPU the machine spent outside everything this bench started "
             "(well above 0.2 cores means the run was disturbed).")
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```sh")
    L.extend(ctx["commands"])
    L.append("```")
    L.append("")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the markdown report here")
    ap.add_argument("--dat", help="write label/requests-per-s/p99 lines here (for plot.gp)")
    args = ap.parse_args()
    if not (1 <= args.duration <= 120 and 1 <= args.rounds <= 20
            and args.connections >= args.threads >= 1):
        ap.error("bad arguments")
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk not found (apt-get install wrk; bench/run.sh does that)")

    def _term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _term)

    print("== installing Better Auth (npm, cached)", flush=True)
    npm_dir = install_better_auth()
    ctx = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "rev": git_rev(), "build": str(H.build_dir()),
           "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "wrk_version": tool_version(["wrk", "-v"], r"wrk (\S+)"),
           "node_version": tool_version(["node", "--version"], r"v(\S+)"),
           "commands": ["BENCH_ONLY=peer sh bench/run.sh",
                        "/usr/bin/python3 bench/peer_bench.py "
                        + " ".join(shlex.quote(a) for a in sys.argv[1:])],
           "runs": {sid: [] for sid, *_ in SCENARIOS}}
    t0 = time.monotonic()
    meter = Meter()
    work = Path(tempfile.mkdtemp(prefix="pc-peerbench-"))
    secret = "bench-" + os.urandom(24).hex()
    try:
        with H.Postgres() as pg, H.Redis() as rd, contextlib.ExitStack() as stack:
            db = pg.create_database("authsvc")
            print("== authsvc (migrate, start), Better Auth on the same database", flush=True)
            svc = H.Authsvc({"DATABASE_URL": db, "REDIS_URL": rd.url,
                             "BETTER_AUTH_SECRET": secret, "RATE_LIMIT_ENABLED": "false"})
            stack.callback(svc.stop)
            ba = BetterAuth(npm_dir, work, db, secret)
            stack.callback(ba.stop)
            client = H.ApiClient(ba, timeout=60)
            user = client.sign_up(H.unique_email("peer"), "Peer-" + os.urandom(9).hex(),
                                  "Peer Bench")
            client.close()
            up = Upstream(work, 2)
            stack.callback(up.stop)
            gw_env = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
                      "UPSTREAM_URL": up.url, "GATEWAY_WORKERS": "2", "LOG_LEVEL": "warn",
                      "GATEWAY_ACCESS_LOG": "false"}
            gw = Gateway(work, gw_env, "gateway")
            stack.callback(gw.stop)
            meter.groups = {"better-auth": ba.proc.pid, "authsvc": svc.proc.pid,
                            "gateway": gw.proc.pid, "upstream": up.proc.pid,
                            "PostgreSQL": pg.proc.pid, "Redis": rd.proc.pid}
            ports = {"ba": ba.port, "authsvc": svc.port, "gateway": gw.port}
            # Sanity: every target knows the user behind the cookie.
            for sid, label, target, path in SCENARIOS:
                st, body = http_get(ports[target], path, {"Cookie": user.cookie})
                if st != 200:
                    raise SystemExit(f"{label}: {st} {body[:300]!r}")
                j = json.loads(body)
                uid = ((j or {}).get("user") or {}).get("id") if target != "gateway" else \
                    {k.lower(): v for k, v in (j.get("headers") or {}).items()}.get("x-user-id")
                if uid != user.id:
                    raise SystemExit(f"{label}: the answer does not name the user: {body[:300]!r}")
            table = work / "session.tsv"
            write_table(table, [user.cookie])

            class A:
                threads, connections, duration = args.threads, args.connections, args.duration

            def wrk_run(target, path, duration=None, seed=1):
                return run_wrk(wrk, f"http://127.0.0.1:{ports[target]}{path}", table, "Cookie", A,
                               seed, duration, path)

            for sid, label, target, path in SCENARIOS:
                wrk_run(target, path, duration=1)
            for rnd in range(args.rounds):
                for sid, label, target, path in SCENARIOS:
                    print(f"== round {rnd + 1}/{args.rounds}: {label} ...", flush=True)
                    c0 = meter.snapshot()
                    argv, w = wrk_run(target, path, seed=rnd + 2)
                    usage = Meter.diff(c0, meter.snapshot())
                    for p, name in ((ba.proc, "Better Auth"), (gw.proc, "gateway"),
                                    (svc.proc, "authsvc")):
                        if p.poll() is not None:
                            raise SystemExit(f"{name} died during {label} (rc {p.returncode})")
                    s = summarize_run({"wrk": w, "usage": usage})
                    s["us_per_req"] = {k: usage.get(k, 0.0) * usage["wall"] / max(1, s["requests"])
                                       * 1e6 for k in ("better-auth", "authsvc", "gateway",
                                                       "upstream", "PostgreSQL", "Redis")}
                    ctx["runs"][sid].append(s)
                    if rnd == 0:
                        ctx["commands"].append(
                            f"BENCH_TABLE=<cookie> BENCH_HEADER=Cookie BENCH_PATH={path} "
                            + " ".join(shlex.quote(a) for a in argv).replace(
                                str(ports[target]), f"<{target} port>") + f"    # {label}")
                    print(f"   {s['rps']:,.0f} req/s, p50 {s['p50']:.2f} ms, p99 "
                          f"{s['p99']:.2f} ms; non-200 {s['non200'] or 'none'}", flush=True)
            stack.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(ctx, args) + f"\nWhole run: {time.monotonic() - t0:.0f} s.\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    write_dat(args.dat, [(lab.split(",")[0] + (" session" if sid == "gw_session" else " get-session"),
                          med([r["rps"] for r in ctx["runs"][sid]]),
                          med([r["p99"] for r in ctx["runs"][sid]]))
                         for sid, lab, *_ in SCENARIOS])
    print()
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        H.kill_all()
        sys.exit(130)
