"""The programs under test as processes: Authsvc, Gateway and the demo Upstream, each
on a free loopback port with a clean environment (a developer's shell never leaks
into a test server), logs and stderr in a work directory, stopped by PID with
bounded waits.  The e2e fixtures and bench/ use these; no pytest here.

A fixture stops them with checks.check_stopped(daemon)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import requests

from .checks import GATEWAY_LOG_FILES, LOG_FILES, sanitizer_report, sensitive
from .procs import Proc, binary, free_port, run_bounded, tail, wait_port, wait_until

# Environment variables authsvc reads.  They are stripped from the inherited
# environment before a test's own values are applied, so that a developer's
# shell (DATABASE_URL=...) never leaks into a test server.
AUTHSVC_ENV_VARS = (
    "BETTER_AUTH_SECRET", "BETTER_AUTH_SECRETS", "AUTH_SECRET", "BETTER_AUTH_URL",
    "BETTER_AUTH_TRUSTED_ORIGINS", "DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "AUTHSVC_LISTEN",
    "AUTHSVC_ADMIN_LISTEN", "AUTHSVC_HEALTH_PREFIX",
    "TRUSTED_ORIGINS", "RATE_LIMIT_ENABLED", "REDIS_PREFIX", "REVOCATION_CHANNEL",
    "REVOCATION_LOG_KEEP_SECONDS",
    "AUTHSVC_LOG", "AUTHSVC_MAX_BODY_BYTES", "PASSWORD_WORKERS", "PASSWORD_QUEUE",
    "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "IP_ADDRESS_HEADER", "TRUSTED_PROXIES", "LOG_LEVEL",
    "AUTHSVC_WORKERS", "AUTHSVC_QUEUE", "SESSION_EXPIRES_IN_SECONDS", "SESSION_UPDATE_AGE_SECONDS",
    "SESSION_FRESH_AGE_SECONDS", "PASSWORD_MIN_LENGTH", "PASSWORD_MAX_LENGTH", "BEARER_REQUIRE_SIGNATURE",
    "INTERNAL_SERVICE_SECRET", "APIKEY_DEFAULT_PREFIX", "APIKEY_RATE_LIMIT_MAX",
    "APIKEY_RATE_LIMIT_WINDOW_MS", "APIKEY_ENABLE_METADATA",
    "JWT_ALG", "JWT_EXPIRES_SECONDS", "JWT_ROTATE_DAYS", "JWT_ISSUER", "JWT_AUDIENCE", "JWKS_MAX_AGE_SECONDS",
    "GOOGLE_AUTH_URL", "GOOGLE_TOKEN_URL", "GOOGLE_USERINFO_URL", "GOOGLE_JWKS_URL",
    "GOOGLE_ISSUER", "OIDC_PROVIDERS", "ALLOWED_DOMAINS", "OAUTH_HTTP_TIMEOUT_MS",
    "OAUTH_JWKS_CACHE_SECONDS",
    "REQUIRE_EMAIL_VERIFICATION", "EMAIL_VERIFICATION_SEND_ON_SIGN_UP", "EMAIL_VERIFICATION_SEND_ON_SIGN_IN",
    "EMAIL_VERIFICATION_AUTO_SIGN_IN", "EMAIL_VERIFICATION_EXPIRES_IN", "RESET_PASSWORD_TOKEN_EXPIRES_IN",
    "REVOKE_SESSIONS_ON_PASSWORD_RESET", "SMTP_URL", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_PASSWORD_FILE",
    "SMTP_CA_FILE", "SMTP_REQUIRE_TLS", "MAIL_FROM", "MAIL_APP_NAME", "MAIL_TEMPLATES_DIR", "MAIL_TIMEOUT_MS",
    "MAIL_RETRY_MAX_SECONDS", "MAIL_GIVE_UP_SECONDS", "CHANGE_EMAIL_ENABLED",
    "CHANGE_EMAIL_UPDATE_WITHOUT_VERIFICATION", "CHANGE_EMAIL_SEND_CONFIRMATION", "DELETE_USER_ENABLED",
    "DELETE_USER_SEND_VERIFICATION", "DELETE_USER_TOKEN_EXPIRES_IN", "ALLOW_UNLINKING_ALL",
    "MULTI_SESSION_ENABLED", "MULTI_SESSION_MAXIMUM",
    "TWO_FACTOR_ENABLED", "TWO_FACTOR_ISSUER", "TWO_FACTOR_COOKIE_MAX_AGE", "TWO_FACTOR_TRUST_DEVICE_MAX_AGE",
)

# Every variable the gateway reads (gateway/config.c): stripped from the inherited
# environment so that a developer's shell never leaks into a test gateway.
GATEWAY_ENV_VARS = (
    "GATEWAY_LISTEN", "GATEWAY_ADMIN_LISTEN", "GATEWAY_HEALTH_PREFIX", "GATEWAY_WORKERS", "GATEWAY_ROUTES", "UPSTREAM_URL", "DATABASE_URL",
    "REDIS_URL", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD",
    "DATABASE_READ_URL", "READ_MAX_LAG_MS", "REDIS_PREFIX", "REVOCATION_CHANNEL", "BETTER_AUTH_SECRET", "BETTER_AUTH_URL",
    "GATEWAY_LOG", "LOG_LEVEL", "L1_MAX_ENTRIES", "L1_TTL_SECONDS", "L1_NEGATIVE_TTL_SECONDS", "L1_DEGRADED_TTL_SECONDS",
    "GATEWAY_PG_POOL", "GATEWAY_PG_TIMEOUT_MS", "GATEWAY_REDIS_TIMEOUT_MS",
    "GATEWAY_REDIS_DEADLINE_MS", "UPSTREAM_POOL", "UPSTREAM_FAIL_TIMEOUT_MS", "GATEWAY_RESOLVER",
    "GATEWAY_MAX_TUNNELS", "GATEWAY_MAX_TUNNELS_PER_USER",
    "UPSTREAM_TIMEOUT_SECONDS", "UPSTREAM_CA_FILE", "GATEWAY_MAX_BODY_BYTES", "GATEWAY_MAX_HEADER_BYTES", "SESSION_EXPIRES_IN_SECONDS",
    "SESSION_UPDATE_AGE_SECONDS", "GATEWAY_PENDING_MAX", "L2_ENABLED", "BEARER_REQUIRE_SIGNATURE",
    "FORWARD_AUTH_PROXY", "FORWARD_AUTH_URI_HEADER", "FORWARD_AUTH_METHOD_HEADER",
    "FORWARD_AUTH_HOST_HEADER", "FORWARD_AUTH_REFUSAL", "IDENTITY_HEADER_NAMES",
    "JWKS_REFETCH_MS", "JWKS_KID_REFETCH_MS", "GATEWAY_PG_BATCH_MAX",
    "BETTER_AUTH_SECRETS", "GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY", "GATEWAY_HTTP_LISTEN",
    "GATEWAY_TLS_TICKET_ROTATE_SECONDS", "GATEWAY_HTTP2", "GATEWAY_HTTP2_MAX_STREAMS", "GATEWAY_CLIENT_IDLE_SECONDS",
    "GATEWAY_TLS_OCSP", "GATEWAY_TLS_OCSP_REFRESH_SECONDS",
)
# names both programs still read for one release (lib/conf.c's renames): scrubbed too
OLD_ENV_VARS = (
    "L1_TTL", "L1_NEGATIVE_TTL", "L1_DEGRADED_TTL", "L2_TTL", "UPSTREAM_TIMEOUT",
    "GATEWAY_MAX_BODY", "GATEWAY_MAX_HEADERS", "JWT_LEEWAY", "SESSION_EXPIRES_IN",
    "SESSION_UPDATE_AGE", "SESSION_FRESH_AGE", "REVOCATION_LOG_KEEP", "AUTHSVC_MAX_BODY",
    "JWT_EXPIRES", "JWKS_MAX_AGE",
)

MAX_BODY = 3 * 1024 * 1024          # GATEWAY_MAX_BODY_BYTES of the main gateway
UPSTREAM_TIMEOUT_SECONDS = 1                # seconds (UPSTREAM_TIMEOUT_SECONDS of the main gateway)


# ---------------------------------------------------------------------------
# authsvc


def _ours(name: str, names) -> bool:
    """A variable the program reads: one of names, its NAME_FILE, or AUTH_SECRET[_FILE]."""
    base = name[:-5] if name.endswith("_FILE") else name
    return base in names or base in OLD_ENV_VARS or base == "AUTH_SECRET"


def authsvc_env(env: dict | None = None) -> dict:
    """The inherited environment minus authsvc's variables, plus env."""
    base = {k: v for k, v in os.environ.items()
            if not _ours(k, AUTHSVC_ENV_VARS) and not k.startswith("OIDC_")}
    base.setdefault("TZ", "UTC")
    base["AUTHSVC_ADMIN_LISTEN"] = "off"   # Authsvc gives each server its own port
    for k, v in (env or {}).items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = str(v)
    return base


