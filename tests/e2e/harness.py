"""Process harness for Portcullis end-to-end tests, benchmarks and the interop test.

Starts real PostgreSQL, Redis and authsvc processes on free loopback ports in
temporary directories, and stops them again by PID with bounded waits.  Nothing
here depends on pytest, so bench scripts can import it too:

    import sys; sys.path.insert(0, "tests/e2e")
    from harness import Postgres, Redis, Authsvc

    with Postgres() as pg, Redis() as rd:
        db = pg.create_database("authsvc")
        with Authsvc({"DATABASE_URL": db, "REDIS_URL": rd.url,
                      "BETTER_AUTH_SECRET": "x" * 40}) as svc:
            print(svc.base_url)

Every process this module starts is registered; an atexit hook kills whatever is
still running, children get SIGKILL if the Python process dies
(PR_SET_PDEATHSIG), and each child runs in its own process group so that its
descendants (PostgreSQL backends) are killed with it.

Self-test:  /usr/bin/python3 tests/e2e/harness.py selftest
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import hashlib
import hmac
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_PREFIX = "pc:"
DEFAULT_REVOCATION_CHANNEL = "pc:revoked"
SESSION_COOKIE = "better-auth.session_token"
EXPIRES_IN = 604800
UPDATE_AGE = 86400
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")

# Environment variables authsvc reads.  They are stripped from the inherited
# environment before a test's own values are applied, so that a developer's
# shell (DATABASE_URL=...) never leaks into a test server.
AUTHSVC_ENV_VARS = (
    "BETTER_AUTH_SECRET", "BETTER_AUTH_SECRETS", "AUTH_SECRET", "BETTER_AUTH_URL",
    "BETTER_AUTH_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL", "AUTHSVC_LISTEN",
    "TRUSTED_ORIGINS", "RATE_LIMIT_ENABLED", "REDIS_PREFIX", "REVOCATION_CHANNEL",
    "REVOCATION_LOG_KEEP",
    "AUTHSVC_LOG", "AUTHSVC_MAX_BODY", "PASSWORD_WORKERS", "PASSWORD_QUEUE",
    "GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET", "IP_ADDRESS_HEADER", "TRUSTED_PROXIES", "LOG_LEVEL",
    "AUTHSVC_WORKERS", "AUTHSVC_QUEUE", "SESSION_EXPIRES_IN", "SESSION_UPDATE_AGE",
    "SESSION_FRESH_AGE", "PASSWORD_MIN_LENGTH", "PASSWORD_MAX_LENGTH", "BEARER_REQUIRE_SIGNATURE",
    "INTERNAL_SERVICE_SECRET", "APIKEY_DEFAULT_PREFIX", "APIKEY_RATE_LIMIT_MAX",
    "APIKEY_RATE_LIMIT_WINDOW_MS", "APIKEY_ENABLE_METADATA",
    "JWT_ALG", "JWT_EXPIRES", "JWT_ROTATE_DAYS", "JWT_ISSUER", "JWT_AUDIENCE", "JWKS_MAX_AGE",
    "GOOGLE_AUTH_URL", "GOOGLE_TOKEN_URL", "GOOGLE_USERINFO_URL", "GOOGLE_JWKS_URL",
    "GOOGLE_ISSUER", "OIDC_PROVIDERS", "ALLOWED_DOMAINS", "OAUTH_HTTP_TIMEOUT_MS",
    "OAUTH_JWKS_CACHE_SECONDS",
)

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
    "ERROR: ThreadSanitizer", "WARNING: ThreadSanitizer", "UndefinedBehaviorSanitizer",
)

# ---------------------------------------------------------------------------
# Registries: processes to kill at exit, and sensitive values that must never
# appear in a log (checked by test_zz_logs.py).

_LIVE: set = set()
_LIVE_LOCK = threading.Lock()
SENSITIVE: set = set()
LOG_FILES: list = []          # every AUTHSVC_LOG / stderr file of the run


def sensitive(value, min_len: int = 6):
    """Remember a password/token/cookie value for the log check; returns it."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and len(value) >= min_len:
        SENSITIVE.add(value)
    return value


def _register(proc) -> None:
    with _LIVE_LOCK:
        _LIVE.add(proc)


def _unregister(proc) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(proc)


