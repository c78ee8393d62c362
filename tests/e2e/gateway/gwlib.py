"""Helpers for the gateway e2e tests: Gateway and Upstream processes, API key rows,
credential headers, assertions and a raw HTTP client.  No pytest fixtures here
(those are in conftest.py); test modules `import gwlib as G`."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import string
import time
import urllib.parse
from pathlib import Path

import requests

import harness as H

# Every variable the gateway reads (gateway/config.c): stripped from the inherited
# environment so that a developer's shell never leaks into a test gateway.
GATEWAY_ENV_VARS = (
    "GATEWAY_LISTEN", "GATEWAY_WORKERS", "GATEWAY_ROUTES", "UPSTREAM_URL", "DATABASE_URL",
    "REDIS_URL", "REDIS_PREFIX", "REVOCATION_CHANNEL", "BETTER_AUTH_SECRET", "BETTER_AUTH_URL",
    "GATEWAY_LOG", "LOG_LEVEL", "L1_MAX_ENTRIES", "L1_TTL", "L1_NEGATIVE_TTL", "L1_DEGRADED_TTL",
    "GATEWAY_PG_POOL", "GATEWAY_PG_TIMEOUT_MS", "GATEWAY_REDIS_TIMEOUT_MS",
    "GATEWAY_REDIS_DEADLINE_MS", "UPSTREAM_POOL",
    "UPSTREAM_TIMEOUT", "GATEWAY_MAX_BODY", "GATEWAY_MAX_HEADERS", "SESSION_EXPIRES_IN",
    "SESSION_UPDATE_AGE", "GATEWAY_PENDING_MAX", "L2_ENABLED", "BEARER_REQUIRE_SIGNATURE",
    "FORWARD_AUTH_PROXY", "FORWARD_AUTH_URI_HEADER", "FORWARD_AUTH_METHOD_HEADER",
    "FORWARD_AUTH_HOST_HEADER",
)

MAX_BODY = 3 * 1024 * 1024          # GATEWAY_MAX_BODY of the main gateway
UPSTREAM_TIMEOUT = 1                # seconds (UPSTREAM_TIMEOUT of the main gateway)
KEY_PREFIX = "pc_"

GW_LOGS: list = []                  # every gateway log/stderr file of the run


# ---------------------------------------------------------------------------
# processes


def gateway_env(env: dict | None = None) -> dict:
    base = {k: v for k, v in os.environ.items()
            if k not in GATEWAY_ENV_VARS and k not in H.AUTHSVC_ENV_VARS}
    base.setdefault("TZ", "UTC")
    for k, v in (env or {}).items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = str(v)
    return base


def wait_port(port: int, timeout: float = 10.0, proc=None, what="port"):
    """Until something accepts on 127.0.0.1:port; fails at once if proc exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: nothing listens on 127.0.0.1:{port} after {timeout}s")
        time.sleep(0.02)


class Upstream:
    """tools/demo_upstream.c on a free loopback port."""

    def __init__(self, workdir: Path, threads: int = 2):
        self.port = H.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / f"demo-upstream-{self.port}.stderr"
        exe = H.binary("demo-upstream")
        if not exe.exists():
            raise FileNotFoundError(f"{exe} not found: run make (or set PORTCULLIS_BUILD)")
        self.proc = H.Proc([exe, f"127.0.0.1:{self.port}", str(threads)], env=gateway_env(),
                           stdout=workdir / f"demo-upstream-{self.port}.stdout",
                           stderr=self.stderr_path, name="demo-upstream")
        wait_port(self.port, 10, self.proc, "demo-upstream")

    def stop(self):
        return self.proc.stop(signal.SIGTERM, timeout=5)