def run_authsvc(args=(), env: dict | None = None, timeout: float = 30.0, build=None):
    """Run `authsvc ARGS` to completion (bounded) with env on top of a clean base."""
    exe = Path(build) / "authsvc" if build else binary("authsvc")
    return run_bounded([exe, *args], env=authsvc_env(env), timeout=timeout)


class Authsvc:
    """One authsvc server: `authsvc migrate`, then `authsvc` with env; waits for /live.

    env is applied on top of a clean base environment; AUTHSVC_LISTEN and
    AUTHSVC_LOG are filled in when absent (a free port, a file in workdir).
    BETTER_AUTH_URL defaults to the server's own address, so the server's own
    origin is trusted."""

    # check_stopped: the e2e fixtures never required status 0 from authsvc after
    # SIGTERM (only a clean, unforced stop without a sanitizer report)
    CHECK_EXIT_CODE = False

    def __init__(self, env: dict, *, workdir: str | None = None, build=None, migrate: bool = True,
                 start: bool = True, name: str = "authsvc", start_timeout: float | None = None):
        self.name = name
        self.exe = Path(build) / "authsvc" if build else binary("authsvc")
        if not self.exe.exists():
            raise FileNotFoundError(f"{self.exe} not found: build it first (make), or set PORTCULLIS_BUILD")
        self._owned_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="pc-authsvc-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        if "AUTHSVC_LISTEN" not in self.env:
            self.port = free_port()
            self.env["AUTHSVC_LISTEN"] = f"127.0.0.1:{self.port}"
        else:
            self.port = int(self.env["AUTHSVC_LISTEN"].rsplit(":", 1)[1])
        if "AUTHSVC_ADMIN_LISTEN" not in self.env:
            self.env["AUTHSVC_ADMIN_LISTEN"] = f"127.0.0.1:{free_port()}"
        adm = self.env["AUTHSVC_ADMIN_LISTEN"]
        self.admin_port = None if adm == "off" else int(adm.rsplit(":", 1)[1])
        self.host = "127.0.0.1"
        self.env.setdefault("BETTER_AUTH_URL", f"http://127.0.0.1:{self.port}")
        uniq = f"{name}-{self.port}"
        self.env.setdefault("AUTHSVC_LOG", str(self.dir / f"{uniq}.log.jsonl"))
        self.log_path = Path(self.env["AUTHSVC_LOG"])
        self.stderr_path = self.dir / f"{uniq}.stderr"
        self.stdout_path = self.dir / f"{uniq}.stdout"
        LOG_FILES.extend([self.log_path, self.stderr_path, self.stdout_path])
        if "BETTER_AUTH_SECRET" in self.env:
            sensitive(self.env["BETTER_AUTH_SECRET"])
        self.proc: Proc | None = None
        self.migrate_result = None
        self.start_timeout = start_timeout or float(os.environ.get("PORTCULLIS_START_TIMEOUT", "30"))
        self.exit_code = None
        if migrate:
            self.migrate()
        if start:
            self.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        """The origin of BETTER_AUTH_URL (always trusted by the server)."""
        u = urllib.parse.urlsplit(self.env["BETTER_AUTH_URL"])
        return f"{u.scheme}://{u.netloc}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def api(self, path: str) -> str:
        return self.base_url + "/api/auth" + ("" if path.startswith("/") else "/") + path

    def admin_url(self, path: str) -> str:
        """A URL on the admin listener (AUTHSVC_ADMIN_LISTEN): /metrics."""
        assert self.admin_port is not None, f"{self.name} has no admin listener"
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def full_env(self) -> dict:
        return authsvc_env(self.env)

    def migrate(self, timeout: float = 120.0):
        r = run_bounded([self.exe, "migrate"], env=self.full_env(), timeout=timeout)
        self.migrate_result = r
        with open(self.dir / f"{self.name}-{self.port}.migrate.out", "ab") as f:
            f.write(r.stdout + r.stderr)
        if r.returncode != 0:
            raise RuntimeError(f"authsvc migrate failed ({r.returncode}):\n"
                               f"{r.stdout.decode(errors='replace')}\n{r.stderr.decode(errors='replace')}")
        return r

    def _live(self) -> bool:
        try:
            live = self.env.get("AUTHSVC_HEALTH_PREFIX", "") + "/live"
            with urllib.request.urlopen(self.url(live), timeout=2) as resp:
                return resp.status == 200
        except Exception:  # noqa: BLE001
            return False

    def start(self):
        if self.proc is not None and self.proc.running:
            return self
        self.proc = Proc([self.exe], env=self.full_env(), cwd=str(self.dir),
                         stdout=self.stdout_path, stderr=self.stderr_path, name=self.name)

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"authsvc exited with {self.proc.returncode} during start:\n"
                                   f"{tail(self.stderr_path)}")
            return self._live()
        try:
            wait_until(ready, self.start_timeout, interval=0.05, what=f"authsvc /live on {self.base_url}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def stop(self, timeout: float = 10.0):
        """SIGTERM, then SIGKILL after timeout.  Returns the exit code."""
        if self.proc is None:
            return self.exit_code
        self.exit_code = self.proc.stop(signal.SIGTERM, timeout=timeout)
        return self.exit_code

    def kill(self):
        if self.proc is not None:
            self.exit_code = self.proc.kill()

    def restart(self):
        self.stop()
        return self.start()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self) -> list:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def sanitizer_report(self) -> str | None:
        return sanitizer_report(self.stderr_text())

    def cleanup(self):
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------------------
# gateway and the demo upstream