@atexit.register
def kill_all() -> None:
    """Kill every process this module started and that is still running."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def build_dir() -> Path:
    return Path(os.environ.get("PORTCULLIS_BUILD", str(REPO / "build")))


def binary(name: str) -> Path:
    return build_dir() / name


_HANDED_OUT: set = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same twice per run)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port")


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll pred() until it returns a truthy value or timeout passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


def _tail(path, n: int = 4000) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# Child processes

_libc = None


def _preexec_pdeathsig():
    """In the child: die with SIGKILL when the parent (this Python) dies."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Proc:
    """A child process in its own process group, stopped by PID with bounded waits."""

    def __init__(self, argv, *, env=None, cwd=None, stdout=None, stderr=None,
                 user=None, group=None, name=None):
        self.name = name or Path(argv[0]).name
        self.argv = [str(a) for a in argv]
        kw = {}
        if user is not None:
            kw["user"] = user
            kw["group"] = group
            kw["extra_groups"] = []
        self._out = open(stdout, "ab") if stdout else subprocess.DEVNULL
        self._err = open(stderr, "ab") if stderr else subprocess.DEVNULL
        self.stdout_path, self.stderr_path = stdout, stderr
        try:
            self.popen = subprocess.Popen(
                self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=self._out, stderr=self._err, start_new_session=True,
                preexec_fn=_preexec_pdeathsig, close_fds=True, **kw)
        except Exception:
            self._close_files()
            raise
        self.pid = self.popen.pid
        self.forced = False         # True when stop() had to escalate to SIGKILL
        _register(self)

    def _close_files(self):
        for f in (self._out, self._err):
            if hasattr(f, "close"):
                try:
                    f.close()
                except OSError:
                    pass

    def poll(self):
        rc = self.popen.poll()
        if rc is not None:
            self._reap_group()
        return rc

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self):
        return self.popen.returncode

    def send_signal(self, sig) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def _reap_group(self):
        # The group id is our child's pid; kill any leftover descendants.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float):
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return rc

    def stop(self, sig=signal.SIGTERM, timeout: float = 10.0):
        """Send sig, wait up to timeout, then SIGKILL (bounded).  Returns the exit code."""
        rc = self.popen.poll()
        if rc is None:
            self.send_signal(sig)
            rc = self.wait(timeout)
            if rc is None:
                self.forced = True
                self.send_signal(signal.SIGKILL)
                rc = self.wait(10.0)
        self._reap_group()
        self._close_files()
        _unregister(self)
        return rc

    def kill(self):
        """SIGKILL the process and its whole group (bounded)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.send_signal(signal.SIGKILL)
            self.wait(10.0)
        self._reap_group()
        self._close_files()
        _unregister(self)
        return self.popen.returncode


def run_bounded(argv, *, env=None, timeout: float = 60.0, user=None, group=None, cwd=None,
                input_bytes=None):
    """Run a command to completion with a hard time bound; returns CompletedProcess.

    On timeout the whole process group is killed and subprocess.TimeoutExpired
    is raised (with whatever output was captured)."""
    kw = {}
    if user is not None:
        kw.update(user=user, group=group, extra_groups=[])
    p = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd,
                         stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, preexec_fn=_preexec_pdeathsig, **kw)
    try:
        out, err = p.communicate(input=input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate(timeout=10)
        raise subprocess.TimeoutExpired(p.args, timeout, output=out, stderr=err)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# ---------------------------------------------------------------------------
# PostgreSQL


def _ensure_postgres_user():
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "postgres"], check=True, timeout=30)
        return pwd.getpwnam("postgres")


class Postgres:
    """A private PostgreSQL cluster: initdb into a temp dir, trust auth on 127.0.0.1.

    As root, initdb and postgres run as the `postgres` system user (created if
    missing) and the temp dir is owned by it; otherwise they run as the caller."""

    def __init__(self, port: int | None = None, basedir: str | None = None, start: bool = True):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: Proc | None = None
        self._owned_dir = basedir is None
        self.dir = Path(basedir or tempfile.mkdtemp(prefix="pc-pg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.sockdir = self.dir / "sock"
        self.logfile = self.dir / "postgres.log"
        self.user = self.group = None
        if os.geteuid() == 0:
            pw = _ensure_postgres_user()
            self.user = pw.pw_uid
            self.group = pw.pw_gid
            os.chmod(self.dir, 0o700)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.sockdir.mkdir(exist_ok=True)
        if self.user is not None:
            os.chown(self.sockdir, self.user, self.group)
        self._initdb()
        if start:
            self.start()

    def _env(self):
        env = {"PATH": f"{PG_BIN}:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C",
               "HOME": str(self.dir), "TZ": "UTC"}
        return env

    def _initdb(self):
        r = run_bounded([PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                        env=self._env(), timeout=120, user=self.user, group=self.group)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}):\n{r.stdout.decode()}\n{r.stderr.decode()}")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# portcullis e2e harness\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 32MB\n"
                    "log_min_messages = warning\nlog_timezone = 'UTC'\ntimezone = 'UTC'\n")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    @property
    def dsn(self) -> str:
        return self.url()

    def _ping(self) -> bool:
        import psycopg2
        c = psycopg2.connect(host=self.host, port=self.port, user="postgres",
                             dbname="postgres", connect_timeout=2)
        try:
            with c.cursor() as cur:
                cur.execute("select 1")
                return cur.fetchone()[0] == 1
        finally:
            c.close()

    def start(self, timeout: float = 30.0):
        if self.proc is not None and self.proc.running:
            return self
        self.proc = Proc([PG_BIN / "postgres", "-D", self.data], env=self._env(),
                         stdout=self.logfile, stderr=self.logfile,
                         user=self.user, group=self.group, name="postgres")

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{_tail(self.logfile)}")
            return self._ping()
        try:
            wait_until(ready, timeout, interval=0.1, what=f"postgres on port {self.port}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def stop(self, timeout: float = 15.0):
        """Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL of the group; bounded."""
        if self.proc is None:
            return None
        p = self.proc
        if p.running:
            p.send_signal(signal.SIGINT)
            if p.wait(timeout) is None:
                p.send_signal(signal.SIGQUIT)
                if p.wait(5) is None:
                    p.kill()
        rc = p.stop(timeout=5)
        return rc

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            # backends notice postmaster death; make sure the pidfile is gone
            # before a restart, otherwise postgres refuses to start.
            pidfile = self.data / "postmaster.pid"
            try:
                pidfile.unlink()
            except OSError:
                pass

    def restart(self, timeout: float = 30.0):
        self.stop()
        return self.start(timeout=timeout)

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2
        c = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname=dbname,
                             connect_timeout=5)
        c.autocommit = autocommit
        return c

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name (dropping nothing); returns its URL."""
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            c.close()
        return self.url(name)

    def drop_database(self, name: str):
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            c.close()

    def cleanup(self):
        """Stop and delete the cluster.  The data is thrown away, so shut down in
        immediate mode (SIGQUIT: no shutdown checkpoint)."""
        if self._owned_dir and self.proc is not None and self.proc.running:
            self.proc.send_signal(signal.SIGQUIT)
            if self.proc.wait(10) is None:
                self.proc.kill()
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------------------
# Redis and a tiny RESP client