class Gateway:
    """build/gateway with env on top of a clean base; waits until it can decide.

    routes: a dict written to a JSON file (GATEWAY_ROUTES) or None (use env as given)."""

    def __init__(self, env: dict, routes: dict | None = None, *, workdir: Path, name: str = "gateway",
                 start: bool = True, wait_ready: bool = True):
        self.name = name
        self.exe = H.binary("gateway")
        if not self.exe.exists():
            raise FileNotFoundError(f"{self.exe} not found: run make (or set PORTCULLIS_BUILD)")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        if "GATEWAY_LISTEN" not in self.env:
            self.port = H.free_port()
            self.env["GATEWAY_LISTEN"] = f"127.0.0.1:{self.port}"
        else:
            self.port = int(self.env["GATEWAY_LISTEN"].rsplit(":", 1)[1])
        uniq = f"{name}-{self.port}"
        if routes is not None:
            rf = self.dir / f"{uniq}.routes.json"
            rf.write_text(json.dumps(routes, indent=1))
            self.env["GATEWAY_ROUTES"] = str(rf)
        self.env.setdefault("GATEWAY_LOG", str(self.dir / f"{uniq}.log"))
        self.env.setdefault("GATEWAY_WORKERS", "2")
        self.log_path = Path(self.env["GATEWAY_LOG"])
        self.stderr_path = self.dir / f"{uniq}.stderr"
        GW_LOGS.extend([self.log_path, self.stderr_path])
        self.proc = None
        self.exit_code = None
        self.http = requests.Session()
        self.http.trust_env = False
        if start:
            self.start(wait_ready=wait_ready)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self, wait_ready: bool = True, timeout: float = 20.0):
        self.proc = H.Proc([self.exe], env=gateway_env(self.env), cwd=str(self.dir),
                           stdout=self.dir / f"{self.name}-{self.port}.stdout",
                           stderr=self.stderr_path, name=self.name)

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start:\n"
                                   f"{H._tail(self.stderr_path)}")
            try:
                if requests.get(self.url("/live"), timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name}: no /live within {timeout}s:\n{H._tail(self.stderr_path)}")
            time.sleep(0.03)
        if wait_ready:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, timeout: float = 15.0, *, postgres="ok", redis="ok", revocations="subscribed",
                   streak: int = 6):
        """Polls /ready (new connection each time, so every worker is asked) until
        `streak` answers in a row show the wanted states (None: don't care)."""
        state = {"n": 0, "last": None}

        def ok():
            r = requests.get(self.url("/ready"), timeout=2, headers={"Connection": "close"})
            b = r.json()
            state["last"] = b
            good = all(want is None or b.get(k) == want
                       for k, want in (("postgres", postgres), ("redis", redis),
                                       ("revocations", revocations)))
            state["n"] = state["n"] + 1 if good else 0
            return state["n"] >= streak
        try:
            H.wait_until(ok, timeout, interval=0.02, what=f"{self.name} /ready")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last /ready: {state['last']}") from None
        return state["last"]

    def ready(self) -> dict:
        return requests.get(self.url("/ready"), timeout=2, headers={"Connection": "close"}).json()

    def stats(self) -> dict:
        r = requests.get(self.url("/_stats"), timeout=2)
        assert r.status_code == 200, r.text
        return r.json()

    # requests through the gateway (keep-alive session)
    def request(self, method, path, **kw):
        kw.setdefault("timeout", 10)
        kw.setdefault("allow_redirects", False)
        return self.http.request(method, self.url(path), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    @property
    def running(self):
        return self.proc is not None and self.proc.running

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0):
        self.http.close()
        if self.proc is None:
            return self.exit_code
        self.exit_code = self.proc.stop(signal.SIGTERM, timeout=timeout)
        return self.exit_code

    def kill(self):
        self.http.close()
        if self.proc is not None:
            self.exit_code = self.proc.kill()

    def check_stopped(self):
        """Stop, then fail on a sanitizer report, a forced kill or a non-zero exit."""
        rc = self.stop(timeout=10)
        report = H.sanitizer_report(self.stderr_text())
        problems = []
        if report:
            problems.append(f"{self.name}: sanitizer report in {self.stderr_path}:\n{report}")
        if self.proc is not None and self.proc.forced:
            problems.append(f"{self.name} did not exit within 10 s of SIGTERM")
        elif rc not in (0, None):
            problems.append(f"{self.name} exited with {rc} after SIGTERM:\n{H._tail(self.stderr_path, 2000)}")
        return problems


