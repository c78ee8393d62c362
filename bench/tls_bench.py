#!/usr/bin/python3
"""TLS and HTTP/2 at the front (issue 26): the gateway beside nginx with the same
certificate, protocols and TLS 1.2 cipher list, side by side in one run.

    /usr/bin/python3 bench/tls_bench.py [--rounds 3] [--seconds 5] [--key ec|rsa]
        [--clients 2] [--connections 50] [--streams 10] [--only ROWS] [--out FILE]

PostgreSQL, Redis, authsvc and the demo upstream through tests/e2e/pcsupport
(pcsupport.cluster, no gateway of its own); one gateway (GATEWAY_WORKERS=2, TLS on
its public listener, HTTP/2 on, access log off) and nginx (worker_processes 2,
`listen ... ssl http2`, access log off, session tickets as its default) on
loopback, both on one self-signed certificate (P-256 by default, `--key rsa`:
RSA 2048). Rows, each run --rounds times, gateway then nginx, for --seconds:

- full handshakes/s, TLS 1.3 and TLS 1.2: `openssl s_time -new` (--clients
  processes at once); each connection is one handshake, `GET /live` (answered by
  the server itself: the gateway's liveness check, an nginx `return 200`) and close;
- resumed handshakes/s, TLS 1.3 and TLS 1.2: `openssl s_time -reuse`, every
  connection resuming the first one's session (the report counts the connections
  that really resumed);
- proxied requests/s over HTTPS keep-alive: `h2load` (Debian's nghttp2-client)
  with --connections connections for --seconds, `GET /k/x` with a cached API key
  (the gateway checks it; nginx only forwards it) to the demo upstream, HTTP/1.1
  (`--h1`) and HTTP/2 (--streams streams per connection).

Beside each rate the server's CPU time per handshake or request (all its threads or
processes, from /proc), which stays meaningful when the client is what limits the
rate (the client shares the machine's cores). Everything listens on 127.0.0.1, every
run is bounded in time, every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
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
from pcsupport.fds import cpu_seconds  # noqa: E402
from gateway_bench import NGINX_CONF, clean_env  # noqa: E402
from signin_storm import git_rev, machine, write_report  # noqa: E402

# The gateway's TLS 1.2 list (gateway/tls_front.c), given to nginx as well.
CIPHERS12 = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
             "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
             "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")

# TLS and HTTP/2 on gateway_bench's nginx, and /live answered by nginx itself.
NGINX_TLS = """
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers on;
        location = /live {{
            return 200 "ok\\n";
        }}"""


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
        path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found (apt-get install {package})")
    return path


def make_cert(d: Path, kind: str):
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "bench.crt", d / "bench.key"
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-days", "7", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Nginx:
    def __init__(self, workdir: Path, up_port: int, cert: Path, key: Path, workers: int = 2):
        self.exe = tool("nginx", "nginx-light")
        self.dir = workdir / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = H.free_port()
        conf = self.dir / "nginx.conf"
        tls = NGINX_TLS.format(cert=cert, key=key, ciphers=CIPHERS12)
        conf.write_text(NGINX_CONF.format(workers=workers, dir=self.dir, up_port=up_port,
                                          port=self.port, listen_extra=" ssl http2",
                                          server_extra=tls))
        argv = [self.exe, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)]
        r = H.run_bounded([*argv, "-t"], timeout=30)
        if r.returncode != 0:
            raise SystemExit(f"nginx -t failed:\n{r.stderr.decode(errors='replace')}")
        self.proc = H.Proc(argv, env=clean_env({}), stdout=self.dir / "stdout",
                           stderr=self.dir / "stderr", name="nginx")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}",
                               "-brief"], input=b"", capture_output=True,
                              timeout=10).returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("nginx did not answer TLS within 20 s")

    def pids(self) -> list:
        """The master and its workers (the workers do the work)."""
        pid = self.proc.pid
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        return [pid, *map(int, kids)]

    def stop(self):
        self.proc.stop(timeout=10)


def cpu_of(pids) -> float:
    total = 0.0
    for p in pids:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def negotiated(port: int, version: str, cafile: Path) -> str:
    """Protocol and cipher of one handshake, as openssl s_client sees them."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-brief",
                        f"-{version}", "-CAfile", str(cafile), "-servername", "localhost"],
                       input=b"", capture_output=True, timeout=10)
    out = r.stderr.decode(errors="replace") + r.stdout.decode(errors="replace")
    proto = re.search(r"Protocol version: (\S+)", out)
    ciph = re.search(r"Ciphersuite: (\S+)", out)
    group = re.search(r"(?:Negotiated TLS1.3 group|Server Temp Key): ([^\n]+)", out)
    return " ".join(x.group(1).strip() for x in (proto, ciph, group) if x) or "handshake failed"