class RespError(Exception):
    pass


class RespClient:
    """Minimal blocking RESP2 client over a socket (no redis-py on this machine)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, timeout: float = 5.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise RespError(f"bad RESP type byte {line!r}")

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def command(self, *args):
        self.send(*args)
        r = self.read_reply()
        if isinstance(r, RespError):
            raise r
        return r

    __call__ = command

    # conveniences (bytes values; keys may be str)
    def get(self, key):
        return self.command("GET", key)

    def exists(self, key) -> bool:
        return self.command("EXISTS", key) == 1

    def ttl(self, key) -> int:
        return self.command("TTL", key)

    def pttl(self, key) -> int:
        return self.command("PTTL", key)

    def keys(self, pattern="*"):
        out, cursor = [], b"0"
        for _ in range(100000):
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            out.extend(batch)
            if cursor in (b"0", "0"):
                break
        return out

    def delete(self, *keys) -> int:
        return self.command("DEL", *keys) if keys else 0

    def ping(self) -> bool:
        return self.command("PING") == "PONG"


class Subscriber:
    """A socket SUBSCRIBEd to one or more channels; collects published messages."""

    def __init__(self, host: str, port: int, *channels, timeout: float = 5.0):
        self.client = RespClient(host, port, timeout=timeout)
        self.client.send("SUBSCRIBE", *channels)
        for _ in channels:
            r = self.client.read_reply()
            if not (isinstance(r, list) and r and r[0] == b"subscribe"):
                raise RespError(f"unexpected subscribe reply {r!r}")
        self.messages: list = []   # (channel:str, data:str), data without "#<seq> "
        self.seqs: list = []       # the "#<seq> " numbers seen, in order (lib/revmsg.h)

    def get_message(self, timeout: float = 1.0):
        """Next message as (channel, data) or None after timeout."""
        self.client.sock.settimeout(max(timeout, 0.001))
        try:
            r = self.client.read_reply()
        except (socket.timeout, TimeoutError):
            return None
        finally:
            self.client.sock.settimeout(self.client.timeout)
        if isinstance(r, list) and len(r) == 3 and r[0] == b"message":
            data = r[2].decode("utf-8", "replace")
            seq, sep, rest = data.partition(" ")
            if data.startswith("#") and sep and seq[1:].isdigit():
                self.seqs.append(int(seq[1:]))
                data = rest
            m = (r[1].decode(), data)
            self.messages.append(m)
            return m
        return None

    def wait_for(self, expected, timeout: float = 5.0):
        """Collect messages until every data value in expected was seen (bounded).

        Returns the set of data values seen."""
        expected = set(expected)
        deadline = time.monotonic() + timeout
        while True:
            seen = {d for _, d in self.messages}
            if expected <= seen:
                return seen
            left = deadline - time.monotonic()
            if left <= 0:
                return seen
            self.get_message(min(left, 0.5))

    def drain(self, timeout: float = 0.3):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.get_message(max(end - time.monotonic(), 0.001))
        return [d for _, d in self.messages]

    def close(self):
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Redis:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self, port: int | None = None, basedir: str | None = None, start: bool = True):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._owned_dir = basedir is None
        self.dir = Path(basedir or tempfile.mkdtemp(prefix="pc-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.proc: Proc | None = None
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def client(self, timeout: float = 5.0) -> RespClient:
        return RespClient(self.host, self.port, timeout=timeout)

    def subscribe(self, *channels, timeout: float = 5.0) -> Subscriber:
        return Subscriber(self.host, self.port, *channels, timeout=timeout)

    def _ping(self) -> bool:
        with self.client(timeout=1.0) as c:
            return c.ping()

    def start(self, timeout: float = 15.0):
        if self.proc is not None and self.proc.running:
            return self
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(self.dir), "--logfile", str(self.logfile),
                "--protected-mode", "no", "--databases", "4"]
        self.proc = Proc(argv, stdout=self.logfile, stderr=self.logfile, name="redis-server",
                         env={"PATH": "/usr/bin:/bin"})

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{_tail(self.logfile)}")
            return self._ping()
        try:
            wait_until(ready, timeout, interval=0.05, what=f"redis on port {self.port}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def stop(self, timeout: float = 10.0):
        if self.proc is None:
            return None
        return self.proc.stop(signal.SIGTERM, timeout=timeout)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()

    def restart(self, timeout: float = 15.0):
        self.stop()
        return self.start(timeout=timeout)

    def cleanup(self):
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------------------
# authsvc


def authsvc_env(env: dict | None = None) -> dict:
    """The inherited environment minus authsvc's variables, plus env."""
    base = {k: v for k, v in os.environ.items() if k not in AUTHSVC_ENV_VARS and not k.startswith("OIDC_")}
    base.setdefault("TZ", "UTC")
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


