#!/usr/bin/python3
"""Revocation propagation across three gateway replicas (issue 6): how long after a
credential is revoked does the last of three replicas refuse it?

    /usr/bin/python3 bench/revocation_bench.py [--count 250] [--timeout 2] [--out FILE]

1. Starts PostgreSQL, Redis, authsvc, the demo upstream and three gateways
   (GATEWAY_WORKERS=2 each, L1_TTL_SECONDS=300 s so nothing ages out), all on one Redis,
   through tests/e2e/pcsupport (daemons, cluster).
2. For each kind of revocation, --count times, interleaved (one of each kind in
   turn, so a disturbance hits every kind alike):
     authsvc sign-out     POST /api/auth/sign-out; t0 = its 200 answer read
     SQL DELETE session   DELETE FROM "session" (autocommit); t0 = the commit returned
     SQL DELETE apikey    DELETE FROM "apikey"; t0 = the commit returned
   The SQL ones reach the gateways only through migration 0003's NOTIFY,
   authsvc's LISTEN and the Redis channel. Sessions and keys are inserted with SQL
   (no scrypt per revocation); before each revocation the credential is requested
   twice from every replica, so it sits in all three L1 caches.
3. Right after t0 the bench polls the three replicas in a tight loop, one
   keep-alive connection each, one request to each in flight at a time (sent
   together, then read), until each has answered 401 (at most --timeout s).
   delay = when the last replica's first 401 was read - t0. It is an upper bound:
   a poll round trip (measured first, with a valid credential) is its floor.
   A subscriber of the bench on the Redis channel notes when each PUBLISH arrives
   (the split: writer -> channel, channel -> last replica).

Prints a markdown report (and writes it to --out): p50/p90/p99/max per kind, the
poll floor, where the CPU went (processes this bench did not start included) and
the exact command. Every wait is bounded; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "bench")]
import pcsupport as H  # noqa: E402
from pcsupport import cluster as C  # noqa: E402
from signin_storm import CpuMeter, git_rev, machine, pct  # noqa: E402

GOAL_P99_MS = 5.0
KINDS = ("authsvc sign-out", "SQL DELETE session", "SQL DELETE apikey")


# ---------------------------------------------------------------------------
# a minimal keep-alive HTTP/1.1 client on a raw socket (the poll loop)


class RawConn:
    def __init__(self, port: int, timeout: float = 5.0):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes):
        self.sock.sendall(data)

    def read_status(self) -> int:
        """Reads one whole response (Content-Length bodies only) and returns its status."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"127.0.0.1:{self.port} closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v.strip())
        while len(rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed mid-body")
            rest += chunk
        self.buf = rest[n:]
        return status

    def close(self):
        self.sock.close()


def request_bytes(path: str, header: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n\r\n".encode()


class Poller:
    """One keep-alive connection per replica."""

    def __init__(self, ports):
        self.conns = [RawConn(p) for p in ports]

    def round(self, req: bytes, which=None) -> list:
        """Sends req to the replicas in `which` (indexes; default all) at once, then reads
        their answers: [(index, status, perf_counter when read)]."""
        which = range(len(self.conns)) if which is None else which
        for i in which:
            self.conns[i].send(req)
        out = []
        for i in which:
            st = self.conns[i].read_status()
            out.append((i, st, time.perf_counter()))
        return out

    def until_refused(self, req: bytes, timeout: float):
        """Polls until every replica answered 401; returns ({index: time of its first 401},
        rounds, statuses other than 200/401 seen)."""
        pending = list(range(len(self.conns)))
        first = {}
        odd = []
        rounds = 0
        deadline = time.perf_counter() + timeout
        while pending and time.perf_counter() < deadline:
            rounds += 1
            for i, st, t in self.round(req, pending):
                if st == 401:
                    first[i] = t
                elif st != 200:
                    odd.append(st)
            pending = [i for i in pending if i not in first]
        return first, rounds, odd

    def close(self):
        for c in self.conns:
            c.close()


# ---------------------------------------------------------------------------
# the channel, as a bystander sees it


class ChannelWatch:
    """SUBSCRIBEs to the revocation channel and notes when each hash arrives."""

    def __init__(self, redis_srv):
        self.sub = redis_srv.subscribe(H.DEFAULT_REVOCATION_CHANNEL, timeout=5)
        self.seen: dict = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            m = self.sub.get_message(0.2)
            if m is not None:
                self.seen.setdefault(m[1], time.perf_counter())

    def stop(self):
        self._stop.set()
        self._t.join(5)
        self.sub.close()


# ---------------------------------------------------------------------------


def insert_sessions(sql, user_id: str, n: int) -> list:
    tokens = [H.generate_id(32) for _ in range(n)]
    with sql.conn.cursor() as cur:
        for t in tokens:
            cur.execute('insert into "session" (id, token, "userId", "expiresAt", "createdAt", "updatedAt") '
                        "values (%s, %s, %s, now() + interval '7 days', now(), now())",
                        (H.generate_id(32), t, user_id))
    return tokens


def summarize(xs: list) -> dict:
    s = sorted(xs)
    return {"n": len(s), "p50": pct(s, 50), "p90": pct(s, 90), "p99": pct(s, 99),
            "max": s[-1] if s else float("nan")}


def fmt_ms(x: float) -> str:
    return f"{x:.2f} ms" if x == x else "–"


def run(args) -> dict:
    ctx = {"started": dt.datetime.now(), "args": args}
    work = Path(tempfile.mkdtemp(prefix="pc-revocation-bench-"))
    meter = CpuMeter()
    cl = C.Cluster(work, "bench-" + os.urandom(20).hex(), n_gateways=3, haproxy=False,
                   gateway_workers=args.gateway_workers)
    watch = None
    poller = None
    try:
        meter.groups.update({"PostgreSQL": cl.pg.proc.pid, "Redis": cl.redis.proc.pid,
                             "authsvc": cl.authsvc.proc.pid, "demo upstream": cl.upstream.proc.pid,
                             **{g.name: g.proc.pid for g in cl.gateways}})
        c = cl.client()
        u = c.sign_up(name="Revocation bench")
        n = args.count
        tokens_out = insert_sessions(cl.sql, u.id, n)          # signed out through authsvc
        tokens_sql = insert_sessions(cl.sql, u.id, n)          # deleted with SQL
        keys = [cl.keys.create(u.id) for _ in range(n)]
        ports = [g.port for g in cl.gateways]
        poller = Poller(ports)
        auth = http.client.HTTPConnection("127.0.0.1", cl.authsvc.port, timeout=10)
        origin = cl.authsvc.origin

        # the floor: poll rounds with a credential that stays valid
        valid = request_bytes("/s/x", f"Cookie: {u.cookie}")
        for _ in range(50):
            poller.round(valid)
        floor = []
        for _ in range(args.floor_rounds):
            t0 = time.perf_counter()
            res = poller.round(valid)
            assert all(st == 200 for _, st, _ in res), res
            floor.append((max(t for _, _, t in res) - t0) * 1e3)
        ctx["floor"] = summarize(floor)

        watch = ChannelWatch(cl.redis)
        delays = {k: [] for k in KINDS}
        to_channel = {k: [] for k in KINDS}
        channel_to_last = {k: [] for k in KINDS}
        first_round = {k: 0 for k in KINDS}
        timeouts = {k: 0 for k in KINDS}
        odd = {k: [] for k in KINDS}
        per_replica = {k: [[] for _ in ports] for k in KINDS}

        def cookie_of(tok):
            return f"Cookie: {H.SESSION_COOKIE}={H.cookie_value(cl.secret, tok)}"

        snap0 = meter.snapshot()
        t_start = time.monotonic()
        for i in range(n):
            if time.monotonic() - t_start > args.max_seconds:
                break
            for kind in KINDS:
                if kind == "authsvc sign-out":
                    tok = tokens_out[i]
                    req, h = request_bytes("/s/x", cookie_of(tok)), H.token_hash(tok)
                elif kind == "SQL DELETE session":
                    tok = tokens_sql[i]
                    req, h = request_bytes("/s/x", cookie_of(tok)), H.token_hash(tok)
                else:
                    k = keys[i]
                    req, h = request_bytes("/k/x", f"x-api-key: {k.key}"), k.hash
                for _ in range(2):                               # into every replica's L1
                    res = poller.round(req)
                    assert all(st == 200 for _, st, _ in res), (kind, res)
                # revoke
                if kind == "authsvc sign-out":
                    auth.request("POST", "/api/auth/sign-out", body=b"{}",
                                 headers={"Cookie": cookie_of(tok)[len("Cookie: "):], "Origin": origin,
                                          "Content-Type": "application/json"})
                    r = auth.getresponse()
                    r.read()
                    t0 = time.perf_counter()
                    assert r.status == 200, r.status
                elif kind == "SQL DELETE session":
                    assert cl.sql.execute('delete from "session" where token = %s', (tok,)) == 1
                    t0 = time.perf_counter()
                else:
                    assert cl.sql.execute('delete from "apikey" where id = %s', (k.id,)) == 1
                    t0 = time.perf_counter()
                first, rounds, bad = poller.until_refused(req, args.timeout)
                odd[kind].extend(bad)
                if len(first) < len(ports):
                    timeouts[kind] += 1
                    continue
                last = max(first.values())
                delays[kind].append((last - t0) * 1e3)
                for idx, t in first.items():
                    per_replica[kind][idx].append((t - t0) * 1e3)
                if rounds == 1:
                    first_round[kind] += 1
                ts = watch.seen.get(h)
                if ts is not None:
                    to_channel[kind].append((ts - t0) * 1e3)
                    channel_to_last[kind].append((last - ts) * 1e3)
        snap1 = meter.snapshot()
        ctx["cpu"] = CpuMeter.diff(snap0, snap1)
        ctx["seconds"] = time.monotonic() - t_start
        ctx["results"] = {k: {"delay": summarize(delays[k]), "to_channel": summarize(to_channel[k]),
                              "channel_to_last": summarize(channel_to_last[k]),
                              "first_round": first_round[k], "timeouts": timeouts[k], "odd": odd[k],
                              "per_replica": [summarize(x) for x in per_replica[k]]}
                          for k in KINDS}
        alld = [x for k in KINDS for x in delays[k]]
        ctx["all"] = summarize(alld)
        ctx["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
        auth.close()
        c.close()
    finally:
        if watch is not None:
            watch.stop()
        if poller is not None:
            poller.close()
        ctx["problems"] = cl.close()
        shutil.rmtree(work, ignore_errors=True)
    ctx["finished"] = dt.datetime.now()
    return ctx


def report(ctx: dict) -> str:
    a = ctx["args"]
    L = []
    L.append(f"# Revocation propagation, {ctx['started']:%Y-%m-%d %H:%M}")
    L.append("")
    L.append(f"Machine: {machine()}. Source: {git_rev()}. Binaries: `{H.build_dir()}`. "
             f"PostgreSQL, Redis, authsvc, three gateways (GATEWAY_WORKERS={a.gateway_workers} each, "
             f"L1_TTL_SECONDS=300 s) and this bench all on this machine, over loopback, one Redis. "
             f"Load average at the end: {' '.join(ctx['loadavg'])}.")
    L.append("")
    al = ctx["all"]
    verdict = "met" if al["p99"] < GOAL_P99_MS else "**not met**"
    L.append(f"**All {al['n']} revocations: p50 {fmt_ms(al['p50'])}, p99 {fmt_ms(al['p99'])}, "
             f"max {fmt_ms(al['max'])}** from the revoke answer (or the SQL commit) to the last of the "
             f"three replicas refusing. Goal p99 < {GOAL_P99_MS:.0f} ms: {verdict}. "
             f"(Kong polls every 5 s; Unkey documents up to 30 s.)")
    L.append("")
    L.append("| revoked by | revocations | p50 | p90 | p99 | max | refused at the first poll | "
             "over the bound |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, r in ctx["results"].items():
        d = r["delay"]
        L.append(f"| {k} | {d['n']} | {fmt_ms(d['p50'])} | {fmt_ms(d['p90'])} | {fmt_ms(d['p99'])} | "
                 f"{fmt_ms(d['max'])} | {r['first_round']} | {r['timeouts']} |")
    f = ctx["floor"]
    L.append("")
    L.append(f"The floor: one poll round (a request to each of the three replicas at once, all three "
             f"answers read) took p50 {fmt_ms(f['p50'])}, p99 {fmt_ms(f['p99'])}, max {fmt_ms(f['max'])} "
             f"with a valid credential ({f['n']} rounds). A delay is measured when the answer is read, "
             f"so a replica that already refuses at the first poll still counts about one round; "
             f"\"refused at the first poll\" counts the revocations where all three did.")
    L.append("")
    L.append("Where the time goes, per kind: from t0 to the moment the bench's own subscriber on the "
             "Redis channel received the hash (negative: published before the revoke answer "
             "arrived), and from there to the last replica's refusal.")
    L.append("")
    L.append("| revoked by | t0 → channel p50 / p99 | channel → last replica p50 / p99 | "
             "per replica p50 (1 / 2 / 3) |")
    L.append("|---|---:|---:|---|")
    for k, r in ctx["results"].items():
        tc, cl = r["to_channel"], r["channel_to_last"]
        pr = " / ".join(fmt_ms(x["p50"]) for x in r["per_replica"])
        L.append(f"| {k} | {fmt_ms(tc['p50'])} / {fmt_ms(tc['p99'])} | {fmt_ms(cl['p50'])} / "
                 f"{fmt_ms(cl['p99'])} | {pr} |")
    odd = {k: r["odd"] for k, r in ctx["results"].items() if r["odd"]}
    if odd:
        L.append("")
        L.append(f"Answers other than 200/401 while polling: {odd}")
    cpu = ctx["cpu"]
    L.append("")
    L.append(f"## Where the CPU went ({ctx['seconds']:.1f} s of revocations, 2 cores = 2.00)")
    L.append("")
    cols = ["PostgreSQL", "Redis", "authsvc", "gateway1", "gateway2", "gateway3", "demo upstream",
            "bench script", "other processes", "machine_busy"]
    L.append("| " + " | ".join(c.replace("machine_busy", "machine busy") for c in cols) + " |")
    L.append("|" + "---:|" * len(cols))
    L.append("| " + " | ".join(f"{cpu.get(c, 0.0):.2f}" for c in cols) + " |")
    L.append("")
    L.append("\"bench script\": the poll loop and the Redis subscriber. \"other processes\": "
             "everything this bench did not start, plus kernel time charged to no process; when it "
             "is well above 0.2 the machine was busy with something else and the tail (p99, max) "
             "is inflated by it.")
    if ctx.get("problems"):
        L.append("")
        L.append("Problems at shutdown: " + "; ".join(ctx["problems"]))
    L.append("")
    L.append("## Command")
    L.append("")
    L.append("    " + " ".join(shlex.quote(x) for x in ["/usr/bin/python3", "bench/revocation_bench.py",
                                                        *sys.argv[1:]]))
    L.append("")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=250, help="revocations per kind (default 250)")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for all three (default 2)")
    ap.add_argument("--floor-rounds", type=int, default=500)
    ap.add_argument("--gateway-workers", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=120.0, help="bound on the revocation phase")
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args()
    if args.count < 1:
        ap.error("--count must be positive")
    ctx = run(args)
    text = report(ctx)
    print(text)
    if args.out:
        tmp = args.out + ".tmp"
        Path(tmp).write_text(text)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        H.kill_all()
        sys.exit(130)