def s_time(port: int, version: str, reuse: bool, clients: int, seconds: int) -> dict:
    """`openssl s_time` from `clients` processes at once: connections/s and how many
    of them resumed a session."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", f"-{version}",
            "-reuse" if reuse else "-new", "-time", str(seconds), "-www", "/live"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(clients)]
    conns = resumed = fresh = 0
    ok = True
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 30)
        text = out.decode(errors="replace")
        m = re.search(r"(\d+) connections in [\d.]+ real seconds", text)
        ok = ok and p.returncode == 0 and m is not None
        conns += int(m.group(1)) if m else 0
        # s_time prints one mark per connection: '*' full, 'r' resumed
        marks = "".join(ln for ln in text.split() if set(ln) <= {"r", "*"})
        resumed += marks.count("r")
        fresh += marks.count("*")
    wall = time.monotonic() - t0
    return {"rate": conns / wall, "n": conns, "ok": ok, "resumed": resumed, "fresh": fresh,
            "wall": wall}


def h2load(exe: str, url: str, header: str, h1: bool, args) -> dict:
    argv = [exe, "-t", "1", "-c", str(args.connections), "-D", str(args.seconds),
            "--warm-up-time", "1", "-H", header]
    argv += ["--h1"] if h1 else ["-m", str(args.streams)]
    r = subprocess.run([*argv, url], capture_output=True, timeout=args.seconds + 60)
    out = r.stdout.decode(errors="replace")
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    req = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                    r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
    if not (rate and req and codes):
        raise SystemExit(f"h2load gave no result ({' '.join(argv)}):\n{out}\n"
                         f"{r.stderr.decode(errors='replace')}")
    not_2xx = sum(int(x) for x in codes.groups()[1:]) + int(req.group(4)) + int(req.group(5)) \
        + int(req.group(6))
    return {"rate": float(rate.group(1)), "n": int(req.group(3)), "ok": not_2xx == 0,
            "bad": not_2xx, "mean": mean.group(1) if mean else "?"}


ROWS = (  # (id, label, kind, detail)
    ("full13", "full handshakes/s, TLS 1.3", "hs", ("tls1_3", False)),
    ("full12", "full handshakes/s, TLS 1.2", "hs", ("tls1_2", False)),
    ("res13", "resumed handshakes/s, TLS 1.3", "hs", ("tls1_3", True)),
    ("res12", "resumed handshakes/s, TLS 1.2", "hs", ("tls1_2", True)),
    ("h1", "proxied requests/s, HTTP/1.1 keep-alive (cached API key)", "req", True),
    ("h2", "proxied requests/s, HTTP/2 (cached API key)", "req", False),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--key", choices=("ec", "rsa"), default="ec",
                    help="the certificate's key: P-256 (default) or RSA 2048")
    ap.add_argument("--clients", type=int, default=2, help="openssl s_time processes at once")
    ap.add_argument("--connections", type=int, default=50, help="h2load connections")
    ap.add_argument("--streams", type=int, default=10, help="h2load streams per HTTP/2 connection")
    ap.add_argument("--only", help="these rows only, comma separated: "
                    + ",".join(r[0] for r in ROWS))
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args()
    rows = [r for r in ROWS if not args.only or r[0] in args.only.split(",")]
    started = dt.datetime.now()
    h2l = tool("h2load", "nghttp2-client")
    work = Path(tempfile.mkdtemp(prefix="pc-tls-bench-"))
    cert, key = make_cert(work / "cert", args.key)
    cl = C.Cluster(work / "cluster", "bench-" + os.urandom(20).hex(), n_gateways=0, haproxy=False)
    gw = ng = None
    problems, results, proto = [], {}, {}
    try:
        env = G.gw_base_env(cl.pg, cl.redis, cl.secret, GATEWAY_WORKERS="2",
                            GATEWAY_TLS_CERT=str(cert), GATEWAY_TLS_KEY=str(key),
                            GATEWAY_HTTP2="on", GATEWAY_ACCESS_LOG="false")
        gw = G.Gateway(env, cl.routes, workdir=work, name="gateway-tls")
        ng = Nginx(work, int(cl.upstream.url.rsplit(":", 1)[1].split("/")[0]), cert, key)
        servers = {"gateway": (gw.port, lambda: [gw.proc.pid]), "nginx": (ng.port, ng.pids)}
        u = cl.client().sign_up(name="TLS bench")
        api_key = cl.keys.create(u.id).key
        header = f"x-api-key: {api_key}"
        for name, (port, _) in servers.items():
            for v in ("tls1_3", "tls1_2"):
                proto[(name, v)] = negotiated(port, v, cert)
            warm = h2load(h2l, f"https://127.0.0.1:{port}/k/x", header, True,
                          argparse.Namespace(connections=2, seconds=1, streams=1))
            if not warm["ok"]:
                raise SystemExit(f"{name}: /k/x with the key did not answer 2xx only: {warm}")
        for rid, _, kind, detail in rows:
            for _ in range(args.rounds):
                for name, (port, pids) in servers.items():
                    c0 = cpu_of(pids())
                    if kind == "hs":
                        res = s_time(port, detail[0], detail[1], args.clients, args.seconds)
                    else:
                        res = h2load(h2l, f"https://127.0.0.1:{port}/k/x", header, detail, args)
                    res["cpu_us"] = (cpu_of(pids()) - c0) / max(1, res["n"]) * 1e6
                    if not res["ok"]:
                        problems.append(f"{rid} {name}: {res}")
                    results.setdefault((rid, name), []).append(res)
    finally:
        if ng is not None:
            ng.stop()
        if gw is not None:
            problems += H.check_stopped(gw, fail=False)
        problems += cl.close()

    def mean(xs):
        return sum(xs) / len(xs)

    def rates(rs):
        return ", ".join(f"{r['rate']:,.0f}" for r in rs)

    cmd = (f"/usr/bin/python3 bench/tls_bench.py --rounds {args.rounds} --seconds {args.seconds} "
           f"--key {args.key} --clients {args.clients} --connections {args.connections} "
           f"--streams {args.streams}" + (f" --only {args.only}" if args.only else ""))
    nginx_v = subprocess.run([ng.exe, "-v"], capture_output=True, text=True).stderr.strip()
    h2l_v = subprocess.run([h2l, "--version"], capture_output=True, text=True).stdout.strip()
    ossl_v = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    L = [f"# TLS and HTTP/2: the gateway beside nginx ({started:%Y-%m-%d %H:%M}, {git_rev()})", "",
         f"Machine: {machine()}. {nginx_v}; {h2l_v}; {ossl_v}. Certificate: self-signed "
         f"{'P-256' if args.key == 'ec' else 'RSA 2048'}, the same file for both. Command: "
         f"`{cmd}`.", "",
         "Negotiated (openssl s_client): " + "; ".join(
             f"{n} {v.replace('tls1_', 'TLS 1.')}: {p}" for (n, v), p in proto.items()), "",
         f"Handshake rows: `openssl s_time -new|-reuse -www /live`, {args.clients} processes at "
         f"once, {args.seconds} s. Request rows: `h2load -t 1 -c {args.connections} -D "
         f"{args.seconds} --warm-up-time 1 -H 'x-api-key: ...'` (`--h1`, or `-m {args.streams}`) "
         f"on `/k/x`. {args.rounds} rounds, gateway then nginx in each.", "",
         "| row | gateway (each round) | nginx (each round) | gateway / nginx (means) "
         "| server CPU µs per handshake or request, gateway / nginx |",
         "|---|---|---|---|---|"]
    for rid, label, kind, _ in ROWS:
        g, n = results.get((rid, "gateway"), []), results.get((rid, "nginx"), [])
        if not g or not n:
            continue
        note = ""
        if kind == "hs":
            note = (f" (connections resumed: gateway {sum(r['resumed'] for r in g):,} of "
                    f"{sum(r['resumed'] + r['fresh'] for r in g):,}, nginx "
                    f"{sum(r['resumed'] for r in n):,} of "
                    f"{sum(r['resumed'] + r['fresh'] for r in n):,})")
        L.append(f"| {label}{note} | {rates(g)} | "
                 f"{rates(n)} | "
                 f"**{mean([r['rate'] for r in g]) / mean([r['rate'] for r in n]):.2f}** | "
                 f"{mean([r['cpu_us'] for r in g]):.0f} / {mean([r['cpu_us'] for r in n]):.0f} |")
    L += ["", "Goal (issue 26): gateway / nginx >= 1.00 on each row. The client shares the "
          "machine's two cores with the server (and, on the request rows, with the upstream, "
          "PostgreSQL and Redis idle), so a rate can be the client's limit; the CPU column is "
          "the server's own cost."]
    write_report(L, problems, args.out)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