def sanitizer_report(text: str) -> str | None:
    for m in SANITIZER_MARKERS:
        if m in text:
            i = text.index(m)
            return text[max(0, i - 200):i + 3000]
    return None


class Authsvc:
    """One authsvc server: `authsvc migrate`, then `authsvc` with env; waits for /live.

    env is applied on top of a clean base environment; AUTHSVC_LISTEN and
    AUTHSVC_LOG are filled in when absent (a free port, a file in workdir).
    BETTER_AUTH_URL defaults to the server's own address, so the server's own
    origin is trusted."""

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
            with urllib.request.urlopen(self.url("/live"), timeout=2) as resp:
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
                                   f"{_tail(self.stderr_path)}")
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
# Better Auth formats (compat doc §2, §3, §6)


def b64url_nopad(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    """base64url-nopad(SHA-256(token)): the Redis key suffix and the revocation message."""
    return b64url_nopad(hashlib.sha256(token.encode()).digest())


def session_key(token: str, prefix: str = "pc:") -> str:
    return f"{prefix}s:{token_hash(token)}"


def sign(secret: str, value: str) -> str:
    """base64std(HMAC-SHA256(secret, value)) with padding (44 chars)."""
    return base64.b64encode(hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()).decode()


def signed_value(secret: str, token: str) -> str:
    """token.sig, as in set-auth-token (decoded)."""
    return f"{token}.{sign(secret, token)}"


def cookie_value(secret: str, token: str) -> str:
    """encodeURIComponent(token.sig), as in the Set-Cookie header."""
    return urllib.parse.quote(signed_value(secret, token), safe="-_.!~*'()")


def scrypt_hash(password: str, salt_hex: str | None = None) -> str:
    """Better Auth's password hash: '<salt hex 32>:<key hex 128>'."""
    import unicodedata
    salt_hex = salt_hex or os.urandom(16).hex()
    key = hashlib.scrypt(unicodedata.normalize("NFKC", password).encode(), salt=salt_hex.encode(),
                         n=16384, r=16, p=1, dklen=64, maxmem=128 * 1024 * 1024)
    return f"{salt_hex}:{key.hex()}"


def scrypt_verify(password: str, stored: str) -> bool:
    salt_hex, key_hex = stored.split(":", 1)
    return hmac.compare_digest(scrypt_hash(password, salt_hex), f"{salt_hex}:{key_hex}")


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def generate_id(n: int = 32) -> str:
    """Better Auth's generateId: n chars of [A-Za-z0-9] with rejection sampling."""
    out = []
    while len(out) < n:
        for b in os.urandom(n * 2):
            if b < 248:
                out.append(_ALNUM[b % 62])
                if len(out) == n:
                    break
    return "".join(out)


def parse_set_cookie(header: str):
    """'name=value; Max-Age=1; HttpOnly' -> (name, value, {attr_lower: value or True})."""
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        if not p:
            continue
        k, eq, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip() if eq else True
    return name.strip(), value.strip(), attrs


def set_cookie_headers(resp) -> list:
    """All Set-Cookie header values of a requests.Response (not comma-joined)."""
    raw = getattr(resp, "raw", None)
    headers = getattr(raw, "headers", None)
    if headers is not None and hasattr(headers, "getlist"):
        return list(headers.getlist("Set-Cookie"))
    if headers is not None and hasattr(headers, "get_all"):
        return list(headers.get_all("Set-Cookie") or [])
    v = resp.headers.get("Set-Cookie")
    return [v] if v else []


def set_cookies(resp) -> dict:
    """{name: (value, attrs)} from a response's Set-Cookie headers (last one wins)."""
    out = {}
    for h in set_cookie_headers(resp):
        name, value, attrs = parse_set_cookie(h)
        out[name] = (value, attrs)
    return out


# ---------------------------------------------------------------------------
# HTTP client for the Better Auth API (requests-based)

_MISSING = object()
_counter = [0]


def unique_email(tag: str = "u") -> str:
    _counter[0] += 1
    return f"{tag}{_counter[0]}-{os.urandom(5).hex()}@example.com"


def new_password(tag: str = "Pw") -> str:
    return sensitive(f"{tag}-{base64.urlsafe_b64encode(os.urandom(12)).decode()}")


class User:
    """A signed-up or signed-in user: unpacks as (email, password, token, cookie)."""

    def __init__(self, email, password, token, cookie, *, cookie_name, cookie_value,
                 signed, id=None, name=None, response=None, body=None):
        self.email, self.password, self.token, self.cookie = email, password, token, cookie
        self.cookie_name, self.cookie_value, self.signed = cookie_name, cookie_value, signed
        self.id, self.name, self.response, self.body = id, name, response, body

    def __iter__(self):
        return iter((self.email, self.password, self.token, self.cookie))

    def __repr__(self):
        return f"User({self.email!r}, id={self.id!r})"


class ApiClient:
    """Talks to one authsvc.  Never stores cookies by itself: pass cookie=/bearer=.

    Every password sent and every token/cookie received is added to SENSITIVE."""

    PASSWORD_FIELDS = ("password", "currentPassword", "newPassword")

    def __init__(self, svc, *, secret: str | None = None, origin: str | None = None,
                 xff: str | None = None, timeout: float = 20.0):
        import http.cookiejar
        import requests
        if isinstance(svc, str):
            self.base_url, env = svc.rstrip("/"), {}
        else:
            self.base_url, env = svc.base_url, svc.env
        self.secret = secret or env.get("BETTER_AUTH_SECRET")
        baseurl = env.get("BETTER_AUTH_URL", self.base_url)
        u = urllib.parse.urlsplit(baseurl)
        self.origin = origin or f"{u.scheme}://{u.netloc}"
        secure = u.scheme == "https"
        self.cookie_name = ("__Secure-" if secure else "") + "better-auth.session_token"
        self.dont_remember_name = ("__Secure-" if secure else "") + "better-auth.dont_remember"
        self.xff = xff
        self.timeout = timeout
        self.http = requests.Session()
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.http.trust_env = False

    def close(self):
        self.http.close()

    # -- low level
    def request(self, method: str, path: str, *, json=_MISSING, data=None, headers=None,
                cookie=None, bearer=None, origin=_MISSING, xff=_MISSING, params=None,
                timeout=None, allow_redirects=False):
        """path is absolute ('/health') or relative to /api/auth ('sign-in/email')."""
        url = self.base_url + (path if path.startswith("/") else "/api/auth/" + path)
        h = {}
        if isinstance(cookie, User):
            cookie = cookie.cookie
        if cookie:
            h["Cookie"] = cookie
        if bearer is not None:
            h["Authorization"] = bearer if " " in bearer else f"Bearer {bearer}"
        if origin is _MISSING:
            origin = self.origin if cookie else None
        if origin is not None:
            h["Origin"] = origin
        if xff is _MISSING:
            xff = self.xff
        if xff is not None:
            h["X-Forwarded-For"] = xff
        h.update(headers or {})
        kw = {}
        if json is not _MISSING:
            if isinstance(json, dict):
                for f in self.PASSWORD_FIELDS:
                    if isinstance(json.get(f), str):
                        sensitive(json[f])
            kw["json"] = json
        elif data is not None:
            kw["data"] = data
        r = self.http.request(method, url, headers=h, params=params,
                              timeout=timeout or self.timeout, allow_redirects=allow_redirects, **kw)
        self._remember(r)
        return r

    def _remember(self, r):
        sensitive(r.headers.get("set-auth-token"))
        for name, (value, _attrs) in set_cookies(r).items():
            sensitive(value)
            sensitive(urllib.parse.unquote(value))
        if "json" in (r.headers.get("content-type") or ""):
            try:
                body = r.json()
            except ValueError:
                return
            if isinstance(body, dict):
                if isinstance(body.get("token"), str):
                    sensitive(body["token"])
                s = body.get("session")
                if isinstance(s, dict) and isinstance(s.get("token"), str):
                    sensitive(s["token"])
            elif isinstance(body, list):
                for s in body:
                    if isinstance(s, dict) and isinstance(s.get("token"), str):
                        sensitive(s["token"])

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=_MISSING, **kw):
        if json is _MISSING and "data" not in kw:
            json = {}
        return self.request("POST", path, json=json, **kw)

    # -- credentials
    def cookie_header(self, token: str) -> str:
        return f"{self.cookie_name}={cookie_value(self.secret, token)}"

    def _user_from(self, r, email, password) -> User:
        body = r.json()
        token = body.get("token")
        cookies = set_cookies(r)
        cv = cookies.get(self.cookie_name, (None, None))[0]
        if cv is None and token:
            cv = cookie_value(self.secret, token)
        return User(email, password, token, f"{self.cookie_name}={cv}" if cv else None,
                    cookie_name=self.cookie_name, cookie_value=cv,
                    signed=urllib.parse.unquote(cv) if cv else None,
                    id=(body.get("user") or {}).get("id"), name=(body.get("user") or {}).get("name"),
                    response=r, body=body)

    def sign_up(self, email=None, password=None, name=None, *, expect=200, **extra) -> User:
        email = email or unique_email()
        password = password if password is not None else new_password()
        body = {"name": name if name is not None else "Test User", "email": email, "password": password}
        body.update(extra)
        r = self.post("sign-up/email", body)
        if expect is not None:
            assert r.status_code == expect, f"sign-up {email}: {r.status_code} {r.text[:500]}"
        return self._user_from(r, email, password) if r.status_code == 200 else r

    def sign_in(self, email, password, *, expect=200, **extra) -> User:
        body = {"email": email, "password": password}
        body.update(extra)
        r = self.post("sign-in/email", body)
        if expect is not None:
            assert r.status_code == expect, f"sign-in {email}: {r.status_code} {r.text[:500]}"
        return self._user_from(r, email, password) if r.status_code == 200 else r

    def get_session(self, user=None, **kw):
        if user is not None and "cookie" not in kw and "bearer" not in kw:
            kw["cookie"] = user.cookie
        return self.get("get-session", **kw)

    def session_of(self, user=None, **kw):
        """get-session's JSON body (None for `null`); asserts 200."""
        r = self.get_session(user, **kw)
        assert r.status_code == 200, f"get-session: {r.status_code} {r.text[:300]}"
        return r.json()


