"""Helpers for the cluster e2e tests and bench/revocation_bench.py (no pytest here).

- Haproxy: haproxy from deploy/haproxy.cfg (the file `make cluster` and
  docker-compose.yml use), addresses given through its environment variables.
- Cluster: PostgreSQL, Redis, authsvc, the demo upstream, N gateway replicas and
  optionally haproxy, all pcsupport processes on free loopback ports,
  stopped by PID.
- Load: bounded background traffic (threads, each on its own keep-alive
  connection, paced) that records every answer.

    import sys; sys.path.insert(0, "tests/e2e")
    from pcsupport import cluster as C
"""

from __future__ import annotations

import csv
import http.client
import io
import os
import shutil
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pcsupport as H
import pcsupport as G

HAPROXY_CFG = H.REPO / "deploy" / "haproxy.cfg"
SESSION_PATH = "/s/load"
APIKEY_PATH = "/k/load"


def haproxy_exe() -> str | None:
    return shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)


def http_get(url: str, timeout: float = 2.0, headers: dict | None = None):
    """(status, body bytes) of a GET on a new connection; (None, b'') when nothing answers."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, http.client.HTTPException):
        return None, b""


class Haproxy:
    """haproxy -db -f deploy/haproxy.cfg in front of the given replicas [(name, port)]."""

    def __init__(self, replicas, workdir: Path, *, port: int | None = None, stats_port: int | None = None):
        exe = haproxy_exe()
        if exe is None:
            raise FileNotFoundError("haproxy not found: `make deps` installs it (Debian package haproxy)")
        if [n for n, _ in replicas] != ["gateway1", "gateway2", "gateway3"]:
            raise ValueError("deploy/haproxy.cfg names exactly gateway1..gateway3")
        self.port = port or H.free_port()
        self.stats_port = stats_port or H.free_port()
        self.replicas = list(replicas)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"haproxy-{self.port}.log"
        self.env = {"PATH": "/usr/sbin:/usr/bin:/bin",
                    "HAPROXY_BIND": f"127.0.0.1:{self.port}",
                    "HAPROXY_STATS_BIND": f"127.0.0.1:{self.stats_port}"}
        for name, p in self.replicas:
            self.env[f"{name.upper()}_ADDR"] = f"127.0.0.1:{p}"
        self.proc = H.Proc([exe, "-db", "-f", HAPROXY_CFG], env=self.env, stdout=self.log_path,
                           stderr=self.log_path, name="haproxy")
        try:
            H.wait_until(self._live, 10, interval=0.05, what="haproxy /live")
        except BaseException:
            self.proc.kill()
            raise

    def _live(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{H.tail(self.log_path)}")
        return http_get(f"http://127.0.0.1:{self.stats_port}/live", timeout=1)[0] == 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def servers(self) -> dict:
        """{server name: status} from the stats CSV (UP, DOWN, 'UP 1/2', ...)."""
        st, body = http_get(f"http://127.0.0.1:{self.stats_port}/;csv", timeout=2)
        if st != 200:
            return {}
        rows = csv.reader(io.StringIO(body.decode().lstrip("# ")))
        head = next(rows)
        i_px, i_sv, i_st = head.index("pxname"), head.index("svname"), head.index("status")
        return {r[i_sv]: r[i_st] for r in rows
                if len(r) > i_st and r[i_px] == "gateways" and r[i_sv] not in ("FRONTEND", "BACKEND")}

    def wait_servers(self, want: dict | str = "UP", timeout: float = 15.0):
        """Until every server (want: a status) or the named ones (want: {name: status}) match."""
        if isinstance(want, str):
            want = {n: want for n, _ in self.replicas}
        last = {}

        def ok():
            last.update(self.servers())
            return all(last.get(n) == s for n, s in want.items())
        try:
            H.wait_until(ok, timeout, interval=0.05, what=f"haproxy servers {want}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last: {last}") from None
        return dict(last)

    @property
    def running(self) -> bool:
        return self.proc.running

    def stop(self, timeout: float = 16.0):
        """Soft stop (SIGUSR1: no new connections, open requests finish), bounded."""
        return self.proc.stop(signal.SIGUSR1, timeout=timeout)


class Cluster:
    """PostgreSQL, Redis, authsvc, demo upstream, `n` gateway replicas (pcsupport.make_routes) and
    haproxy in front of them.  Every process is ours and is stopped by PID in close()."""

    def __init__(self, workdir: Path, secret: str, *, n_gateways: int = 3, haproxy: bool = True,
                 gateway_env: dict | None = None, authsvc_env: dict | None = None,
                 gateway_workers: int = 2, extra_routes: list | None = None,
                 jwt_issuer: bool = False, sentinel: bool = False):
        """extra_routes: routes added to pcsupport.make_routes'; jwt_issuer: the gateways
        accept authsvc's JWTs (its JWKS, BETTER_AUTH_URL its address); sentinel: Redis is
        a master, a replica and three sentinels (pcsupport.sentinel.SentinelSet,
        self.sentinel), found by every program through REDIS_SENTINELS."""
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.secret = secret
        self.pg = self.redis = self.authsvc = self.upstream = self.haproxy = None
        self.sentinel = None
        self.gateways: list = []
        try:
            self.pg = H.Postgres()
            redis_env = {}
            if sentinel:
                from .sentinel import SentinelSet
                self.sentinel = SentinelSet(self.dir / "redis")
                self.redis = self.sentinel.nodes[0]
                redis_env = self.sentinel.env()
            else:
                self.redis = H.Redis(basedir=str(self.dir / "redis"))
            self.db_url = self.pg.create_database("authsvc")
            env = {"BETTER_AUTH_SECRET": secret, "DATABASE_URL": self.db_url,
                   "REDIS_URL": self.redis.url, "RATE_LIMIT_ENABLED": "false", **redis_env}
            env.update(authsvc_env or {})
            self.authsvc = H.Authsvc(env, workdir=str(self.dir / "authsvc"), name="authsvc-cluster")
            self.upstream = G.Upstream(self.dir)
            self.routes = G.make_routes(self.upstream.url, f"http://127.0.0.1:{H.free_port()}")
            self.routes["routes"] += extra_routes or []
            genv = G.gw_base_env(self.pg, self.redis, secret, GATEWAY_WORKERS=str(gateway_workers),
                                 **redis_env)
            if jwt_issuer:
                self.routes["jwt_issuers"] = [{"issuer": self.authsvc.origin,
                                               "jwks_uri": self.authsvc.api("/jwks")}]
                genv["BETTER_AUTH_URL"] = self.authsvc.base_url
            genv.update(gateway_env or {})
            for i in range(1, n_gateways + 1):
                self.gateways.append(G.Gateway(genv, self.routes, workdir=self.dir, name=f"gateway{i}",
                                               start=False))
            for g in self.gateways:
                g.start(wait_ready=False)
            for g in self.gateways:
                g.wait_ready(timeout=20)
            if haproxy:
                self.haproxy = Haproxy([(g.name, g.port) for g in self.gateways], self.dir)
                self.haproxy.wait_servers("UP", timeout=20)
            self.conn = self.pg.connect("authsvc")
            self.sql = G.SQL(self.conn)
            self.keys = G.ApiKeys(self.sql)
        except BaseException:
            self.close()
            raise

    # -- helpers
    def client(self, **kw) -> H.ApiClient:
        return H.ApiClient(self.authsvc, **kw)

    def sql_connect(self):
        """A fresh autocommit connection (the shared one dies with PostgreSQL)."""
        self.conn = self.pg.connect("authsvc")
        self.sql = G.SQL(self.conn)
        self.keys = G.ApiKeys(self.sql)
        return self.sql

    def gateway(self, name: str):
        return next(g for g in self.gateways if g.name == name)

    def close(self) -> list:
        """Stop everything (haproxy, gateways, authsvc, upstream, Redis, PostgreSQL);
        returns the problems found (sanitizer reports, hung shutdowns, bad exit codes)."""
        problems = []
        try:
            if getattr(self, "conn", None) is not None:
                self.conn.close()
        except Exception:  # noqa: BLE001
            pass
        if self.haproxy is not None:
            rc = self.haproxy.stop()
            if self.haproxy.proc.forced:
                problems.append("haproxy did not finish its soft stop in 16 s")
            elif rc not in (0, None):
                problems.append(f"haproxy exited with {rc}:\n{H.tail(self.haproxy.log_path, 1500)}")
        problems.extend(H.check_stopped(*[g for g in self.gateways if g.proc is not None], fail=False))
        if self.authsvc is not None:
            problems.extend(H.check_stopped(self.authsvc, fail=False))
        if self.upstream is not None:
            self.upstream.stop()
        if self.sentinel is not None:
            self.sentinel.stop()
        elif self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.cleanup()
        return problems


# ---------------------------------------------------------------------------
# Load


class Rec:
    __slots__ = ("t0", "t1", "kind", "status", "replica", "error")

    def __init__(self, t0, t1, kind, status, replica, error):
        self.t0, self.t1, self.kind, self.status, self.replica, self.error = t0, t1, kind, status, replica, error

    def __repr__(self):
        return (f"Rec({self.kind} {self.status} via {self.replica} at +{self.t0:.3f}s"
                f"{' ' + self.error if self.error else ''})")


class Load:
    """Bounded background GET traffic on 127.0.0.1:port.

    targets: [(kind, path, headers)]; thread i sends targets[i % len(targets)] at
    rate/threads requests per second on its own keep-alive connection.  Every answer is
    recorded as a Rec (status 0: no HTTP answer, error says why); times are seconds
    since start().  Stops at stop(), after max_seconds or after max_requests."""

    def __init__(self, port: int, targets, *, rate: float = 300, threads: int = 4,
                 max_seconds: float = 90.0, max_requests: int = 60000, timeout: float = 5.0):
        self.port, self.targets = port, list(targets)
        self.rate, self.nthreads = rate, threads
        self.max_seconds, self.max_requests, self.timeout = max_seconds, max_requests, timeout
        self.records: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list = []
        self.t_start = None

    def now(self) -> float:
        return time.monotonic() - self.t_start

    def start(self):
        self.t_start = time.monotonic()
        for i in range(self.nthreads):
            t = threading.Thread(target=self._run, args=(self.targets[i % len(self.targets)],),
                                 name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, target):
        kind, path, headers = target
        interval = self.nthreads / self.rate
        conn = None
        nxt = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self.t_start > self.max_seconds or len(self.records) >= self.max_requests:
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            t0 = self.now()
            status, replica, err = 0, None, None
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                replica = resp.getheader("x-portcullis-replica")
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                err = f"{type(e).__name__}: {e}"
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass
                conn = None
            rec = Rec(t0, self.now(), kind, status, replica, err)
            with self._lock:
                self.records.append(rec)
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -1.0:
                nxt = time.monotonic()          # fell behind: no burst to catch up
        if conn is not None:
            conn.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- reading the records
    def snapshot(self) -> list:
        with self._lock:
            return list(self.records)

    def between(self, t_from: float, t_to: float | None = None) -> list:
        return [r for r in self.snapshot() if r.t0 >= t_from and (t_to is None or r.t0 <= t_to)]

    def failures(self, recs=None) -> list:
        return [r for r in (self.snapshot() if recs is None else recs) if r.status != 200]

    def summary(self, recs=None) -> str:
        recs = self.snapshot() if recs is None else recs
        by = {}
        for r in recs:
            k = (r.kind, r.status)
            by[k] = by.get(k, 0) + 1
        span = (recs[-1].t1 - recs[0].t0) if recs else 0.0
        reps = {}
        for r in recs:
            reps[r.replica] = reps.get(r.replica, 0) + 1
        return (f"{len(recs)} requests in {span:.1f}s ({len(recs) / span if span else 0:.0f}/s): "
                + ", ".join(f"{k}={s}:{n}" for (k, s), n in sorted(by.items(), key=str))
                + f"; by replica {dict(sorted(reps.items(), key=str))}")

    def wait_count(self, n: int, timeout: float = 10.0):
        """Until n more answers than now were recorded (bounded)."""
        start = len(self.records)
        H.wait_until(lambda: len(self.records) >= start + n, timeout, interval=0.02,
                     what=f"{n} more load answers")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def cluster_fixture(workdir: Path, secret: str, **kw):
    """A Cluster for a module-scoped fixture to `yield from`: stopped after the module,
    and the module fails on what close() found (sanitizer reports, hung shutdowns)."""
    import pytest
    if kw.get("haproxy", True) and haproxy_exe() is None:
        pytest.fail("haproxy not found: the cluster tests need it (make deps installs the Debian "
                    "package haproxy)", pytrace=False)
    cl = Cluster(workdir, secret, **kw)
    try:
        yield cl
    finally:
        problems = cl.close()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


# ---------------------------------------------------------------------------
# Checks on every replica


def warm(g, user=None, key=None):
    """Two requests each: the credential sits in g's L1 afterwards."""
    for _ in range(2):
        if user is not None:
            r = g.get("/s/x", headers=H.cookie(user))
            assert r.status_code == 200, f"{g.name}: {r.status_code} {r.text[:200]}"
        if key is not None:
            r = g.get("/k/x", headers={"x-api-key": key.key})
            assert r.status_code == 200, f"{g.name}: {r.status_code} {r.text[:200]}"


def every_replica_refuses(cluster, path, headers, label, within=2.0):
    """Polls each replica directly until it answers 401; returns {replica: seconds}."""
    took = {}
    for g in cluster.gateways:
        t, seen = H.poll_until_status(lambda: g.get(path, headers=headers), 401, within, interval=0.01)
        assert set(seen) <= {200, 401}, f"{label} on {g.name}: {seen}"
        took[g.name] = t
    return took
