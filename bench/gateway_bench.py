#!/usr/bin/python3
"""Gateway throughput and latency beside nginx and the bare upstream (issues 3
and 4): what does authenticating every request cost on the hot path?

    /usr/bin/python3 bench/gateway_bench.py [--duration 10] [--rounds 3]
        [--connections 50] [--threads 2] [--keys 10000] [--zipf-s 1.1]
        [--cold-duration 5] [--with-access-log] [--out FILE] [--dat FILE]

1. Starts PostgreSQL and Redis (tests/e2e/pcsupport), migrates the schema and
   signs up one user through authsvc (for a real session cookie), then stops
   authsvc. Inserts API keys straight into "apikey" with one INSERT ... SELECT:
   a hot key without limits, one with a rate limit (rateLimitMax 1e9 per
   60 s, so it never refuses but runs the Redis script on every request) and
   --keys distinct keys for the Zipf scenario (no limits).
2. Starts the demo upstream (2 threads), nginx (worker_processes 2, its own
   config in a temp dir: plain reverse proxy, keep-alive upstream connections,
   access_log off) and the gateway (GATEWAY_WORKERS=2, UPSTREAM_URL: one
   catch-all route, GATEWAY_ACCESS_LOG=false like nginx) on loopback, and two
   more gateways like it with caches off: L1_MAX_ENTRIES=0 (every request asks
   Redis) and L1_MAX_ENTRIES=0 L2_ENABLED=false (every request asks
   PostgreSQL); with --with-access-log also one with its access log on.
3. Cold passes (Zipf keys only, --cold-duration each): one with every cache
   empty, then the gateway is restarted and a second pass runs with L1 empty
   but Redis filled. /_stats is read before, after and once a second.
4. One second of warm-up per fixed-credential scenario, then rounds
   (--rounds): every scenario back to back, wrk -t2 -c50 -d10s through
   bench/gateway.lua (the same script everywhere, so the client does the same
   work per request): the upstream directly, nginx, the gateway with the hot
   key (x-api-key), with the rate-limited key, with the session cookie, with
   the JWT, GET /_auth (forward auth) with the hot key, the hot key through
   the L1-off gateway and through the one with both caches off, with
   Zipf-chosen keys twice (the first run finds the keys expired, the second
   right after it finds them in L1). The report takes the median per scenario.

Prints a markdown report (and writes it to --out): requests/s, p50, p99, the
ratios gateway/nginx and the issue 7 goals (Redis path vs L1 path, session and
JWT vs API key), the CPU each process used per request, the cache counters,
where the machine's CPU went in each phase (including processes this script
did not start) and the exact commands. --dat writes the medians as
"label<TAB>requests/s<TAB>p99 ms" lines for bench/plot.gp. Every step is
bounded in time and every process this script starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
import pcsupport as H  # noqa: E402
from pcsupport import daemons  # noqa: E402
from signin_storm import CpuMeter, git_rev, machine  # noqa: E402

LUA = REPO / "bench" / "gateway.lua"
H_TICK = os.sysconf("SC_CLK_TCK")
L1_TTL_DEFAULT = 60                 # gateway/config.c; the bench leaves L1_TTL_SECONDS alone
KEY_PREFIX = "oc_"
STAT_KEYS = ("requests", "l1_hits", "l1_negative_hits", "l2_hits", "pg_queries", "pg_errors",
             "redis_errors", "revocations", "l1_flushes", "upstream_errors", "upstream_timeouts",
             "rate_limited", "usage_exceeded", "usage_flushes")

# Scenarios of a round, in the order they run. target: which server wrk hits;
# table: which credential table the script sends.
SCENARIOS = [
    # id, label, target, table, header
    ("direct", "upstream directly", "upstream", "hot", "x-api-key"),
    ("nginx", "nginx reverse proxy", "nginx", "hot", "x-api-key"),
    ("gw_key", "gateway, cached API key", "gateway", "hot", "x-api-key"),
    ("gw_key_rl", "gateway, API key + rate limit", "gateway", "rl", "x-api-key"),
    ("gw_session", "gateway, session cookie", "gateway", "session", "Cookie"),
    ("gw_jwt", "gateway, cached JWT (ES256)", "gateway", "jwt", "Authorization"),
    ("gw_auth", "gateway, /_auth forward auth (API key)", "gateway", "hot", "x-api-key"),
    ("gw_key_redis", "gateway, API key, L1 off (Redis)", "gateway_redis", "hot", "x-api-key"),
    ("gw_key_pg", "gateway, API key, both caches off (PostgreSQL)", "gateway_pg", "hot",
     "x-api-key"),
    # Zipf twice: the first run of a round finds the keys as the previous round
    # left them (more than L1_TTL_SECONDS ago with the default duration: expired); the
    # second comes straight after it, with L1 holding what the first one used.
    ("gw_zipf_first", "gateway, {keys} Zipf keys, first run of the round", "gateway", "zipf",
     "x-api-key"),
    ("gw_zipf", "gateway, {keys} Zipf keys, second run (L1 warm)", "gateway", "zipf",
     "x-api-key"),
]
# With --with-access-log: the hot key through a second gateway that writes its
# access log (GATEWAY_ACCESS_LOG=true, the default), right after gw_key.
ACCESS_LOG_SCENARIO = ("gw_key_log", "gateway, cached API key, access log on", "gateway_log",
                       "hot", "x-api-key")
# Scenarios that do not GET /bench: path and one more header. Forward auth
# names the route in X-Original-URI and gets an empty 200 (no upstream).
REQUEST = {"gw_auth": ("/_auth", "X-Original-URI: /bench")}
# The gateways besides the main one (target -> name, environment on top of the
# main one's): the same hot key with L1 off (Redis on every request), and with
# both caches off (PostgreSQL on every request; concurrent misses for the key
# still share one query).
CACHE_OFF_GATEWAYS = {
    "gateway_redis": ("gateway-l1off", {"L1_MAX_ENTRIES": "0"}),
    "gateway_pg": ("gateway-nocache", {"L1_MAX_ENTRIES": "0", "L2_ENABLED": "false"}),
}
# Labels in the --dat file (the chart has room for about 32 characters).
DAT_LABEL = {
    "direct": "upstream directly", "nginx": "nginx reverse proxy",
    "gw_key": "gateway, API key (L1)", "gw_key_log": "gateway, API key, access log",
    "gw_key_rl": "gateway, API key + rate limit", "gw_session": "gateway, session cookie",
    "gw_jwt": "gateway, JWT ES256 (L1)", "gw_auth": "gateway, /_auth, API key",
    "gw_key_redis": "gateway, API key, L1 off (Redis)", "gw_key_pg": "gateway, API key, PostgreSQL",
    "gw_zipf_first": "gateway, {keys} keys, expired", "gw_zipf": "gateway, {keys} Zipf keys",
}


def scenarios(args) -> list:
    out = list(SCENARIOS)
    if args.with_access_log:
        out.insert([sid for sid, *_ in out].index("gw_key") + 1, ACCESS_LOG_SCENARIO)
    return out


# The processes whose CPU is shown per phase (CpuMeter groups: each with its
# descendants). "wrk" is this script's finished children.
CPU_COLS = [("gateway", "gateway"), ("gateway_log", "gateway (access log on)"),
            ("gateway_redis", "gateway, L1 off"), ("gateway_pg", "gateway, caches off"),
            ("nginx", "nginx"),
            ("upstream", "demo upstream"),
            ("Redis", "Redis"), ("PostgreSQL", "PostgreSQL"), ("wrk / scrypt_rate", "wrk"),
            ("bench script", "bench script"), ("kernel irq", "(irq + softirq)"),
            ("steal", "steal"), ("other processes", "other processes"),
            ("machine_busy", "machine busy")]


class Meter(CpuMeter):
    """CpuMeter plus two machine-wide figures from /proc/stat: steal (the
    hypervisor ran someone else on our CPU; no process is charged for it, so it
    is taken out of "other processes") and irq + softirq (loopback networking
    mostly; shown for information only: this kernel has no
    IRQ_TIME_ACCOUNTING, so a tick spent in softirq is also charged to the
    process it interrupted, and the time is already in the other columns)."""

    def snapshot(self) -> dict:
        snap = super().snapshot()
        j = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        snap["kernel irq"] = (j[5] + j[6]) / H_TICK
        snap["steal"] = j[7] / H_TICK
        return snap

    @staticmethod
    def diff(a: dict, b: dict) -> dict:
        d = CpuMeter.diff(a, b)
        # CpuMeter summed every key as "ours"; recompute "other processes".
        ours = sum(v for k, v in d.items()
                   if k not in ("machine_busy", "machine_total", "other processes", "cores",
                                "wall", "kernel irq") and not k.startswith("authsvc:"))
        d["other processes"] = max(0.0, d["machine_busy"] - ours)
        return d


# ---------------------------------------------------------------------------
# Small HTTP helpers (http.client: no proxies from the environment, no pools)


class StaticJson:
    """A loopback HTTP server answering every GET with one JSON document (the
    JWKS authsvc published before it was stopped)."""

    def __init__(self, doc: str):
        import http.server
        import threading
        body = doc.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/jwks"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def http_get(port: int, path: str, headers: dict | None = None, timeout: float = 5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_http(port: int, path: str, proc, what: str, timeout: float = 20.0, ok=None):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start")
        try:
            st, body = http_get(port, path, {"Connection": "close"}, timeout=2)
            last = (st, body[:300])
            if (ok(st, body) if ok else st == 200):
                return body
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: no good answer on {path} within {timeout}s (last: {last})")
        time.sleep(0.05)


def clean_env(extra: dict) -> dict:
    """The inherited environment without anything authsvc or the gateway reads."""
    drop = set(H.AUTHSVC_ENV_VARS) | {
        "GATEWAY_LISTEN", "GATEWAY_WORKERS", "GATEWAY_ROUTES", "UPSTREAM_URL", "GATEWAY_LOG",
        "L1_MAX_ENTRIES", "L1_TTL_SECONDS", "L1_NEGATIVE_TTL_SECONDS", "L1_DEGRADED_TTL_SECONDS", "GATEWAY_PG_POOL",
        "GATEWAY_PG_TIMEOUT_MS", "GATEWAY_REDIS_TIMEOUT_MS", "UPSTREAM_POOL", "UPSTREAM_TIMEOUT_SECONDS",
        "GATEWAY_MAX_BODY_BYTES", "GATEWAY_MAX_HEADER_BYTES", "GATEWAY_PENDING_MAX", "L2_ENABLED"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.setdefault("TZ", "UTC")
    env.update({k: str(v) for k, v in extra.items()})
    return env


# ---------------------------------------------------------------------------
# Processes


# Upstream (tools/demo_upstream.c) and Gateway are the e2e suite's
# (tests/e2e/pcsupport/daemons.py); Gateway here only keeps the bench's calling
# convention and its longer stop timeout.
Upstream = daemons.Upstream


NGINX_CONF = """\
# Written by bench/gateway_bench.py (and bench/tls_bench.py, with TLS): a reverse proxy
# to the demo upstream.
worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;     # as the gateway: no cap per client connection
    upstream demo {{
        server 127.0.0.1:{up_port};
        keepalive 256;              # as the gateway's UPSTREAM_POOL
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port}{listen_extra} reuseport;{server_extra}
        location / {{
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, workdir: Path, upstream_port: int, workers: int):
        self.exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(self.exe).exists():
            raise SystemExit("nginx not found (apt-get install nginx-light; bench/run.sh does that)")
        self.dir = workdir / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = H.free_port()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(workers=workers, dir=self.dir, up_port=upstream_port,
                                               port=self.port, listen_extra="", server_extra=""))
        self.argv = [self.exe, "-p", str(self.dir), "-e", str(self.dir / "error.log"),
                     "-c", str(self.conf)]
        r = H.run_bounded([*self.argv, "-t"], timeout=30)
        if r.returncode != 0:
            raise SystemExit(f"nginx -t failed:\n{r.stderr.decode(errors='replace')}")
        self.proc = H.Proc(self.argv, env=clean_env({}), stdout=self.dir / "stdout",
                           stderr=self.dir / "stderr", name="nginx")
        wait_http(self.port, "/", self.proc, "nginx")

    def stop(self):
        self.proc.stop(signal.SIGTERM, timeout=10)


class Gateway(daemons.Gateway):
    """A gateway with env as given (UPSTREAM_URL, no routes file), ready when every
    worker sees PostgreSQL, Redis and the revocation feed."""

    def __init__(self, workdir: Path, env: dict, name: str):
        super().__init__(env, None, workdir=workdir, name=name)

    def stop(self, timeout: float = 15.0):
        return super().stop(timeout=timeout)


class StatsSampler:
    """/_stats once a second on one keep-alive connection, in a thread."""

    def __init__(self, port: int, interval: float = 1.0):
        self.port, self.interval = port, interval
        self.samples: list = []   # (seconds since start, stats)
        self._stop = threading.Event()
        self._t = None

    def _run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        t0 = time.monotonic()
        nxt = t0
        try:
            while not self._stop.is_set():
                try:
                    c.request("GET", "/_stats")
                    r = c.getresponse()
                    body = r.read()
                    if r.status == 200:
                        self.samples.append((time.monotonic() - t0, json.loads(body)))
                except (OSError, http.client.HTTPException, ValueError):
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                nxt += self.interval
                self._stop.wait(max(0.0, nxt - time.monotonic()))
        finally:
            c.close()

    def start(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def stop(self):
        self._stop.set()
        if self._t:
            self._t.join(10)


# ---------------------------------------------------------------------------
# Credentials


_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_letters(n: int) -> str:
    out = bytearray()
    while len(out) < n:
        for b in os.urandom(2 * n):
            if b < 208:                     # 4 * 52: no modulo bias
                out.append(_LETTERS[b % 52])
                if len(out) == n:
                    break
    return out.decode()


def new_key() -> str:
    """Better Auth's default shape: prefix + 64 letters."""
    return KEY_PREFIX + random_letters(64)


def insert_keys(conn, user_id: str, keys: list, *, rate_limit: bool = False) -> None:
    """One INSERT ... SELECT from arrays: stored as Better Auth stores keys
    (key = base64url-nopad(SHA-256(key))), no quota ("remaining" NULL)."""
    ids = [H.generate_id(32) for _ in keys]
    hashes = [H.token_hash(k) for k in keys]
    starts = [k[:6] for k in keys]
    rl = (", true, 60000, 1000000000" if rate_limit else ", false, NULL, NULL")
    with conn.cursor() as cur:
        cur.execute(
            'insert into "apikey" (id, "configId", "referenceId", key, prefix, start, enabled, '
            '"rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax", "requestCount", '
            '"createdAt", "updatedAt") '
            f"select i, 'default', %s, h, %s, s, true{rl}, 0, now(), now() "
            "from unnest(%s::text[], %s::text[], %s::text[]) as t(i, h, s)",
            (user_id, KEY_PREFIX, ids, hashes, starts))


def zipf_cdf(n: int, s: float) -> list:
    w = [k ** -s for k in range(1, n + 1)]
    total = sum(w)
    acc, out = 0.0, []
    for x in w:
        acc += x
        out.append(acc / total)
    out[-1] = 1.0
    return out


def write_table(path: Path, values: list, cdf: list | None = None) -> None:
    if cdf is None:
        cdf = [(i + 1) / len(values) for i in range(len(values))]
        cdf[-1] = 1.0
    with open(path, "w") as f:
        for c, v in zip(cdf, values):
            f.write(f"{c!r}\t{v}\n")


# ---------------------------------------------------------------------------
# wrk


def run_wrk(wrk: str, url: str, table: Path, header: str, args, seed: int,
            duration: int | None = None, path: str = "/bench", extra: str = "") -> tuple:
    """wrk with bench/gateway.lua: GET path (BENCH_PATH) with the table's header
    and, when given, one more fixed header ("Name: value")."""
    d = duration if duration is not None else args.duration
    argv = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{d}s",
            "--timeout", "10s", "-s", str(LUA), url]
    env = dict(os.environ, BENCH_TABLE=str(table), BENCH_HEADER=header, BENCH_PATH=path,
               BENCH_EXTRA_HEADER=extra, BENCH_SEED=str(seed))
    r = H.run_bounded(argv, env=env, timeout=d + 60)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^GATEWAY_RESULT (\{.*\})$", out, re.M)
    if r.returncode != 0 or not m:
        raise SystemExit(f"wrk failed ({r.returncode}):\n{out}\n{r.stderr.decode(errors='replace')}")
    return argv, json.loads(m.group(1))


def run_scenario(wrk: str, port: int, sid: str, table: Path, header: str, args, seed: int,
                 duration: int | None = None) -> tuple:
    """run_wrk on 127.0.0.1:port: GET /bench, or what REQUEST says for sid."""
    path, extra = REQUEST.get(sid, ("/bench", ""))
    return run_wrk(wrk, f"http://127.0.0.1:{port}{path}", table, header, args, seed, duration,
                   path, extra)


def write_dat(path, rows) -> None:
    """rows: (label, requests/s, p99 ms). One tab-separated line each, for plot.gp."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for label, rps, p99 in rows:
            f.write(f"{label.replace(chr(9), ' ')}\t{rps:.1f}\t{p99:.3f}\n")


def stats_diff(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0) - a.get(k, 0) for k in STAT_KEYS}


# ---------------------------------------------------------------------------
# Report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def summarize_run(res: dict) -> dict:
    w = res["wrk"]
    secs = w["duration_us"] / 1e6
    ok = w["status"].get("200", 0)
    e = {k: v for k, v in w["errors"].items() if v and k != "status"}
    u = res["usage"]
    wall = u["wall"]
    proc_cpu = {}
    for key in ("gateway", "gateway_log", *CACHE_OFF_GATEWAYS, "nginx", "upstream", "Redis",
                "PostgreSQL"):
        proc_cpu[key] = u.get(key, 0.0) * wall          # CPU seconds in the phase
    n = max(1, w["requests"])
    return {"rps": ok / secs if secs > 0 else 0.0, "ok": ok, "requests": w["requests"],
            "non200": {k: v for k, v in w["status"].items() if k != "200"}, "sock_errors": e,
            "p50": w["latency_us"]["p50"] / 1e3, "p90": w["latency_us"]["p90"] / 1e3,
            "p99": w["latency_us"]["p99"] / 1e3, "max": w["latency_us"]["max"] / 1e3,
            "bytes_per_req": w["bytes"] / n, "distinct": w.get("distinct", 0),
            "us_per_req": {k: v / n * 1e6 for k, v in proc_cpu.items()},
            "other": u.get("other processes", 0.0), "busy": u.get("machine_busy", 0.0)}


def fmt_counts(d: dict) -> str:
    nz = {k: v for k, v in d.items() if v}
    return ", ".join(f"{k}: {v}" for k, v in sorted(nz.items())) or "none"


def fmt_ratio(x: float) -> str:
    return "–" if x != x else f"{x:.2f}x"


def medians(runs: dict) -> dict:
    """sid -> the medians over its rounds (runs: sid -> one summary per round)."""
    return {sid: {"rps": med([r["rps"] for r in rs]), "p50": med([r["p50"] for r in rs]),
                  "p99": med([r["p99"] for r in rs]),
                  "bytes": med([r["bytes_per_req"] for r in rs]),
                  "other": med([r["other"] for r in rs]),
                  "us": {k: med([r["us_per_req"][k] for r in rs]) for k in rs[0]["us_per_req"]},
                  "non200": sum(sum(r["non200"].values()) for r in rs),
                  "sockerr": sum(sum(r["sock_errors"].values()) for r in rs)}
            for sid, rs in runs.items()}


# Issue 7's comparisons: (label, scenario, against, goal on the requests/s
# ratio or None, how the goal reads).
ISSUE7_RATIOS = [
    ("L1 off (Redis) / L1 path (cached API key)", "gw_key_redis", "gw_key", 0.50, ">= 0.50x"),
    ("both caches off (PostgreSQL) / L1 path", "gw_key_pg", "gw_key", None, ""),
    ("both caches off (PostgreSQL) / L1 off (Redis)", "gw_key_pg", "gw_key_redis", None, ""),
    ("session cookie / API key", "gw_session", "gw_key", 0.90, ">= 0.90x (within 10%)"),
    ("JWT / API key", "gw_jwt", "gw_key", 0.90, ">= 0.90x (within 10%)"),
    ("/_auth forward auth / proxied API key", "gw_auth", "gw_key", None, ""),
    ("/_auth forward auth / nginx", "gw_auth", "nginx", None, ""),
]


def issue7_section(M: dict, runs: dict, gw_stats: dict, rounds: int) -> list:
    L = ["## Issue 7: each cache layer, forward auth, and every route beside the API key", ""]
    L.append("| comparison (medians) | requests/s ratio | p99 ratio | requests/s ratio per round "
             "(same round) | goal |")
    L.append("|---|---:|---:|---|---|")
    for label, a, b, goal, reads in ISSUE7_RATIOS:
        r = M[a]["rps"] / M[b]["rps"] if M[b]["rps"] else float("nan")
        per = ", ".join(fmt_ratio(runs[a][i]["rps"] / runs[b][i]["rps"]) for i in range(rounds)
                        if runs[b][i]["rps"])
        verdict = "–" if goal is None else f"{reads}: **{'met' if r >= goal else 'not met'}**"
        L.append(f"| {label} | **{fmt_ratio(r)}** | {fmt_ratio(M[a]['p99'] / M[b]['p99'])} | "
                 f"{per} | {verdict} |")
    L.append("")

    def per_req(sid, key):
        ds = gw_stats.get(sid, [])
        n = sum(d["requests"] for d in ds)
        return sum(d[key] for d in ds) / n if n else float("nan")
    L.append(f"Per request, the L1-off gateway (`L1_MAX_ENTRIES=0`) counted "
             f"{per_req('gw_key_redis', 'l2_hits'):.2f} Redis hits and "
             f"{per_req('gw_key_redis', 'l1_hits'):.2f} L1 hits (1 and 0: every request a Redis "
             f"GET); the one with both "
             f"caches off (`L1_MAX_ENTRIES=0 L2_ENABLED=false`) sent "
             f"{per_req('gw_key_pg', 'pg_queries'):.2f} PostgreSQL queries per request: every "
             f"request misses, and the requests that miss while a query for the same key is "
             f"running wait for it instead of sending their own, so with 50 connections on one "
             f"key a query serves several requests. `/_auth` is the main gateway with the "
             f"cached hot key, route `/bench` in `X-Original-URI`: no upstream, an empty 200 "
             f"with the identity headers.")
    L.append("")
    return L


def report(ctx: dict, args) -> str:
    L = []
    SC = ctx["scenarios"]
    sc_label = {sid: label.format(keys=f"{args.keys:,}", s=args.zipf_s)
                for sid, label, *_ in SC}
    runs = ctx["runs"]          # sid -> list of summaries (one per round)
    M = medians(runs)
    ng = M["nginx"]
    target_of = {sid: target for sid, _label, target, *_ in SC}

    def proxy_us(sid):
        t = target_of[sid]
        return M[sid]["us"]["upstream" if t == "upstream" else t]

    L.append(f"# Gateway beside nginx and the bare upstream, {ctx['date']}")
    L.append("")
    L.append(f"Machine: {ctx['machine']}. Source: {ctx['rev']}. Binaries: `{ctx['build']}` "
             f"(gateway, demo-upstream); nginx {ctx['nginx_version']}; wrk {ctx['wrk_version']}. "
             f"Everything on this machine over loopback: wrk `-t{args.threads} "
             f"-c{args.connections} -d{args.duration}s`, the demo upstream (2 threads), nginx "
             f"(`worker_processes 2`, `access_log off`), the gateway (`GATEWAY_WORKERS=2`, "
             f"`GATEWAY_ACCESS_LOG=false` like nginx except in the row that says otherwise, "
             f"everything else default: L1_TTL_SECONDS 60 s, L1_MAX_ENTRIES 100000; the L1-off and "
             f"caches-off rows go through two more gateways like it with `L1_MAX_ENTRIES=0`, "
             f"and `L1_MAX_ENTRIES=0 L2_ENABLED=false`), PostgreSQL 15 and "
             f"Redis. "
             f"{args.rounds} rounds of every scenario back to back; tables show the median "
             f"per scenario. Cores busy in the second before the run: {ctx['pre_busy']:.2f} "
             f"of {os.cpu_count()}; load average {ctx['load']}.")
    L.append("")
    gk = M["gw_key"]
    rps_r = gk["rps"] / ng["rps"] if ng["rps"] else float("nan")
    p99_r = gk["p99"] / ng["p99"] if ng["p99"] else float("nan")
    L.append("## Issue 3: the gateway with a cached API key vs nginx")
    L.append("")
    pr_rps = [runs["gw_key"][i]["rps"] / runs["nginx"][i]["rps"] for i in range(args.rounds)]
    pr_p99 = [runs["gw_key"][i]["p99"] / runs["nginx"][i]["p99"] for i in range(args.rounds)]
    L.append(f"**Gateway (cached API key) / nginx, medians: requests/s {rps_r:.2f}x (goal >= 0.90x: "
             f"{'met' if rps_r >= 0.90 else 'not met'}), p99 {p99_r:.2f}x (goal <= 1.25x: "
             f"{'met' if p99_r <= 1.25 else 'not met'}).** Per round (the two measured back to "
             f"back): requests/s {', '.join(f'{x:.2f}x' for x in pr_rps)} (median "
             f"{med(pr_rps):.2f}x); p99 {', '.join(f'{x:.2f}x' for x in pr_p99)} (median "
             f"{med(pr_p99):.2f}x). CPU per request, gateway / nginx: "
             f"{M['gw_key']['us']['gateway'] / max(1e-9, ng['us']['nginx']):.2f}x.")
    L.append("")
    L.append("With a fixed number of connections (wrk keeps 50 requests in flight), latency is "
             "about connections / throughput, so a proxy that needs more CPU per request on a "
             "saturated 2-core machine shows both fewer requests/s and a higher p50/p99; the "
             "p99 goal cannot be judged apart from the throughput one in this setup.")
    L.append("")
    L.append("| scenario | requests/s | p50 | p99 | rps / nginx | p99 / nginx | proxy CPU per request "
             "| Redis + PostgreSQL CPU per request | upstream CPU per request | response bytes "
             "| non-200 | socket errors |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for sid, *_ in SC:
        m = M[sid]
        proxy = "–" if sid == "direct" else f"{proxy_us(sid):.1f} µs"
        L.append(f"| {sc_label[sid]} | **{m['rps']:,.0f}** | {m['p50']:.2f} ms | {m['p99']:.2f} ms | "
                 f"{fmt_ratio(m['rps'] / ng['rps'])} | {fmt_ratio(m['p99'] / ng['p99'])} | "
                 f"{proxy} | {m['us']['Redis'] + m['us']['PostgreSQL']:.1f} µs | "
                 f"{m['us']['upstream']:.1f} µs | {m['bytes']:.0f} | {m['non200']} | "
                 f"{m['sockerr']} |")
    L.append("")
    L.append("Requests/s counts 200 answers only, over wrk's measured duration; p50/p99 are "
             "wrk's, over all answers. **Proxy CPU per request**: CPU time of the nginx "
             "processes or the gateway process over the phase, divided by the requests wrk "
             "completed (for the direct run: the upstream's); Redis and PostgreSQL are in the "
             "CPU table below. On a 2-core machine shared by wrk, the proxy and the upstream, "
             "requests/s is bounded by the CPU all of them need per request, so this column "
             "is the steadier measure of what each proxy costs. Response bytes differ a little "
             "because the upstream echoes the headers it gets (nginx forwards the x-api-key "
             "header, the gateway replaces it with the identity headers).")
    L.append("")
    if ctx.get("access_log_lines") is not None:
        n_log = sum(d["requests"] for d in ctx["gw_stats"]["gw_key_log"])
        L.append(f"Access log on: the gateway wrote {ctx['access_log_lines']:,} lines to its "
                 f"GATEWAY_LOG file while it counted {n_log:,} requests in the measured runs "
                 f"(plus the warm-up and readiness probes).")
        L.append("")
    L.append("Gateway counters over the measured rounds (sums of `/_stats` differences): every "
             "request of the fixed-credential scenarios must be an L1 hit (on the L1-off "
             "gateway a Redis hit instead; with both caches off, PostgreSQL queries), and the "
             "rate-limited "
             "key must show no Redis errors (a Redis error or timeout lets a request with only "
             "a rate limit through without counting it, which would flatter that row).")
    L.append("")
    cols = ("requests", "l1_hits", "l2_hits", "pg_queries", "redis_errors", "rate_limited",
            "upstream_errors", "usage_flushes")
    L.append("| scenario | " + " | ".join(cols) + " |")
    L.append("|---|" + "---:|" * len(cols))
    for sid, ds in ctx["gw_stats"].items():
        L.append(f"| {sc_label[sid]} | " + " | ".join(f"{sum(d[c] for d in ds):,}" for c in cols)
                 + " |")
    L.append("")
    L.extend(issue7_section(M, runs, ctx["gw_stats"], args.rounds))
    # Issue 4
    z, h = M["gw_zipf"], M["gw_key"]
    L.append(f"## Issue 4: {args.keys:,} API keys, Zipf-distributed, vs one hot key and nginx")
    L.append("")
    L.append(f"Each request picks key k (rank 1..{args.keys:,}) with probability "
             f"k^-{args.zipf_s} / H (bench/gateway.lua, a precomputed table): the top key gets "
             f"{ctx['zipf_top'][0] * 100:.1f}% of requests, the top 10 {ctx['zipf_top'][1] * 100:.1f}%, "
             f"the top 100 {ctx['zipf_top'][2] * 100:.1f}%, the top 1,000 "
             f"{ctx['zipf_top'][3] * 100:.1f}%.")
    L.append("")
    zf = M["gw_zipf_first"]
    L.append("| comparison (medians) | requests/s ratio | p99 ratio |")
    L.append("|---|---:|---:|")
    L.append(f"| Zipf keys, L1 warm / hot key | **{fmt_ratio(z['rps'] / h['rps'])}** | "
             f"**{fmt_ratio(z['p99'] / h['p99'])}** |")
    L.append(f"| Zipf keys, L1 warm / nginx | **{fmt_ratio(z['rps'] / ng['rps'])}** | "
             f"**{fmt_ratio(z['p99'] / ng['p99'])}** |")
    L.append(f"| Zipf keys, first run of a round / hot key | {fmt_ratio(zf['rps'] / h['rps'])} | "
             f"{fmt_ratio(zf['p99'] / h['p99'])} |")
    L.append(f"| Zipf keys, first run of a round / nginx | {fmt_ratio(zf['rps'] / ng['rps'])} | "
             f"{fmt_ratio(zf['p99'] / ng['p99'])} |")
    L.append(f"| hot key / nginx | {fmt_ratio(h['rps'] / ng['rps'])} | "
             f"{fmt_ratio(h['p99'] / ng['p99'])} |")
    L.append("")
    expired = ctx["round_period"] > L1_TTL_DEFAULT
    L.append("Each round runs the Zipf keys twice. The **first run** comes about "
             f"{ctx['round_period']:.0f} s after the previous round's, "
             + ("later than L1_TTL_SECONDS " if expired else "sooner than L1_TTL_SECONDS ")
             + f"({L1_TTL_DEFAULT} s)"
             + (": every key starts it expired in L1, so each distinct key costs a Redis GET "
                "(the gateway keeps API keys there for L2_TTL_SECONDS, an hour) or, for a key never "
                "used before, one PostgreSQL query: keys coming back after a quiet minute. "
                if expired else
                ": the keys used before are still in L1 (with the default --duration, a round "
                "takes longer than L1_TTL_SECONDS and every key starts expired). ")
             + "The **second run** follows at once: L1 holds every key the first one used, and "
               "only keys drawn for the first time in the round cost a query, as under steady "
               "traffic (where, with L1_TTL_SECONDS 60 s, each key would cost at most one query a "
               "minute).")
    L.append("")
    L.append("Cache counters (from `GET /_stats`, differences over each phase) and the number of "
             "distinct keys wrk sent:")
    L.append("")
    L.append("| phase | duration | requests/s | p50 | p99 | distinct keys sent | requests (gateway) "
             "| L1 hits | L2 (Redis) hits | PostgreSQL queries | gateway CPU per request "
             "| Redis + PostgreSQL CPU per request | non-200 |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def zrow(label, secs, sm, d):
        us = sm["us_per_req"]
        return (f"| {label} | {secs} s | {sm['rps']:,.0f} | {sm['p50']:.2f} ms | {sm['p99']:.2f} ms | "
                f"{sm['distinct']:,} | {d['requests']:,} | {d['l1_hits']:,} | {d['l2_hits']:,} | "
                f"{d['pg_queries']:,} | {us['gateway']:.1f} µs | "
                f"{us['Redis'] + us['PostgreSQL']:.1f} µs | {sum(sm['non200'].values())} |")
    for ph in ctx["cold"]:
        L.append(zrow(ph["label"], args.cold_duration, ph["summary"], ph["stats"]))
    for i in range(len(runs["gw_zipf"])):
        L.append(zrow(f"round {i + 1}, first run" + (" (keys expired)" if expired else ""),
                      args.duration, runs["gw_zipf_first"][i], ctx["gw_stats"]["gw_zipf_first"][i]))
        L.append(zrow(f"round {i + 1}, second run (L1 warm)", args.duration, runs["gw_zipf"][i],
                      ctx["gw_stats"]["gw_zipf"][i]))
    L.append("")
    for ph in ctx["cold"]:
        L.append(f"`/_stats` before and after \"{ph['label']}\":")
        L.append("")
        L.append("| | " + " | ".join(STAT_KEYS) + " |")
        L.append("|---|" + "---:|" * len(STAT_KEYS))
        for name in ("before", "after"):
            L.append(f"| {name} | " + " | ".join(str(ph[name].get(k, 0)) for k in STAT_KEYS) + " |")
        L.append("")
    L.append("Per second during the cold passes (gateway counters, one `/_stats` a second):")
    L.append("")
    L.append("| second | " + " | ".join(f"{ph['label']}: req/s, L2 hits, PG queries"
                                          for ph in ctx["cold"]) + " |")
    L.append("|---:|" + "---|" * len(ctx["cold"]))
    tl = [ph["timeline"] for ph in ctx["cold"]]
    for i in range(max((len(t) for t in tl), default=0)):
        cells = []
        for t in tl:
            if i < len(t):
                a = t[i]
                cells.append(f"{a['requests']:,}, {a['l2_hits']:,}, {a['pg_queries']:,}")
            else:
                cells.append("")
        L.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("\"Cold\": the gateway, Redis and PostgreSQL were just started and no Zipf key had "
             "been used: every first use of a key goes L1 miss, Redis miss, one PostgreSQL query "
             "(concurrent misses for one key share it), then fills Redis and L1. \"L1 cold, "
             "Redis warm\": a new gateway process (empty L1) on the Redis the first pass filled. "
             "The PostgreSQL queries of the cold pass are at most one per distinct key: concurrent "
             "misses share one query.")
    L.append("")
    # Per round
    L.append("## Every run")
    L.append("")
    L.append("| round | scenario | requests/s | p50 | p99 | max | rps / nginx (same round) "
             "| p99 / nginx (same round) | other processes (cores) | machine busy |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i in range(args.rounds):
        n = runs["nginx"][i]
        for sid, *_ in SC:
            r = runs[sid][i]
            L.append(f"| {i + 1} | {sc_label[sid]} | {r['rps']:,.0f} | {r['p50']:.2f} ms | "
                     f"{r['p99']:.2f} ms | {r['max']:.1f} ms | {fmt_ratio(r['rps'] / n['rps'])} | "
                     f"{fmt_ratio(r['p99'] / n['p99'])} | {r['other']:.2f} | {r['busy']:.2f} |")
    L.append("")
    per_round = [runs["gw_key"][i]["rps"] / runs["nginx"][i]["rps"] for i in range(args.rounds)]
    per_round_p99 = [runs["gw_key"][i]["p99"] / runs["nginx"][i]["p99"] for i in range(args.rounds)]
    L.append(f"Gateway (cached key) / nginx per round: requests/s "
             f"{', '.join(f'{x:.2f}' for x in per_round)}; p99 "
             f"{', '.join(f'{x:.2f}' for x in per_round_p99)}.")
    L.append("")
    # CPU
    L.append("## Where the CPU went")
    L.append("")
    L.append(f"Cores in use (CPU seconds per wall second, from /proc; the machine has "
             f"{os.cpu_count()}), median over the rounds. \"other processes\" is everything on "
             f"the machine this bench did not start, plus kernel time no process is charged for "
             f"(softirq work in the idle task, for one): when it is well above 0.1-0.2 the run was "
             f"disturbed and the requests/s of that phase are low by about that share. \"steal\": "
             f"time the hypervisor gave our vCPUs to someone else (charged to no process, so not "
             f"in \"other processes\"). \"(irq + softirq)\" is for information and already inside "
             f"the other columns: this kernel has no IRQ_TIME_ACCOUNTING, so a tick spent in "
             f"softirq (loopback TCP delivery, mostly) is charged to the process it interrupted.")
    L.append("")
    cpu_cols = [c for c in CPU_COLS if c[0] != "gateway_log" or args.with_access_log]
    L.append("| phase | " + " | ".join(name for _, name in cpu_cols) + " |")
    L.append("|---|" + "---:|" * len(cpu_cols))
    for ph in ctx["cold"]:
        L.append(f"| {ph['label']} | " + " | ".join(f"{ph['usage'].get(k, 0.0):.2f}"
                                                   for k, _ in cpu_cols) + " |")
    for sid, *_ in SC:
        us = ctx["usage"][sid]
        L.append(f"| {sc_label[sid]} | " + " | ".join(
            f"{med([u.get(k, 0.0) for u in us]):.2f}" for k, _ in cpu_cols) + " |")

    L.append("")
    L.append("## Setup")
    L.append("")
    L.append("API keys are rows inserted into `apikey` with one `INSERT ... SELECT` (key = "
             "base64url(SHA-256(key)), `oc_` + 64 letters, enabled, `remaining` NULL): a hot "
             "key with `rateLimitEnabled` false, a key with `rateLimitEnabled` true, "
             "`rateLimitMax` 1,000,000,000 per `rateLimitTimeWindow` 60,000 ms (never refuses, "
             f"but the gateway runs its Lua script in Redis on every request), and "
             f"{args.keys:,} keys for the Zipf scenario. The session cookie comes from a sign-up "
             "through authsvc (stopped before the measurements). Every scenario uses the same wrk "
             "script, `bench/gateway.lua` (`GET /bench` with one header: `x-api-key`, "
             "`Cookie` for the session, `Authorization` for the JWT; nginx and the upstream get "
             "the hot key's header and ignore it; forward auth sends `GET /_auth` with the hot "
             "key and `X-Original-URI: /bench`).")
    L.append("")
    L.append("nginx configuration (the temp directory is replaced by `$DIR`):")
    L.append("")
    L.append("```nginx")
    L.append(ctx["nginx_conf"])
    L.append("```")
    L.append("")
    L.append("## Commands")
    L.append("")
    L.append("```sh")
    for c in ctx["commands"]:
        L.append(c)
    L.append("```")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------


def tool_version(argv, pattern) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, r.stdout + r.stderr)
        return m.group(1) if m else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every scenario (default 3)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--keys", type=int, default=10000, help="distinct keys of the Zipf scenario")
    ap.add_argument("--zipf-s", type=float, default=1.1, help="Zipf exponent (default 1.1)")
    ap.add_argument("--workers", type=int, default=2,
                    help="GATEWAY_WORKERS, nginx worker_processes and upstream threads (default 2)")
    ap.add_argument("--cold-duration", type=int, default=5,
                    help="seconds of each cold pass (default 5)")
    ap.add_argument("--with-access-log", action="store_true",
                    help="one more scenario: the hot key through a gateway with its access log on")
    ap.add_argument("--out", help="also write the markdown report here")
    ap.add_argument("--dat", help="write label/requests-per-s/p99 lines here (for plot.gp)")
    args = ap.parse_args()
    if not (1 <= args.duration <= 120 and 1 <= args.cold_duration <= 120
            and 1 <= args.rounds <= 20 and args.keys >= 2
            and args.connections >= args.threads >= 1 and args.zipf_s > 0):
        ap.error("bad arguments")

    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk not found (apt-get install wrk; bench/run.sh does that)")

    def _term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _term)

    ctx = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "rev": git_rev(), "build": str(H.build_dir()),
           "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "nginx_version": tool_version(["nginx", "-v"], r"nginx/(\S+)"),
           "wrk_version": tool_version(["wrk", "-v"], r"wrk (\S+)"),
           "commands": ["make bench    # builds, then: sh bench/run.sh"],
           "scenarios": scenarios(args),
           "runs": {sid: [] for sid, *_ in scenarios(args)},
           "usage": {sid: [] for sid, *_ in scenarios(args)},
           "gw_stats": {sid: [] for sid, _l, target, *_ in scenarios(args)
                        if target.startswith("gateway")},
           "cold": []}
    pb = os.environ.get("PORTCULLIS_BUILD")
    ctx["commands"].append((f"PORTCULLIS_BUILD={shlex.quote(pb)} " if pb else "")
                           + "/usr/bin/python3 bench/gateway_bench.py "
                           + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    t_start = time.monotonic()
    meter = Meter()
    c0 = meter.snapshot()
    time.sleep(1.0)
    ctx["pre_busy"] = Meter.diff(c0, meter.snapshot())["machine_busy"]

    work = Path(tempfile.mkdtemp(prefix="pc-gwbench-"))
    keep = [False]          # keep the logs of a failed run
    secret = "bench-" + os.urandom(24).hex()
    try:
        with H.Postgres() as pg, H.Redis() as rd, contextlib.ExitStack() as stack:
            db = pg.create_database("authsvc")
            # JWT_EXPIRES_SECONDS: the token must outlive the whole run
            env = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
                   "RATE_LIMIT_ENABLED": "false", "JWT_EXPIRES_SECONDS": "86400"}
            print("== setup: PostgreSQL, Redis, authsvc (sign-up for a session), keys", flush=True)
            with H.Authsvc(env) as svc:
                client = H.ApiClient(svc, timeout=60)
                user = client.sign_up(H.unique_email("bench"), "Bench-" + os.urandom(9).hex(),
                                      "Bench User")
                jwt_token = client.request("GET", "token", cookie=user).json()["token"]
                # The gateway reads authsvc's JWKS once at start; it is served
                # here from a file, since authsvc stops before the measurements.
                jwks_doc = client.request("GET", "/api/auth/jwks").text
                issuer = svc.env["BETTER_AUTH_URL"]
                client.close()
            jwks_srv = StaticJson(jwks_doc)
            stack.callback(jwks_srv.stop)
            cookie = user.cookie
            hot, rl = new_key(), new_key()
            zkeys = [new_key() for _ in range(args.keys)]
            conn = pg.connect("authsvc")
            try:
                insert_keys(conn, user.id, [hot] + zkeys)
                insert_keys(conn, user.id, [rl], rate_limit=True)
                with conn.cursor() as cur:
                    cur.execute('select count(*) from "apikey"')
                    nrows = cur.fetchone()[0]
                    cur.execute('analyze "apikey"')
            finally:
                conn.close()
            if nrows != args.keys + 2:
                raise SystemExit(f"expected {args.keys + 2} apikey rows, found {nrows}")
            tables = {"hot": work / "hot.tsv", "rl": work / "rl.tsv",
                      "session": work / "session.tsv", "zipf": work / "zipf.tsv",
                      "jwt": work / "jwt.tsv"}
            write_table(tables["jwt"], ["Bearer " + jwt_token])
            write_table(tables["hot"], [hot])
            write_table(tables["rl"], [rl])
            write_table(tables["session"], [cookie])
            cdf = zipf_cdf(args.keys, args.zipf_s)
            write_table(tables["zipf"], zkeys, cdf)
            ctx["zipf_top"] = [cdf[min(i, args.keys) - 1] for i in (1, 10, 100, 1000)]

            up = Upstream(work, args.workers)
            stack.callback(up.stop)
            ngx = Nginx(work, up.port, args.workers)
            stack.callback(ngx.stop)
            ctx["nginx_conf"] = ngx.conf.read_text().replace(str(ngx.dir), "$DIR").rstrip()
            gw_env = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
                      "UPSTREAM_URL": up.url, "GATEWAY_WORKERS": str(args.workers),
                      "LOG_LEVEL": "warn", "GATEWAY_ACCESS_LOG": "false",
                      "JWT_ISSUER": issuer, "JWT_JWKS_URL": jwks_srv.url}
            gw = Gateway(work, gw_env, "gateway")
            gws = [gw]
            stack.callback(lambda: [g.stop() for g in gws])
            gwl = None
            if args.with_access_log:
                # The same gateway with its access log on (the default), for one scenario.
                gwl = Gateway(work, dict(gw_env, GATEWAY_ACCESS_LOG="true"), "gateway-log")
                gws.append(gwl)
            # The same gateway with L1 off, and with both caches off.
            cache_off = {}
            for t, (name, extra) in CACHE_OFF_GATEWAYS.items():
                cache_off[t] = Gateway(work, dict(gw_env, **extra), name)
                gws.append(cache_off[t])
            ctx["commands"].append(" ".join(shlex.quote(a) for a in up.argv))
            ctx["commands"].append(" ".join(shlex.quote(a) for a in ngx.argv)
                                   + f"    # {ngx.dir}/nginx.conf as shown above")
            ctx["commands"].append(" ".join(f"{k}={shlex.quote(v)}" for k, v in gw_env.items()
                                            if k not in ("DATABASE_URL", "REDIS_URL",
                                                         "BETTER_AUTH_SECRET"))
                                   + " DATABASE_URL=<bench db> REDIS_URL=<bench redis> "
                                   "BETTER_AUTH_SECRET=<bench secret> GATEWAY_LISTEN=127.0.0.1:<port> "
                                   + str(gw.exe))
            for name, extra in CACHE_OFF_GATEWAYS.values():
                ctx["commands"].append(" ".join(f"{k}={v}" for k, v in extra.items())
                                       + " <the same environment> " + str(gw.exe) + "    # "
                                       + name)
            meter.groups = {"gateway": gw.proc.pid, "nginx": ngx.proc.pid,
                            "upstream": up.proc.pid, "PostgreSQL": pg.proc.pid,
                            "Redis": rd.proc.pid}
            meter.groups.update({t: g.proc.pid for t, g in cache_off.items()})
            ports = {"upstream": up.port, "nginx": ngx.port}

            # Sanity: one request of each kind must pass (200, and the gateway's
            # identity headers must arrive upstream). Not on the Zipf keys: their
            # caches stay cold for the first pass.
            checks = [("upstream", up.port, {"x-api-key": hot}, None),
                      ("nginx", ngx.port, {"x-api-key": hot}, None),
                      ("gateway, hot key", gw.port, {"x-api-key": hot}, "api_key"),
                      ("gateway, rate-limited key", gw.port, {"x-api-key": rl}, "api_key"),
                      ("gateway, session", gw.port, {"Cookie": cookie}, "session"),
                      ("gateway, JWT", gw.port, {"Authorization": "Bearer " + jwt_token}, "jwt"),
                      ]
            if gwl is not None:
                meter.groups["gateway_log"] = gwl.proc.pid
                checks.append(("gateway with access log", gwl.port, {"x-api-key": hot}, "api_key"))
            for t, g in cache_off.items():
                checks.append((f"{t}, hot key", g.port, {"x-api-key": hot}, "api_key"))
            for what, port, hdr, method in checks:
                st, body = http_get(port, "/bench", hdr)
                if st != 200:
                    raise SystemExit(f"{what}: GET /bench answered {st}: {body[:300]!r}")
                if method:
                    echo = json.loads(body)
                    hs = {k.lower(): v for k, v in (echo.get("headers") or {}).items()}
                    if hs.get("x-auth-method") != method or hs.get("x-user-id") != user.id:
                        raise SystemExit(f"{what}: upstream saw {hs}")
            # Forward auth: 200 with the key, 401 without it (so a 200 means a check).
            fa_path, fa_extra = REQUEST["gw_auth"]
            fa_name, fa_value = (x.strip() for x in fa_extra.split(":", 1))
            for hdr, want in (({"x-api-key": hot}, 200), ({}, 401)):
                st, body = http_get(gw.port, fa_path, dict(hdr, **{fa_name: fa_value}))
                if st != want:
                    raise SystemExit(f"gateway GET {fa_path}: {st}, not {want}: {body[:300]!r}")

            seed = [0]

            def measure(label, target_port, table, header, duration=None, sid=""):
                seed[0] += 1
                c_0 = meter.snapshot()
                argv, w = run_scenario(wrk, target_port, sid, tables[table], header, args,
                                       seed[0], duration)
                usage = Meter.diff(c_0, meter.snapshot())
                for g in [gw] + ([gwl] if gwl is not None else []) + list(cache_off.values()):
                    if not g.proc.running:
                        keep[0] = True
                        raise SystemExit(f"{g.proc.name} (pid {g.proc.pid}) died during {label}: "
                                         f"{g.death_report()}\n(files kept in {work})")
                return argv, w, usage

            # -- cold passes
            for label, restart in (("cold: L1, Redis, PostgreSQL all cold", False),
                                   ("L1 cold, Redis warm (new gateway)", True)):
                if restart:
                    gw.stop()
                    gw = Gateway(work, gw_env, "gateway2")
                    gws.append(gw)
                    meter.groups["gateway"] = gw.proc.pid
                print(f"== {label} ({args.cold_duration} s) ...", flush=True)
                before = gw.stats()
                cold_start = time.monotonic()
                sampler = StatsSampler(gw.admin_port)
                sampler.start()
                try:
                    argv, w, usage = measure(label, gw.port, "zipf", "x-api-key",
                                             args.cold_duration)
                finally:
                    sampler.stop()
                after = gw.stats()
                s = summarize_run({"wrk": w, "usage": usage})
                tl, prev = [], before
                for _, snap in sampler.samples[1:]:
                    tl.append(stats_diff(prev, snap))
                    prev = snap
                ctx["cold"].append({"label": label, "before": before, "after": after,
                                    "stats": stats_diff(before, after), "summary": s,
                                    "usage": usage, "timeline": tl[:args.cold_duration]})
                ctx["commands"].append(f"BENCH_TABLE=<{args.keys} keys> BENCH_HEADER=x-api-key "
                                       + " ".join(shlex.quote(a) for a in argv) + "    # " + label)
                d = stats_diff(before, after)
                print(f"   {s['rps']:,.0f} req/s, p99 {s['p99']:.2f} ms; distinct keys "
                      f"{s['distinct']:,}; L1 {d['l1_hits']:,} L2 {d['l2_hits']:,} PG "
                      f"{d['pg_queries']:,}; non-200 {fmt_counts(s['non200'])}", flush=True)
            ports["gateway"] = gw.port
            gateways = {"gateway": gw, **cache_off}
            ports.update({t: g.port for t, g in cache_off.items()})
            if gwl is not None:
                ports["gateway_log"] = gwl.port
                gateways["gateway_log"] = gwl

            # -- warm-up (not measured), 1 s of every fixed-credential scenario:
            # first connections, nginx's upstream pool, and the credentials in
            # the L1 of the gateway that replaced the first one.
            for sid, _label, target, table, header in ctx["scenarios"]:
                if table != "zipf":
                    run_scenario(wrk, ports[target], sid, tables[table], header, args, 0,
                                 duration=1)

            # -- rounds
            zipf_starts = [cold_start]
            for rnd in range(args.rounds):
                for sid, label, target, table, header in ctx["scenarios"]:
                    lab = label.format(keys=f"{args.keys:,}", s=args.zipf_s)
                    print(f"== round {rnd + 1}/{args.rounds}: {lab} ...", flush=True)
                    g = gateways.get(target)
                    before = g.stats() if g else None
                    if sid == "gw_zipf_first":
                        zipf_starts.append(time.monotonic())
                    argv, w, usage = measure(lab, ports[target], table, header, sid=sid)
                    s = summarize_run({"wrk": w, "usage": usage})
                    ctx["runs"][sid].append(s)
                    ctx["usage"][sid].append(usage)
                    if before is not None:
                        ctx["gw_stats"][sid].append(stats_diff(before, g.stats()))
                    if rnd == 0:
                        ctx["commands"].append(
                            f"BENCH_TABLE=<{table}> BENCH_HEADER={header} "
                            + " ".join(shlex.quote(a) for a in argv).replace(
                                str(ports[target]), f"<{target} port>") + "    # " + lab)
                    print(f"   {s['rps']:,.0f} req/s, p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms; "
                          f"non-200 {fmt_counts(s['non200'])}; other processes "
                          f"{s['other']:.2f} cores", flush=True)
            gaps = [b - a for a, b in zip(zipf_starts, zipf_starts[1:])]
            ctx["round_period"] = statistics.median(gaps) if gaps else float("nan")
            if gwl is not None:
                try:
                    ctx["access_log_lines"] = sum(1 for _ in open(gwl.env["GATEWAY_LOG"], "rb"))
                except OSError:
                    ctx["access_log_lines"] = None
            stack.close()
    finally:
        if not keep[0]:
            shutil.rmtree(work, ignore_errors=True)

    ctx["elapsed"] = time.monotonic() - t_start
    text = report(ctx, args)
    text += f"\nWhole run: {ctx['elapsed']:.0f} s.\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    M = medians(ctx["runs"])
    write_dat(args.dat, [(DAT_LABEL[sid].format(keys=f"{args.keys:,}"), M[sid]["rps"],
                          M[sid]["p99"]) for sid, *_ in ctx["scenarios"]])
    print()
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        H.kill_all()
        sys.exit(130)
