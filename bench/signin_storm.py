#!/usr/bin/python3
"""Sign-in storm: sign-in throughput against the raw scrypt rate, and /health
latency while the password pool is saturated (issue 2).

    /usr/bin/python3 bench/signin_storm.py --scrypt-bin build/bench/scrypt_rate \
        [--connections 16,64,128] [--duration 10] [--idle 3] [--out FILE]

1. Runs scrypt_rate (pc_password_hash on one thread per core) for a few
   seconds: the machine's raw hash rate, the ceiling for sign-ins.
2. Starts PostgreSQL, Redis and authsvc through tests/e2e/pcsupport
   (RATE_LIMIT_ENABLED=false, everything else at its default) and signs up
   one user.
3. Samples GET /health for --idle seconds with nothing else running.
4. For each connection count: wrk drives sign-ins for --duration seconds
   (bench/signin.lua) while the sampler keeps sending GET /health, one at a
   time on one keep-alive connection. Then waits until the password queue has
   drained (one sign-in probe) before the next scenario.

Prints a markdown report (and writes it to --out): sign-ins/s (200s only),
the other statuses, the ratio to the raw scrypt rate (plain, and per
CPU-second the scrypt threads got), where the machine's CPU went in each
phase (from /proc, including processes this script did not start), and
/health p50/p99/max idle and during each storm. Every step is bounded in time and
every process is stopped by PID (the harness does that).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import pcsupport as H  # noqa: E402

LUA = REPO / "bench" / "signin.lua"


# ---------------------------------------------------------------------------
# /health sampler


class HealthSampler:
    """GET /health one request at a time on one keep-alive connection.

    Records each latency (seconds) from sending the request to having read
    the whole response. Failures (non-200, socket errors, timeouts) are counted
    and the connection is reopened."""

    def __init__(self, host: str, port: int, interval: float, timeout: float = 5.0):
        self.host, self.port, self.interval, self.timeout = host, port, interval, timeout
        self.conn = None
        self.connects = 0
        self._stop = threading.Event()
        self._thread = None
        self.lat: list = []
        self.errors: dict = {}

    def _connect(self):
        self.close()
        c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = c
        self.connects += 1

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def one(self):
        try:
            if self.conn is None:
                self._connect()
            t0 = time.perf_counter()
            self.conn.request("GET", "/health")
            r = self.conn.getresponse()
            r.read()
            dt_s = time.perf_counter() - t0
            if r.status != 200:
                self.errors[str(r.status)] = self.errors.get(str(r.status), 0) + 1
            else:
                self.lat.append(dt_s)
            if r.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as e:
            k = type(e).__name__
            self.errors[k] = self.errors.get(k, 0) + 1
            self.close()

    def _loop(self, until: float | None):
        while not self._stop.is_set():
            if until is not None and time.monotonic() >= until:
                break
            self.one()
            if self.interval > 0:
                self._stop.wait(self.interval)

    def run_for(self, seconds: float):
        """Sample in the calling thread for `seconds`."""
        self.lat, self.errors = [], {}
        self._stop.clear()
        self._loop(time.monotonic() + seconds)
        return self.lat, dict(self.errors)

    def start(self):
        self.lat, self.errors = [], {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(None,), daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)
            self._thread = None
        return self.lat, dict(self.errors)


TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: str):
    """(comm, fields after the comm) of a /proc/.../stat file, or None."""
    try:
        raw = Path(path).read_text()
    except OSError:
        return None
    return raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()


class CpuMeter:
    """Where the machine's CPU time goes, from /proc: the servers this script
    started (each with its descendants), by thread name inside authsvc, this script,
    its finished children (wrk, scrypt_rate), and everything else on the
    machine (total busy time minus all of the above)."""

    def __init__(self):
        self.groups: dict = {}      # label -> pgid
        self.authsvc_pid = None

    def snapshot(self) -> dict:
        import resource
        snap = {}
        f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        j = [int(x) for x in f]
        snap["machine_busy"] = (sum(j[:8]) - j[3] - j[4]) / TICK   # user..steal minus idle, iowait
        snap["machine_total"] = sum(j[:8]) / TICK
        # Processes by their root ancestor (PostgreSQL backends call setsid(),
        # so process groups would miss them).
        roots = {pid: label for label, pid in self.groups.items()}
        procs = {}
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                st = _stat_fields(f"/proc/{pid}/stat")
                if st is not None:
                    procs[int(pid)] = (int(st[1][1]), (int(st[1][11]) + int(st[1][12])) / TICK)
        for pid, (ppid, cpu) in procs.items():
            p, hops = pid, 0
            while p not in roots and p in procs and hops < 64:
                p, hops = procs[p][0], hops + 1
            label = roots.get(p)
            if label:
                snap[label] = snap.get(label, 0.0) + cpu
        if self.authsvc_pid:
            try:
                tids = os.listdir(f"/proc/{self.authsvc_pid}/task")
            except OSError:
                tids = []
            for tid in tids:
                st = _stat_fields(f"/proc/{self.authsvc_pid}/task/{tid}/stat")
                if st is not None:
                    k = "authsvc:" + st[0]
                    snap[k] = snap.get(k, 0.0) + (int(st[1][11]) + int(st[1][12])) / TICK
        me = resource.getrusage(resource.RUSAGE_SELF)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        snap["bench script"] = me.ru_utime + me.ru_stime
        snap["wrk / scrypt_rate"] = ch.ru_utime + ch.ru_stime
        snap["wall"] = time.monotonic()
        return snap

    @staticmethod
    def diff(a: dict, b: dict) -> dict:
        """Cores used (CPU seconds per wall second) per category between two snapshots."""
        wall = b["wall"] - a["wall"]
        d = {k: (b.get(k, 0.0) - a.get(k, 0.0)) / wall for k in b if k != "wall"}
        ours = sum(v for k, v in d.items()
                   if not k.startswith("machine") and not k.startswith("authsvc:"))
        d["other processes"] = max(0.0, d["machine_busy"] - ours)
        d["cores"] = d["machine_total"]
        d["wall"] = wall
        return d


def pct(sorted_vals: list, p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def summarize(lat: list, errors: dict, seconds: float) -> dict:
    s = sorted(lat)
    return {"n": len(s), "p50_ms": pct(s, 50) * 1e3, "p99_ms": pct(s, 99) * 1e3,
            "max_ms": (s[-1] * 1e3) if s else float("nan"), "errors": errors,
            "per_s": len(s) / seconds if seconds > 0 else 0.0}


# ---------------------------------------------------------------------------
# Steps


def scrypt_rate(binary: Path, seconds: int, threads: int) -> dict:
    argv = [str(binary), "-t", str(threads), "-s", str(seconds)]
    r = H.run_bounded(argv, timeout=seconds + 60)
    out = r.stdout.decode()
    if r.returncode != 0:
        raise SystemExit(f"scrypt_rate failed ({r.returncode}):\n{out}{r.stderr.decode()}")
    m = re.search(r"^scrypt_rate (.*)$", out, re.M)
    if not m:
        raise SystemExit(f"scrypt_rate: unexpected output:\n{out}")
    kv = dict(x.split("=", 1) for x in m.group(1).split())
    return {"argv": argv, "threads": int(kv["threads"]), "hashes": int(kv["hashes"]),
            "seconds": float(kv["seconds"]), "rate": float(kv["rate"]),
            "ms_per_hash": float(kv["ms_per_hash"])}


def run_wrk(wrk: str, url: str, connections: int, threads: int, duration: int,
            email: str, password: str) -> tuple:
    argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
            "--timeout", "60s", "-s", str(LUA), url]
    env = dict(os.environ, SIGNIN_EMAIL=email, SIGNIN_PASSWORD=password)
    r = H.run_bounded(argv, env=env, timeout=duration + 60)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^SIGNIN_RESULT (\{.*\})$", out, re.M)
    if r.returncode != 0 or not m:
        raise SystemExit(f"wrk failed ({r.returncode}):\n{out}\n{r.stderr.decode(errors='replace')}")
    return argv, json.loads(m.group(1)), out


def drain(client, email: str, password: str, limit: float = 60.0) -> float:
    """Sign in once and wait for the answer: everything queued before it is
    done by then. Returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + limit
    last = None
    while True:
        try:
            r = client.post("sign-in/email", {"email": email, "password": password},
                            timeout=max(1.0, deadline - time.monotonic()))
            if r.status_code == 200:
                return time.monotonic() - t0
            last = f"{r.status_code} {r.text[:300]}"
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = repr(e)
        if time.monotonic() >= deadline:
            raise SystemExit(f"authsvc did not answer a sign-in with 200 within {limit:.0f}s "
                             f"after the storm (last answer: {last})")
        time.sleep(0.2)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model or platform.machine()}), Linux {platform.release()}"


