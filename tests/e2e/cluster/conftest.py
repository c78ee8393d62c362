"""Fixtures for the cluster e2e tests (issue 6): a cluster of the module's own -
PostgreSQL, Redis, authsvc, the demo upstream, three gateway replicas and haproxy
from deploy/haproxy.cfg in front of them - that the tests may break on purpose
(kill Redis, PostgreSQL, a replica, restart authsvc).  Nothing here touches the
parent suite's shared PostgreSQL/Redis/authsvc.

  cluster     pcsupport.cluster.Cluster, module scope; stopped and checked (sanitizer
              reports, hung shutdowns) after the module
  c           pcsupport.ApiClient on the cluster's authsvc
  better_auth a real Better Auth 1.7.25 server (tests/e2e/interop) on the cluster's
              database, module scope; bac: an ApiClient on it

Needs haproxy (`make deps` installs it); without it the tests fail, they do not skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

import pcsupport as H
from pcsupport import cluster as C

INTEROP = H.REPO / "tests" / "e2e" / "interop"

# Revocations must be seen because of the feed (or the flush when it comes back),
# never because an entry simply aged out: L1_TTL_SECONDS is 300 s (pcsupport.gw_base_env), and entries stay
# trusted for 30 s while the feed is down.
DEGRADED_TTL = 30


@pytest.fixture(scope="module")
def cluster(tmp_root, secret, request):
    name = request.module.__name__.rsplit(".", 1)[-1]
    yield from C.cluster_fixture(tmp_root / name, secret,
                                 gateway_env={"L1_DEGRADED_TTL_SECONDS": str(DEGRADED_TTL)})


@pytest.fixture
def c(cluster):
    cl = cluster.client()
    try:
        yield cl
    finally:
        cl.close()


class _BA:
    def __init__(self, port, env):
        self.port, self.env, self.host = port, env, "127.0.0.1"

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def better_auth(cluster, secret, tmp_root):
    """Better Auth 1.7.25 (tests/e2e/interop) on the cluster's database."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Better Auth server (make deps installs them)",
                    pytrace=False)
    env_base = {k: v for k, v in os.environ.items()
                if k not in H.AUTHSVC_ENV_VARS and k not in ("NODE_ENV", "TEST", "NODE_OPTIONS")}
    try:
        r = H.run_bounded(["sh", INTEROP / "install.sh"], env=env_base,
                          timeout=float(os.environ.get("PORTCULLIS_NPM_TIMEOUT", "300")))
    except subprocess.TimeoutExpired:
        pytest.fail("tests/e2e/interop/install.sh timed out", pytrace=False)
    if r.returncode != 0:
        pytest.fail(f"interop/install.sh failed:\n{r.stderr.decode(errors='replace')[-2000:]}", pytrace=False)
    npm_dir = r.stdout.decode().strip().splitlines()[-1]
    port = H.free_port()
    env = {"DATABASE_URL": cluster.db_url, "BETTER_AUTH_SECRET": secret,
           "BETTER_AUTH_URL": f"http://127.0.0.1:{port}", "PORT": str(port), "TZ": "UTC"}
    logdir = Path(tmp_root) / "cluster-better-auth"
    logdir.mkdir(parents=True, exist_ok=True)
    proc = H.Proc(["node", "server.mjs"], env={**env_base, **env}, cwd=npm_dir,
                  stdout=logdir / "stdout", stderr=logdir / "stderr", name="better-auth")
    try:
        H.wait_until(lambda: proc.poll() is None and f"ready {port}" in H.tail(logdir / "stdout"),
                     30, interval=0.05, what="Better Auth 'ready'")
        ok = requests.get(f"http://127.0.0.1:{port}/api/auth/ok", timeout=20)
        assert ok.status_code == 200, f"Better Auth: {ok.status_code}\n{H.tail(logdir / 'stderr')}"
        yield _BA(port, env)
    finally:
        proc.stop(signal.SIGTERM, timeout=10)


@pytest.fixture
def bac(better_auth):
    cl = H.ApiClient(better_auth)
    try:
        yield cl
    finally:
        cl.close()
