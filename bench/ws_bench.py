#!/usr/bin/python3
"""WebSocket tunnels through the gateway (issue 15): how soon a revocation closes
them on three replicas, what one tunnel carries beside a direct connection, and what
10,000 idle tunnels cost.

    /usr/bin/python3 bench/ws_bench.py [--count 500] [--idle 10000] [--seconds 5] [--out FILE]

1. Revocation -> close frame. PostgreSQL, Redis, authsvc and three gateways
   (GATEWAY_WORKERS=2 each, L1_TTL_SECONDS=300 s) through tests/e2e/pcsupport, a
   WebSocket echo upstream (python3-websockets). --count times for each kind,
   interleaved: a session inserted with SQL; one tunnel to each replica with its
   cookie (raw sockets: handshake, one echoed frame, so the tunnel is open); then
     authsvc sign-out     POST /api/auth/sign-out; t0 = its 200 answer read
     SQL DELETE session   DELETE FROM "session" (autocommit); t0 = the commit returned
   and delay = when each replica's close frame (code 4001) was read - t0; the
   round's figure is its last replica's.
2. Echo through one tunnel beside one direct connection to the same upstream, for
   --seconds each: ping-pong of 1 KiB messages (messages/s) and 64 KiB messages,
   32 in flight (MB/s each way).
3. --idle tunnels held open and silent on one gateway (GATEWAY_WORKERS=2) to an
   upstream that only completes the handshake (a child process of this bench, so
   that neither process runs out of descriptors): the gateway's RSS before and
   after, per tunnel; and the CPU the gateway spends over 10 s while they idle.

Prints a markdown report (and writes it to --out). Every wait is bounded; every
process is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import http.client
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "bench")]
import pcsupport as H  # noqa: E402
import pcsupport as G  # noqa: E402
from pcsupport import cluster as C  # noqa: E402
from pcsupport.wsupstream import WsUpstream  # noqa: E402
from revocation_bench import fmt_ms, insert_sessions, summarize  # noqa: E402
from signin_storm import git_rev, machine  # noqa: E402

GOAL_P99_MS = 5.0
GOAL_IDLE_KIB = 8.0
KINDS = ("authsvc sign-out", "SQL DELETE session")
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------
# raw WebSocket client ends (the measured paths do no more than they must)


def ws_open(port: int, path: str, header: str = "", timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
               f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
               f"{header}\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {buf[:200]!r}")
        buf += chunk
    if not buf.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {buf[:300]!r}")
    return s


def masked(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def ws_echo_once(s: socket.socket):
    s.sendall(masked(b"x"))
    got = b""
    while len(got) < 3:
        chunk = s.recv(64)
        if not chunk:
            raise ConnectionError("closed before the echo")
        got += chunk
    assert got[:3] == b"\x81\x01x", got


def wait_close_frames(socks: list, timeout: float) -> list:
    """For each socket: (monotonic time its close frame's first bytes were read, code), or
    (None, None) if none came within timeout."""
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    out = [(None, None)] * len(socks)
    bufs = [b""] * len(socks)
    left = len(socks)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, deadline - time.monotonic())):
            i = key.data
            try:
                chunk = socks[i].recv(4096)
            except BlockingIOError:
                continue
            now = time.monotonic()
            bufs[i] += chunk
            if not chunk or len(bufs[i]) >= 4:
                code = int.from_bytes(bufs[i][2:4], "big") if bufs[i][:1] == b"\x88" else None
                out[i] = (now, code)
                sel.unregister(socks[i])
                left -= 1
    sel.close()
    return out


# ---------------------------------------------------------------------------
# 1. revocation -> close frame on three replicas


def bench_revocation(args, cl, ctx: dict):
    c = cl.client()
    u = c.sign_up(name="WebSocket revocation bench")
    n = args.count
    tokens = {k: insert_sessions(cl.sql, u.id, n) for k in KINDS}
    auth = http.client.HTTPConnection("127.0.0.1", cl.authsvc.port, timeout=10)
    delays = {k: [] for k in KINDS}
    per_replica = {k: [[] for _ in cl.gateways] for k in KINDS}
    missed = {k: 0 for k in KINDS}
    wrong_code = {k: 0 for k in KINDS}
    t_start = time.monotonic()
    for i in range(n):
        if time.monotonic() - t_start > args.max_seconds:
            break
        for kind in KINDS:
            tok = tokens[kind][i]
            cookie = f"{H.SESSION_COOKIE}={H.cookie_value(cl.secret, tok)}"
            socks = [ws_open(g.port, "/ws/echo", f"Cookie: {cookie}\r\n") for g in cl.gateways]
            for s in socks:
                ws_echo_once(s)
            if kind == "authsvc sign-out":
                auth.request("POST", "/api/auth/sign-out", body=b"{}",
                             headers={"Cookie": cookie, "Origin": cl.authsvc.origin,
                                      "Content-Type": "application/json"})
                r = auth.getresponse()
                r.read()
                assert r.status == 200, r.status
            else:
                assert cl.sql.execute('delete from "session" where token = %s', (tok,)) == 1
            t0 = time.monotonic()
            got = wait_close_frames(socks, args.timeout)
            for s in socks:
                s.close()
            if any(t is None for t, _ in got):
                missed[kind] += 1
                continue
            wrong_code[kind] += sum(code != 4001 for _, code in got)
            for j, (t, _) in enumerate(got):
                per_replica[kind][j].append((t - t0) * 1e3)
            delays[kind].append((max(t for t, _ in got) - t0) * 1e3)
    ctx["rev"] = {"delays": {k: summarize(v) for k, v in delays.items()},
                  "per_replica": {k: [summarize(x) for x in v] for k, v in per_replica.items()},
                  "missed": missed, "wrong_code": wrong_code,
                  "all": summarize(sum(delays.values(), []))}
    c.close()


# ---------------------------------------------------------------------------
# 2. echo through one tunnel beside a direct connection


async def _pingpong(url, seconds):
    import websockets
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        msg = b"p" * 1024
        n, t_end = 0, time.monotonic() + seconds
        while time.monotonic() < t_end:
            await ws.send(msg)
            await ws.recv()
            n += 1
        return n / seconds


async def _bulk(url, seconds, inflight=32):
    import websockets
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        msg = b"b" * 65536
        for _ in range(inflight):
            await ws.send(msg)
        n, t0 = 0, time.monotonic()
        t_end = t0 + seconds
        while time.monotonic() < t_end:
            await ws.recv()
            n += 1
            await ws.send(msg)
        took = time.monotonic() - t0
        for _ in range(inflight):
            await ws.recv()
        return n * 65536 / took / 1e6


def bench_echo(args, work: Path, ctx: dict, cl):
    up = WsUpstream()
    routes = {"routes": [{"prefix": "/ws/", "upstream": up.url, "auth": ["none"]}]}
    g = G.Gateway(G.gw_base_env(cl.pg, cl.redis, cl.secret, GATEWAY_WORKERS="2"), routes,
                  workdir=work, name="gateway-ws-echo")
    try:
        res = {}
        for label, url in (("direct", f"ws://127.0.0.1:{up.port}/echo"),
                           ("gateway", f"ws://127.0.0.1:{g.port}/ws/echo")):
            res[label] = {"msgs": asyncio.run(_pingpong(url, args.seconds)),
                          "mbs": asyncio.run(_bulk(url, args.seconds))}
        ctx["echo"] = res
    finally:
        problems = H.check_stopped(g, fail=False)
        up.stop()
        if problems:
            ctx.setdefault("problems", []).extend(problems)


# ---------------------------------------------------------------------------
# 3. idle tunnels


IDLE_UPSTREAM = r"""
import asyncio, base64, hashlib, sys
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
async def serve(r, w):
    head = await r.readuntil(b"\r\n\r\n")
    key = b""
    for ln in head.split(b"\r\n"):
        if ln.lower().startswith(b"sec-websocket-key:"):
            key = ln.split(b":", 1)[1].strip()
    acc = base64.b64encode(hashlib.sha1(key + GUID).digest())
    w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    await w.drain()
    while await r.read(65536):
        pass
    w.close()
async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(float(sys.argv[1]))
asyncio.run(main())
"""


def _rss_kib(pid):
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def _cpu_s(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def bench_idle(args, work: Path, ctx: dict, cl):
    child = subprocess.Popen(["/usr/bin/python3", "-c", IDLE_UPSTREAM, str(args.max_seconds)],
                             stdout=subprocess.PIPE, text=True)
    socks = []
    g = None
    try:
        port = int(child.stdout.readline())
        routes = {"routes": [{"prefix": "/ws/", "upstream": f"http://127.0.0.1:{port}",
                              "auth": ["none"]}]}
        env = G.gw_base_env(cl.pg, cl.redis, cl.secret, GATEWAY_WORKERS="2",
                            GATEWAY_MAX_TUNNELS=str(args.idle + 100),
                            GATEWAY_MAX_CONNS=str(args.idle + 1000),
                            UPSTREAM_POOL=str(args.idle + 1000))
        g = G.Gateway(env, routes, workdir=work, name="gateway-ws-idle")
        pid = g.proc.pid
        warm = [ws_open(g.port, "/ws/idle") for _ in range(200)]   # pools, arenas, tables
        for s in warm:
            s.close()
        time.sleep(0.5)
        before = _rss_kib(pid)
        base0, b0 = _cpu_s(pid), time.monotonic()
        time.sleep(10)
        base_ms = (_cpu_s(pid) - base0) * 1e3 / (time.monotonic() - b0)
        t0 = time.monotonic()
        for _ in range(args.idle):
            socks.append(ws_open(g.port, "/ws/idle", timeout=10))
        opened_s = time.monotonic() - t0
        time.sleep(1.0)
        after = _rss_kib(pid)
        open_now = g.stats().get("tunnels_open")
        cpu0, w0 = _cpu_s(pid), time.monotonic()
        time.sleep(10)
        cpu1, w1 = _cpu_s(pid), time.monotonic()
        ctx["idle"] = {"n": len(socks), "open": open_now, "before": before, "after": after,
                       "per_kib": (after - before) / len(socks), "opened_s": opened_s,
                       "cpu_ms_per_s": (cpu1 - cpu0) * 1e3 / (w1 - w0), "cpu_s": cpu1 - cpu0,
                       "base_ms_per_s": base_ms}
    finally:
        for s in socks:
            s.close()
        if g is not None:
            problems = H.check_stopped(g, fail=False)
            if problems:
                ctx.setdefault("problems", []).extend(problems)
        child.kill()
        child.wait(timeout=10)


# ---------------------------------------------------------------------------


def report(ctx: dict) -> str:
    a = ctx["args"]
    L = [f"# WebSocket tunnels: revocation, echo, idle ({ctx['started']:%Y-%m-%d %H:%M})", "",
         f"Commit `{git_rev()}`, {machine()}.", "",
         f"    /usr/bin/python3 bench/ws_bench.py --count {a.count} --idle {a.idle} "
         f"--seconds {a.seconds}", ""]
    if "rev" in ctx:
        rv = ctx["rev"]
        L += ["## Revocation -> close frame, three replicas", "",
              f"From the revocation's return to the last replica's close frame read by its "
              f"client (goal: p99 under {GOAL_P99_MS:.0f} ms).", "",
              "| kind | n | p50 | p90 | p99 | max | no close in time | code not 4001 |",
              "|---|---|---|---|---|---|---|---|"]
        for k in KINDS:
            d = rv["delays"][k]
            L.append(f"| {k} | {d['n']} | {fmt_ms(d['p50'])} | {fmt_ms(d['p90'])} | "
                     f"{fmt_ms(d['p99'])} | {fmt_ms(d['max'])} | {rv['missed'][k]} | "
                     f"{rv['wrong_code'][k]} |")
        d = rv["all"]
        L += [f"| all | {d['n']} | {fmt_ms(d['p50'])} | {fmt_ms(d['p90'])} | {fmt_ms(d['p99'])} | "
              f"{fmt_ms(d['max'])} | | |", "", "Per replica, p50 / p99:", ""]
        for k in KINDS:
            L.append(f"- {k}: " + ", ".join(f"gateway{j + 1} {fmt_ms(x['p50'])} / {fmt_ms(x['p99'])}"
                                           for j, x in enumerate(rv["per_replica"][k])))
        L.append("")
    if "echo" in ctx:
        e = ctx["echo"]
        L += ["## Echo, one connection", "",
              "| | 1 KiB ping-pong, messages/s | 64 KiB x 32 in flight, MB/s |", "|---|---|---|"]
        for k in ("direct", "gateway"):
            L.append(f"| {k} | {e[k]['msgs']:.0f} | {e[k]['mbs']:.1f} |")
        L += [f"| gateway / direct | {e['gateway']['msgs'] / e['direct']['msgs']:.2f} | "
              f"{e['gateway']['mbs'] / e['direct']['mbs']:.2f} |", "",
              "The upstream and the client are Python (python3-websockets) on the same two "
              "cores as the gateway, so the direct figure is theirs; the ratio is what the "
              "gateway's hop costs them.", ""]
    if "idle" in ctx:
        i = ctx["idle"]
        L += ["## Idle tunnels", "",
              f"{i['n']} tunnels opened in {i['opened_s']:.1f} s (gauge tunnels_open: {i['open']}); "
              f"gateway RSS {i['before']} KiB before, {i['after']} KiB with them open: "
              f"**{i['per_kib']:.1f} KiB per tunnel** (goal: under {GOAL_IDLE_KIB:.0f} KiB; "
              "the kernel's socket buffers are not in it).", "",
              f"CPU of the gateway over 10 s while they idled: {i['cpu_s'] * 1e3:.0f} ms "
              f"({i['cpu_ms_per_s']:.1f} ms per second; {i['base_ms_per_s']:.1f} ms per second "
              "over 10 s before they were opened).",
              ""]
    if ctx.get("problems"):
        L += ["## Problems", ""] + [f"- {p}" for p in ctx["problems"]] + [""]
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500, help="revocations per kind (default 500)")
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a close frame")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per echo measurement")
    ap.add_argument("--idle", type=int, default=10000, help="idle tunnels (default 10000)")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="bound on each phase")
    ap.add_argument("--only", choices=["revocation", "echo", "idle"], help="one part only")
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args()
    # 10,000 tunnels are 20,000 descriptors in the gateway (client and upstream sides)
    want = max(65536, 2 * args.idle + 4096)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = {"started": dt.datetime.now(), "args": args}
    work = Path(tempfile.mkdtemp(prefix="pc-ws-bench-"))
    up = WsUpstream()
    cl = None
    try:
        # PostgreSQL (migrated by authsvc), Redis, three gateways with a /ws/ route;
        # the echo and idle gateways are started on the same stores
        cl = C.Cluster(work / "cluster", "bench-" + os.urandom(20).hex(), n_gateways=3,
                       haproxy=False, gateway_workers=2,
                       extra_routes=[{"prefix": "/ws/", "upstream": up.url, "auth": ["session"]}])
        if args.only in (None, "revocation"):
            bench_revocation(args, cl, ctx)
        if args.only in (None, "echo"):
            bench_echo(args, work, ctx, cl)
        if args.only in (None, "idle"):
            bench_idle(args, work, ctx, cl)
    finally:
        if cl is not None:
            ctx.setdefault("problems", []).extend(cl.close())
        up.stop()
        H.kill_all()
    text = report(ctx)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        H.kill_all()
        sys.exit(130)