def gw_base_env(pg, redis_srv, secret, dbname="authsvc", **extra) -> dict:
    env = {
        "DATABASE_URL": pg.url(dbname),
        "REDIS_URL": redis_srv.url,
        "BETTER_AUTH_SECRET": secret,
        "GATEWAY_WORKERS": "2",
        "LOG_LEVEL": "info",
        "UPSTREAM_TIMEOUT": str(UPSTREAM_TIMEOUT),
        "GATEWAY_MAX_BODY": str(MAX_BODY),
        "L1_TTL": "300",            # revocation must not wait for a TTL
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def make_routes(up: str, dead: str) -> dict:
    """One route of every kind, all to the demo upstream (except /dead/)."""
    return {"routes": [
        {"prefix": "/s/", "upstream": up, "auth": ["session"]},
        {"prefix": "/k/", "upstream": up, "auth": ["api_key"]},
        {"prefix": "/m/", "upstream": up, "auth": ["session", "api_key"]},
        {"prefix": "/mj/", "upstream": up, "auth": ["session", "jwt", "api_key"]},
        {"prefix": "/j/", "upstream": up, "auth": ["jwt"]},
        {"prefix": "/pub/", "upstream": up, "auth": ["none"]},
        {"prefix": "/perm/", "upstream": up, "auth": ["api_key"],
         "permissions": {"files": ["read", "write"], "projects": ["list"]}},
        {"prefix": "/mperm/", "upstream": up, "auth": ["session", "api_key"],
         "permissions": {"files": ["read"]}},
        {"prefix": "/oc/:apiKey/", "upstream": up, "auth": ["api_key"]},
        {"prefix": "/fc/", "upstream": up, "auth": ["session"], "forward_cookies": True},
        {"prefix": "/based/", "upstream": up + "/base", "auth": ["session", "api_key"]},
        {"prefix": "/dead/", "upstream": dead, "auth": ["none"]},
        # the demo upstream's special paths (forwarded as they are)
        {"prefix": "/status/", "upstream": up, "auth": ["session", "api_key"]},
        {"prefix": "/sse", "upstream": up, "auth": ["none"]},
        {"prefix": "/slow", "upstream": up, "auth": ["none"]},
        {"prefix": "/big", "upstream": up, "auth": ["none"]},
    ]}


# ---------------------------------------------------------------------------
# credentials


def random_letters(n: int = 64) -> str:
    rnd = random.SystemRandom()
    return "".join(rnd.choice(string.ascii_letters) for _ in range(n))


def new_api_key(prefix: str = KEY_PREFIX) -> str:
    """Better Auth's default key shape: prefix + 64 letters."""
    return H.sensitive(prefix + random_letters(64))


class SQL:
    """A tiny helper over an autocommit psycopg2 connection."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.rowcount

    def one(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchone()

    def scalar(self, sql, args=None):
        row = self.one(sql, args)
        return row[0] if row else None

    def session_id(self, token):
        sid = self.scalar('select id from "session" where token = %s', (token,))
        assert sid is not None, "session row missing"
        return sid

    def close(self):
        self.conn.close()


class ApiKey:
    def __init__(self, key, id, user_id):
        self.key, self.id, self.user_id = key, id, user_id
        self.hash = H.token_hash(key)

    def __repr__(self):
        return f"ApiKey(id={self.id!r})"


class ApiKeys:
    """Inserts rows into "apikey" the way Better Auth stores them (key = b64url(sha256))."""

    def __init__(self, db):
        self.db = db

    def create(self, user_id: str, *, permissions=None, enabled=True, expires_sql=None,
               key: str | None = None) -> ApiKey:
        key = key or new_api_key()
        kid = H.generate_id(32)
        perms = json.dumps(permissions) if isinstance(permissions, dict) else permissions
        self.db.execute(
            'insert into "apikey" (id, "configId", "referenceId", key, enabled, "createdAt", '
            '"updatedAt", permissions, "expiresAt", prefix, start) values '
            f'(%s, %s, %s, %s, %s, now(), now(), %s, {expires_sql or "NULL"}, %s, %s)',
            (kid, "default", user_id, H.token_hash(key), enabled, perms, KEY_PREFIX, key[:6]))
        return ApiKey(key, kid, user_id)

    def delete(self, k: ApiKey):
        return self.db.execute('delete from "apikey" where id = %s', (k.id,))


def cookie(u) -> dict:
    return {"Cookie": u.cookie}


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def unsigned_cookie(secret, token: str) -> str:
    return f"{H.SESSION_COOKIE}={H.cookie_value(secret, token)}"


def jwt_like() -> str:
    """A JWT-shaped bearer (three base64url parts starting eyJ)."""
    import base64
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return enc({"alg": "EdDSA", "typ": "JWT"}) + "." + enc({"sub": "u1", "exp": 4102444800}) + "." + \
        base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode()


def echo(resp) -> dict:
    """The demo upstream's JSON echo of what it received."""
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:400]}"
    body = resp.json()
    assert set(body) >= {"method", "path", "query", "headers", "body"}, body
    return body


def assert_gw_error(resp, status, *codes):
    """A gateway error: status, JSON {message, code, requestId}, X-Request-Id header."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:400]}"
    assert "application/json" in resp.headers.get("content-type", ""), \
        f"content-type {resp.headers.get('content-type')!r}: {resp.text[:200]}"
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("requestId"), str) and body["requestId"], body
    assert resp.headers.get("x-request-id") == body["requestId"], (resp.headers, body)
    if codes:
        assert body["code"] in codes, body
    return body


def poll_until_status(fn, status: int, timeout: float, interval: float = 0.005):
    """Calls fn() until it answers `status`; returns (elapsed seconds, statuses seen)."""
    seen = []
    t0 = time.monotonic()
    while True:
        r = fn()
        seen.append(r.status_code)
        if r.status_code == status:
            return time.monotonic() - t0, seen
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no {status} within {timeout}s; saw {seen[-20:]} "
                                 f"(last body {r.text[:200]})")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# raw HTTP (for requests that `requests` would not send as is)


def raw_http(port: int, data: bytes, timeout: float = 10.0):
    """Sends data on a new connection and reads one response.
    Returns (status:int|None, headers:dict(lower), body:bytes, raw:bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                hdrs = _parse_headers(head)
                n = hdrs.get("content-length")
                if n is not None and len(rest) >= int(n):
                    break
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    if not buf.startswith(b"HTTP/"):
        return None, {}, b"", buf
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, _parse_headers(head), body, buf


def _parse_headers(head: bytes) -> dict:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        out[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return out


def quote_path(s: str) -> str:
    return urllib.parse.quote(s, safe="/")