# ---------------------------------------------------------------------------
# Assertion helpers shared by the test modules

ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$"


def assert_error(resp, status, *codes):
    """resp has the given status and a JSON error body {message, code in codes}."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    ctype = resp.headers.get("content-type", "")
    assert "application/json" in ctype, f"error content-type {ctype!r}: {resp.text[:200]}"
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("message"), str) and body["message"], body
    if codes:
        assert body.get("code") in codes, f"code {body.get('code')!r} not in {codes}: {body}"
    return body


def assert_4xx_json(resp, *statuses):
    """A clear client error: 4xx (one of statuses if given) with a JSON {message/code}."""
    if statuses:
        assert resp.status_code in statuses, f"expected {statuses}, got {resp.status_code}: {resp.text[:300]}"
    else:
        assert 400 <= resp.status_code < 500, f"expected 4xx, got {resp.status_code}: {resp.text[:300]}"
    assert "application/json" in resp.headers.get("content-type", ""), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and (body.get("code") or body.get("message")), body
    return body


# ---------------------------------------------------------------------------
# Self-test (run by hand): /usr/bin/python3 tests/e2e/harness.py selftest


def _selftest():
    t0 = time.monotonic()
    with Postgres() as pg:
        print(f"postgres up on {pg.port} in {time.monotonic() - t0:.1f}s (pid {pg.proc.pid})")
        url = pg.create_database("selftest")
        c = pg.connect("selftest")
        with c.cursor() as cur:
            cur.execute("select current_user, version()")
            print("  ", cur.fetchone()[0], url)
        c.close()
        pid = pg.proc.pid
        pg.kill()
        assert not pg.running
        pg.start()
        print(f"  killed {pid} and restarted as {pg.proc.pid}")
        pg.restart()
        print(f"  restarted cleanly as {pg.proc.pid}")
        assert pg.connect("selftest")
    with Redis() as rd:
        print(f"redis up on {rd.port} (pid {rd.proc.pid})")
        with rd.client() as c, rd.subscribe("pc:revoked") as sub:
            assert c.command("SET", "pc:s:x", "v", "EX", 100) == "OK"
            assert c.get("pc:s:x") == b"v" and 0 < c.ttl("pc:s:x") <= 100
            assert c.keys("pc:*") == [b"pc:s:x"]
            assert c.delete("pc:s:x") == 1 and not c.exists("pc:s:x")
            assert c.command("PUBLISH", "pc:revoked", "hash1") == 1
            assert "hash1" in sub.wait_for({"hash1"}, timeout=3)
            assert sub.get_message(0.2) is None
            try:
                c.command("NOPE")
                raise AssertionError("expected RespError")
            except RespError:
                pass
        rd.stop()
        assert not rd.running
        rd.start()
        with rd.client() as c:
            assert c.ping()
        print("  stop/start ok")
    assert token_hash("abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    h = scrypt_hash("ﬁnancial")
    assert scrypt_verify("financial", h)
    with _LIVE_LOCK:
        assert not _LIVE, _LIVE
    print(f"selftest ok in {time.monotonic() - t0:.1f}s")


if __name__ == "__main__":
    if sys.argv[1:] == ["selftest"]:
        _selftest()
    else:
        print(__doc__)