def gateway_env(env: dict | None = None) -> dict:
    base = {k: v for k, v in os.environ.items()
            if not _ours(k, GATEWAY_ENV_VARS) and not _ours(k, AUTHSVC_ENV_VARS)}
    base.setdefault("TZ", "UTC")
    # a gateway run by hand takes no fixed admin port (9090) that another
    # could hold: Gateway gives each its own
    base["GATEWAY_ADMIN_LISTEN"] = "off"
    for k, v in (env or {}).items():
        if v is None:
            base.pop(k, None)
        else:
            base[k] = str(v)
    return base


class Upstream:
    """tools/demo_upstream.c on a free loopback port."""

    def __init__(self, workdir: Path, threads: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / f"demo-upstream-{self.port}.stderr"
        exe = binary("demo-upstream")
        if not exe.exists():
            raise FileNotFoundError(f"{exe} not found: run make (or set PORTCULLIS_BUILD)")
        self.proc = Proc([exe, f"127.0.0.1:{self.port}", str(threads)], env=gateway_env(),
                           stdout=workdir / f"demo-upstream-{self.port}.stdout",
                           stderr=self.stderr_path, name="demo-upstream")
        wait_port(self.port, 10, self.proc, "demo-upstream")

    @property
    def argv(self) -> list:
        """The command line it runs with (the benches print it)."""
        return self.proc.argv

    def stop(self):
        return self.proc.stop(signal.SIGTERM, timeout=5)


class Gateway:
    """build/gateway with env on top of a clean base; waits until it can decide.

    routes: a dict written to a JSON file (GATEWAY_ROUTES) or None (use env as given)."""

    CHECK_EXIT_CODE = True          # check_stopped: SIGTERM must end it with status 0

    def __init__(self, env: dict, routes: dict | None = None, *, workdir: Path, name: str = "gateway",
                 start: bool = True, wait_ready: bool = True):
        self.name = name
        self.exe = binary("gateway")
        if not self.exe.exists():
            raise FileNotFoundError(f"{self.exe} not found: run make (or set PORTCULLIS_BUILD)")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env)
        if "GATEWAY_LISTEN" not in self.env:
            self.port = free_port()
            self.env["GATEWAY_LISTEN"] = f"127.0.0.1:{self.port}"
        else:
            self.port = int(self.env["GATEWAY_LISTEN"].rsplit(":", 1)[1])
        # the operators' listener (/metrics, /_stats): its own free port, or
        # none when the env says "off"
        if "GATEWAY_ADMIN_LISTEN" not in self.env:
            self.env["GATEWAY_ADMIN_LISTEN"] = f"127.0.0.1:{free_port()}"
        adm = self.env["GATEWAY_ADMIN_LISTEN"]
        self.admin_port = None if adm == "off" else int(adm.rsplit(":", 1)[1])
        uniq = f"{name}-{self.port}"
        if routes is not None:
            rf = self.dir / f"{uniq}.routes.json"
            rf.write_text(json.dumps(routes, indent=1))
            self.env["GATEWAY_ROUTES"] = str(rf)
        self.env.setdefault("GATEWAY_LOG", str(self.dir / f"{uniq}.log"))
        self.env.setdefault("GATEWAY_WORKERS", "2")
        self.log_path = Path(self.env["GATEWAY_LOG"])
        self.stderr_path = self.dir / f"{uniq}.stderr"
        GATEWAY_LOG_FILES.extend([self.log_path, self.stderr_path])
        self.proc = None
        self.exit_code = None
        self.http = requests.Session()
        # tests send credentials explicitly: a Set-Cookie the gateway sends (a
        # sliding refresh) must not ride along on later requests
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.http.trust_env = False
        if start:
            self.start(wait_ready=wait_ready)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def health_url(self, path: str) -> str:
        """/health, /live or /ready on the public port (after GATEWAY_HEALTH_PREFIX); with
        TLS on the public port (GATEWAY_TLS_CERT), on the plain admin listener."""
        if self.env.get("GATEWAY_TLS_CERT") and self.admin_port is not None:
            return self.admin_url(path)
        return self.url(self.env.get("GATEWAY_HEALTH_PREFIX", "") + path)

    def admin_url(self, path: str) -> str:
        """A URL on the admin listener (GATEWAY_ADMIN_LISTEN): /metrics, /_stats."""
        assert self.admin_port is not None, f"{self.name} has no admin listener"
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def metrics(self) -> str:
        r = requests.get(self.admin_url("/metrics"), timeout=2)
        assert r.status_code == 200, r.text
        return r.text

    def start(self, wait_ready: bool = True, timeout: float = 20.0):
        self.proc = Proc([self.exe], env=gateway_env(self.env), cwd=str(self.dir),
                           stdout=self.dir / f"{self.name}-{self.port}.stdout",
                           stderr=self.stderr_path, name=self.name)

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start:\n"
                                   f"{tail(self.stderr_path)}")
            try:
                if requests.get(self.health_url("/live"), timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"{self.name}: no /live within {timeout}s:\n{tail(self.stderr_path)}")
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
            r = requests.get(self.health_url("/ready"), timeout=2, headers={"Connection": "close"})
            b = r.json()
            state["last"] = b
            good = all(want is None or b.get(k) == want
                       for k, want in (("postgres", postgres), ("redis", redis),
                                       ("revocations", revocations)))
            state["n"] = state["n"] + 1 if good else 0
            return state["n"] >= streak
        try:
            wait_until(ok, timeout, interval=0.02, what=f"{self.name} /ready")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last /ready: {state['last']}") from None
        return state["last"]

    def ready(self) -> dict:
        return requests.get(self.health_url("/ready"), timeout=2, headers={"Connection": "close"}).json()

    def reload(self, routes: dict | str | None = None, timeout: float = 10.0) -> bool:
        """Writes routes (a dict as JSON, or text as it is) to the routes file, sends
        SIGHUP and waits for the gateway to take it or refuse it; True when it was
        taken (stats reloads), False when refused (reloads_failed)."""
        if routes is not None:
            text = routes if isinstance(routes, str) else json.dumps(routes, indent=1)
            Path(self.env["GATEWAY_ROUTES"]).write_text(text)
        before = self.stats()
        self.proc.send_signal(signal.SIGHUP)
        got = {}

        def done():
            st = self.stats()
            got["ok"] = st["reloads"] > before["reloads"]
            return got["ok"] or st["reloads_failed"] > before["reloads_failed"]
        wait_until(done, timeout, interval=0.01, what=f"{self.name} reload")
        return got["ok"]

    def stats(self) -> dict:
        r = requests.get(self.admin_url("/_stats"), timeout=2)
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

    def stderr_tail(self, n: int = 3000) -> str:
        return tail(self.stderr_path, n)

    def death_report(self) -> str:
        """How the process ended, with the tails of its stderr and log (for bench/)."""
        rc = self.proc.poll() if self.proc is not None else None
        how = (f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit status {rc}")
        return (f"{how}; stderr ({self.stderr_path}):\n{self.stderr_tail()}\n"
                f"last log lines ({self.log_path}):\n{tail(self.log_path, 3000)}")


def gw_base_env(pg, redis_srv, secret, dbname="authsvc", **extra) -> dict:
    env = {
        "DATABASE_URL": pg.url(dbname),
        "REDIS_URL": redis_srv.url,
        "BETTER_AUTH_SECRET": secret,
        "GATEWAY_WORKERS": "2",
        "LOG_LEVEL": "info",
        "UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT_SECONDS),
        "GATEWAY_MAX_BODY_BYTES": str(MAX_BODY),
        "L1_TTL_SECONDS": "300",            # revocation must not wait for a TTL
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

