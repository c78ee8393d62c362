"""The reference Better Auth server for the interop tests: tests/e2e/interop/install.sh
(Better Auth 1.7.25, npm, cached) and `node server.mjs`, plus a copy with the
@better-auth/api-key plugin (installs into $PORTCULLIS_NPM_APIKEY_DIR, default
~/.cache/portcullis/better-auth-apikey-1.7.5).  Used by authsvc/test_interop.py,
test_interop_jwt.py, test_oauth.py, test_apikeys.py and gateway/test_gw_limits.py.

Node and npm are required: without them the tests FAIL (pytest.fail)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .daemons import AUTHSVC_ENV_VARS
from .procs import REPO, Proc, free_port, run_bounded, tail, wait_until

INTEROP_DIR = REPO / "tests" / "e2e" / "interop"
INSTALL_TIMEOUT = float(os.environ.get("PORTCULLIS_NPM_TIMEOUT", "300"))
START_TIMEOUT = 30.0


class BetterAuthServer:
    """Just enough of pcsupport.Authsvc's surface for pcsupport.ApiClient."""

    def __init__(self, proc: Proc, port: int, env: dict, logdir: Path):
        self.proc, self.port, self.env, self.logdir = proc, port, env, logdir
        self.host = "127.0.0.1"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc.running

    def logs(self, n: int = 4000) -> str:
        return (f"--- {self.proc.stderr_path} (tail) ---\n{tail(self.proc.stderr_path, n)}"
                f"\n--- {self.proc.stdout_path} (tail) ---\n{tail(self.proc.stdout_path, 1000)}")


@contextlib.contextmanager
def better_auth(database_url: str, secret: str, trusted_origins, logdir: Path, **flags):
    """A Better Auth server.mjs on a free loopback port, on database_url with
    secret; flags are server.mjs's opt-in variables (BA_MULTI_SESSION="1", ...).
    Yields its BetterAuthServer once it answers; stops it (SIGTERM) after, and
    fails the test if it died meanwhile."""
    npm_dir = install()
    port = free_port()
    env = {"DATABASE_URL": database_url, "BETTER_AUTH_SECRET": secret,
           "BETTER_AUTH_URL": f"http://127.0.0.1:{port}",
           "TRUSTED_ORIGINS": ",".join(trusted_origins), "PORT": str(port), **flags}
    proc = Proc(["node", "server.mjs"], env=node_env(env), cwd=npm_dir,
                stdout=Path(logdir) / "ba.stdout", stderr=Path(logdir) / "ba.stderr",
                name="better-auth")
    ba = BetterAuthServer(proc, port, env, Path(logdir))
    try:
        wait_until(lambda: f"ready {port}" in tail(proc.stdout_path, 2000) or proc.poll() is not None,
                   START_TIMEOUT, interval=0.05, what="Better Auth ready")
        assert proc.poll() is None, ba.logs()
        yield ba
        assert ba.running, f"Better Auth died:\n{ba.logs()}"
    finally:
        proc.stop(signal.SIGTERM, timeout=10)


def node_env(extra: dict | None = None) -> dict:
    drop = set(AUTHSVC_ENV_VARS) | {"NODE_ENV", "TEST", "NODE_OPTIONS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.setdefault("TZ", "UTC")
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def read_mail_log(path, to: str | None = None, kind: str | None = None) -> list:
    """The lines server.mjs appended to $BA_MAIL_LOG, parsed: dicts {"kind":
    "verify-email"|"reset-password", "to", "url", "token"}, in order; only those for
    `to` (case-insensitive) and/or of `kind` when given.  [] when the file is absent."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        e = json.loads(line)
        if to is not None and str(e.get("to", "")).lower() != to.lower():
            continue
        if kind is not None and e.get("kind") != kind:
            continue
        out.append(e)
    return out


def install() -> str:
    missing = [t for t in ("node", "npm") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found on PATH: the interop test needs Node.js "
                    f"(>= 20) and npm to run the reference Better Auth server. Install them "
                    f"(`make deps` does, e.g. apt-get install nodejs npm).", pytrace=False)
    try:
        r = run_bounded(["sh", INTEROP_DIR / "install.sh"], env=node_env({}), timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"tests/e2e/interop/install.sh did not finish within {INSTALL_TIMEOUT:.0f}s:\n"
                    f"{(e.stderr or b'').decode(errors='replace')[-3000:]}", pytrace=False)
    out, err = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    if r.returncode != 0:
        pytest.fail(f"tests/e2e/interop/install.sh failed ({r.returncode}):\n{err[-3000:]}\n{out[-1000:]}",
                    pytrace=False)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    d = lines[-1].strip() if lines else ""
    if not d or not (Path(d) / "node_modules" / "better-auth" / "package.json").exists():
        pytest.fail(f"install.sh printed {out!r}: no better-auth install there\n{err[-2000:]}", pytrace=False)
    return d


# ---------------------------------------------------------------------------
# Better Auth 1.7.25 with @better-auth/api-key 1.7.5: interop/server.mjs with the
# apiKey plugin added.  The plugin declares stale exact peers (@better-auth/utils
# 0.4.2, better-call 1.4.0), hence --legacy-peer-deps.

BA_PACKAGES = {"better-auth": "1.7.25", "pg": "8.23.1", "@better-auth/api-key": "1.7.5"}
PLUGIN = ('apiKey({ defaultPrefix: "oc_", enableMetadata: true, enableSessionForAPIKeys: true, '
          'rateLimit: { maxRequests: 10000, timeWindow: 60000 } })')


def install_ba_apikey() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node/npm not found: the API key interop tests need them "
                    "(make deps installs them)")
    d = Path(os.environ.get("PORTCULLIS_NPM_APIKEY_DIR")
             or Path.home() / ".cache" / "portcullis" / "better-auth-apikey-1.7.5")
    d.mkdir(parents=True, exist_ok=True)
    pkg = {"name": "portcullis-better-auth-apikey-interop", "version": "0.0.0", "private": True,
           "type": "module", "dependencies": BA_PACKAGES}
    (d / "package.json").write_text(json.dumps(pkg, indent=2) + "\n")

    def installed():
        for name, ver in BA_PACKAGES.items():
            f = d / "node_modules" / name / "package.json"
            if not f.exists() or json.loads(f.read_text()).get("version") != ver:
                return False
        return True
    if not installed():
        try:
            r = run_bounded(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                               "--legacy-peer-deps"], env=node_env(), cwd=str(d),
                              timeout=float(os.environ.get("PORTCULLIS_NPM_TIMEOUT", "300")))
        except subprocess.TimeoutExpired:
            pytest.fail("npm install of the Better Auth API key server timed out", pytrace=False)
        if r.returncode != 0 or not installed():
            pytest.fail(f"npm install failed ({r.returncode}):\n{r.stderr.decode(errors='replace')[-3000:]}",
                        pytrace=False)
    src = (INTEROP_DIR / "server.mjs").read_text()
    anchor_import = 'import { getMigrations } from "better-auth/db/migration";'
    anchor_plugins = "plugins: jwtMode ? [bearer(), jwt(JWT_MODES[jwtMode])] : [bearer()],"
    assert anchor_import in src and anchor_plugins in src, "interop/server.mjs changed: update this test"
    src = src.replace(anchor_import, anchor_import + '\nimport { apiKey } from "@better-auth/api-key";')
    src = src.replace(anchor_plugins, f"plugins: [bearer(), {PLUGIN}],")
    (d / "server-apikey.mjs").write_text(src)
    return d