def write_report(lines: list, problems: list, out) -> str:
    """A report's lines (and its problems, if any) printed and written to out."""
    if problems:
        lines = lines + ["", "Problems: " + "; ".join(map(str, problems))]
    report = "\n".join(lines) + "\n"
    print(report)
    if out:
        Path(out).write_text(report)
    return report


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "") if rev else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


# ---------------------------------------------------------------------------
# Report


def fmt_status(counts: dict) -> str:
    others = {k: v for k, v in counts.items() if k != "200"}
    return ", ".join(f"{k}: {v}" for k, v in sorted(others.items())) or "none"


def fmt_err(errors: dict) -> str:
    nz = {k: v for k, v in errors.items() if v}
    return ", ".join(f"{k}: {v}" for k, v in sorted(nz.items())) or "0"


def report(ctx: dict) -> str:
    sr = ctx["scrypt"]
    L = []
    L.append(f"# Sign-in storm, {ctx['date']}")
    L.append("")
    L.append(f"Machine: {ctx['machine']}. Source: {ctx['rev']}. authsvc: "
             f"RATE_LIMIT_ENABLED=false, everything else default (PASSWORD_WORKERS = one "
             f"per core = {os.cpu_count()}, PASSWORD_QUEUE = 64, AUTHSVC_WORKERS = 8). "
             f"Binary: `{ctx['binary']}`. PostgreSQL, Redis, authsvc, wrk and the /health "
             f"sampler all run on this machine, over loopback. Cores busy in the second "
             f"before the run: {ctx['pre_busy']:.2f} of {os.cpu_count()}; load average "
             f"{ctx['load']}.")
    L.append("")
    L.append("## Sign-in throughput vs raw scrypt")
    L.append("")
    L.append(f"Raw scrypt (`scrypt_rate`, pc_password_hash on {sr['threads']} threads, "
             f"measured just before the storms): **{sr['rate']:.2f} hashes/s** "
             f"({sr['hashes']} hashes in {sr['seconds']:.2f} s, {sr['ms_per_hash']:.1f} ms "
             f"per hash per thread).")
    L.append("")
    raw_per_cpu = sr["rate"] / max(1e-9, sr["cpu"].get("wrk / scrypt_rate", 0.0))
    L.append("| connections | duration | sign-ins 200 | sign-ins/s | ratio to raw scrypt "
             "| same, per scrypt CPU-second | non-200 by status | socket errors "
             "| wrk latency p50 / p99 (all responses) | queue drained after |")
    L.append("|---:|---:|---:|---:|---:|---:|---|---|---|---:|")
    for s in ctx["storms"]:
        w = s["wrk"]
        secs = w["duration_us"] / 1e6
        ok = w["status"].get("200", 0)
        rate = ok / secs if secs > 0 else 0
        e = dict(w["errors"])
        e.pop("status", None)
        lat = w["latency_us"]
        pw_cores = s["usage"].get("authsvc:as-password", 0.0)
        per_cpu = (f"{rate / pw_cores / raw_per_cpu:.2f}" if pw_cores > 0.01 else "–")
        L.append(f"| {s['connections']} | {secs:.1f} s | {ok} | **{rate:.2f}** | "
                 f"**{rate / sr['rate']:.2f}** | {per_cpu} | {fmt_status(w['status'])} | "
                 f"{fmt_err(e)} | "
                 f"{lat['p50'] / 1e3:.0f} / {lat['p99'] / 1e3:.0f} ms | {s['drain_s']:.1f} s |")
    L.append("")
    L.append("## Where the CPU went")
    L.append("")
    L.append(f"Cores in use, from /proc (CPU seconds per wall second; the machine has "
             f"{os.cpu_count()}). \"other processes\" is everything on the machine that "
             f"this bench did not start, plus kernel time no process is charged for "
             f"(about 0.1-0.2 here): when it is well above that, the run was disturbed "
             f"and the plain ratios are low by about that share.")
    L.append("")
    cols = ["authsvc:as-password", "authsvc", "PostgreSQL", "Redis", "wrk / scrypt_rate",
            "bench script", "other processes", "machine_busy"]
    names = ["scrypt threads (authsvc)", "authsvc, all threads", "PostgreSQL", "Redis",
             "wrk / scrypt_rate", "bench script (sampler)", "other processes", "machine busy"]
    L.append("| phase | " + " | ".join(names) + " |")
    L.append("|---|" + "---:|" * len(cols))
    rows = [("raw scrypt", sr["cpu"])] + [(f"storm, {s['connections']} connections", s["usage"])
                                          for s in ctx["storms"]]
    for name, u in rows:
        L.append(f"| {name} | " + " | ".join(
            ("–" if k not in u else f"{u[k]:.2f}") for k in cols) + " |")
    L.append("")
    L.append(f"## /health latency (GET, one at a time on one keep-alive connection, "
             f"{ctx['interval_ms']:g} ms pause between requests)")
    L.append("")
    L.append("| phase | samples | p50 | p99 | max | failures | connections opened |")
    L.append("|---|---:|---:|---:|---:|---|---:|")
    rows = [("idle", ctx["idle"])] + [(f"storm, {s['connections']} connections", s["health"])
                                      for s in ctx["storms"]]
    for name, h in rows:
        L.append(f"| {name} | {h['n']} | {h['p50_ms']:.2f} ms | {h['p99_ms']:.2f} ms | "
                 f"{h['max_ms']:.2f} ms | {fmt_err(h['errors'])} | {h['connects']} |")
    L.append("")
    L.append("\"Per scrypt CPU-second\": sign-ins per CPU-second of authsvc's password "
             "threads over hashes per CPU-second of scrypt_rate; near 1.0 means each "
             "sign-in's hash cost what a raw hash costs, and any gap in the plain ratio is "
             "CPU the password threads did not get (see the next table).")
    L.append("")
    L.append("Sign-ins/s counts 200 responses only, over wrk's measured duration. 503 is "
             "`PASSWORD_QUEUE_FULL` from a full password queue: the expected answer once more "
             "sign-ins wait than PASSWORD_QUEUE + PASSWORD_WORKERS. wrk resends at once on "
             "every answer, so in overload it also keeps the loop busy refusing. "
             "\"Queue drained after\": how long one more sign-in took once wrk had stopped "
             "(it waits behind everything still queued).")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scrypt-bin", default=str(REPO / "build" / "bench" / "scrypt_rate"))
    ap.add_argument("--scrypt-seconds", type=int, default=5)
    ap.add_argument("--connections", default="16,64,128",
                    help="comma-separated wrk connection counts, one storm each (default 16,64,128)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per storm (default 10)")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of idle /health sampling")
    ap.add_argument("--health-interval-ms", type=float, default=2.0,
                    help="pause between /health requests (default 2 ms)")
    ap.add_argument("--wrk-threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--out", help="also write the markdown report here")
    args = ap.parse_args()
    conns = [int(x) for x in args.connections.split(",") if x.strip()]
    if not conns or min(conns) < 1 or args.duration < 1 or args.duration > 120:
        ap.error("bad --connections or --duration (1..120 s)")

    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk not found (apt-get install wrk; bench/run.sh does that)")
    if not Path(args.scrypt_bin).exists():
        raise SystemExit(f"{args.scrypt_bin} not found: run bench/run.sh (make bench)")

    # A SIGTERM should unwind through the context managers (stop by PID).
    def _term(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, _term)

    ctx = {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(),
           "rev": git_rev(), "binary": str(H.binary("authsvc")),
           "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "interval_ms": args.health_interval_ms, "storms": [],
           "commands": ["make bench    # builds, then: sh bench/run.sh"]}
    if os.environ.get("SCRYPT_RATE_BUILD"):
        ctx["commands"].append(os.environ["SCRYPT_RATE_BUILD"])
    pb = os.environ.get("PORTCULLIS_BUILD")
    ctx["commands"].append((f"PORTCULLIS_BUILD={shlex.quote(pb)} " if pb else "")
                           + "/usr/bin/python3 bench/signin_storm.py "
                           + " ".join(shlex.quote(a) for a in sys.argv[1:]))

    print(f"== raw scrypt rate ({args.scrypt_seconds} s) ...", flush=True)
    meter = CpuMeter()
    c0 = meter.snapshot()
    time.sleep(1.0)
    ctx["pre_busy"] = CpuMeter.diff(c0, meter.snapshot())["machine_busy"]
    c0 = meter.snapshot()
    sr = scrypt_rate(Path(args.scrypt_bin), args.scrypt_seconds, os.cpu_count() or 1)
    sr["cpu"] = CpuMeter.diff(c0, meter.snapshot())
    ctx["scrypt"] = sr
    ctx["commands"].append(" ".join(shlex.quote(a) for a in sr["argv"]))
    print(f"   {sr['rate']:.2f} hashes/s on {sr['threads']} threads", flush=True)

    secret = "bench-" + os.urandom(24).hex()
    with H.Postgres() as pg, H.Redis() as rd:
        db = pg.create_database("authsvc")
        env = {"DATABASE_URL": db, "REDIS_URL": rd.url, "BETTER_AUTH_SECRET": secret,
               "RATE_LIMIT_ENABLED": "false"}
        with H.Authsvc(env) as svc:
            print(f"== authsvc on {svc.base_url} (pid {svc.proc.pid})", flush=True)
            meter.groups = {"authsvc": svc.proc.pid, "PostgreSQL": pg.proc.pid,
                            "Redis": rd.proc.pid}
            meter.authsvc_pid = svc.proc.pid
            client = H.ApiClient(svc, timeout=60)
            email = "bench-" + os.urandom(4).hex() + "@example.com"
            password = "Bench-" + os.urandom(9).hex()
            client.sign_up(email, password, "Bench User")
            client.sign_in(email, password)

            sampler = HealthSampler(svc.host, svc.port, args.health_interval_ms / 1e3)
            sampler.one()   # open the connection outside the measurement
            sampler.connects = 0
            print(f"== /health idle ({args.idle:g} s) ...", flush=True)
            lat, err = sampler.run_for(args.idle)
            ctx["idle"] = summarize(lat, err, args.idle)
            ctx["idle"]["connects"] = sampler.connects
            print(f"   p50 {ctx['idle']['p50_ms']:.2f} ms  p99 {ctx['idle']['p99_ms']:.2f} ms",
                  flush=True)

            url = svc.base_url + "/api/auth/sign-in/email"
            for c in conns:
                print(f"== storm: {c} connections, {args.duration} s ...", flush=True)
                sampler.connects = 0
                c0 = meter.snapshot()
                sampler.start()
                t0 = time.monotonic()
                try:
                    argv, w, _out = run_wrk(wrk, url, c, min(args.wrk_threads, c), args.duration,
                                            email, password)
                finally:
                    lat, err = sampler.stop()
                elapsed = time.monotonic() - t0
                usage = CpuMeter.diff(c0, meter.snapshot())
                if not svc.running:
                    text = svc.sanitizer_report() or svc.stderr_text()[-3000:]
                    raise SystemExit(f"authsvc died during the storm ({c} connections; "
                                     f"logs in {svc.dir}):\n{text}")
                h = summarize(lat, err, elapsed)
                h["connects"] = sampler.connects
                try:
                    d = drain(client, email, password)
                except SystemExit as e:
                    log = "\n".join(svc.log_lines()[-15:])
                    raise SystemExit(f"{e}\nauthsvc running: {svc.running}; last log lines "
                                     f"({svc.log_path}):\n{log}\nstderr:\n"
                                     f"{svc.stderr_text()[-2000:]}") from None
                ctx["storms"].append({"connections": c, "wrk": w, "health": h, "drain_s": d,
                                     "usage": usage})
                ctx["commands"].append(
                    "SIGNIN_EMAIL=<bench user> SIGNIN_PASSWORD=<its password> "
                    + " ".join(shlex.quote(a) for a in argv))
                ok = w["status"].get("200", 0)
                print(f"   200: {ok} ({ok / (w['duration_us'] / 1e6):.2f}/s), other: "
                      f"{fmt_status(w['status'])}; /health p99 {h['p99_ms']:.2f} ms; "
                      f"drained in {d:.1f} s; cores used by scrypt threads "
                      f"{usage.get('authsvc:as-password', 0):.2f}, by other processes "
                      f"{usage['other processes']:.2f}", flush=True)
            sampler.close()
            client.close()
            san = svc.sanitizer_report()
            if san:
                raise SystemExit(f"sanitizer report from authsvc:\n{san}")

    text = report(ctx)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        H.kill_all()
        sys.exit(130)
