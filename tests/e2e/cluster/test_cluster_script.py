"""`make cluster` for real: scripts/cluster.sh on free ports in a temp dir.

It must start PostgreSQL, Redis, authsvc, the demo upstream, three gateways and
haproxy, print the endpoints, serve (a session works through haproxy on all three
replicas and a sign-out is refused by each replica), give every program the same
variables docker-compose.yml gives it (read from /proc/<pid>/environ), and stop
everything it started on Ctrl-C (SIGINT to its process group, as a terminal sends).
The container healthcheck script (deploy/healthcheck.sh) is tried on the live servers.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

import pcsupport as H
from pcsupport import cluster as C
from pcsupport import topology as CFG

START_TIMEOUT = 90.0
STOP_TIMEOUT = 45.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _environ(pid: int) -> dict:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(x.split("=", 1) for x in raw.decode(errors="replace").split("\0") if "=" in x)


@pytest.fixture(scope="module")
def running(tmp_root):
    if C.haproxy_exe() is None:
        pytest.fail("haproxy not found (make deps installs it)", pytrace=False)
    run = Path(tmp_root) / "make-cluster"
    run.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp_root, 0o711)        # PostgreSQL runs as `postgres` and must reach its dir
    os.chmod(run, 0o755)
    ports = {v: H.free_port() for v in CFG.cluster_ports()}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(run), "LANG": "C", "TZ": "UTC",
           "CLUSTER_RUN_DIR": str(run / "state"), "PORTCULLIS_BUILD": str(H.build_dir()),
           **{k: str(v) for k, v in ports.items()}}
    out = run / "cluster.out"
    # Ctrl-C must reach cluster.sh as it does from a terminal: a shell cannot trap a
    # signal ignored when it started, and a runner started in the background
    # (`.ci/run &`) ignores SIGINT. Caught here, it is default again after exec.
    was = signal.getsignal(signal.SIGINT)
    if was == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = H.Proc(["sh", CFG.CLUSTER_SH], env=env, cwd=str(H.REPO), stdout=out, stderr=out,
                      name="cluster.sh")
    finally:
        if was == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = {"proc": proc, "ports": ports, "out": out, "dir": run / "state", "pids": {}}
    try:
        H.wait_until(lambda: (proc.poll() is None or
                              pytest.fail(f"cluster.sh exited {proc.returncode}:\n{H.tail(out)}", pytrace=False))
                     and "Portcullis cluster is running" in H.tail(out, 20000),
                     START_TIMEOUT, interval=0.1, what="cluster.sh to print its endpoints")
        state["pids"] = {n: int(p) for n, p in
                         (ln.split() for ln in (run / "state" / "pids").read_text().splitlines() if ln.strip())}
        yield state
    finally:
        if proc.poll() is None:
            proc.stop(signal.SIGTERM, timeout=STOP_TIMEOUT)
        for name, pid in state["pids"].items():     # never leave one behind (PostgreSQL has its own session)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run / "state" / "pg" / "data", ignore_errors=True)   # 40 MB; its log stays


def test_prints_the_endpoints(running):
    text = running["out"].read_text()
    ep = dict(re.findall(r"^  ([A-Za-z0-9-]+) +((?:http|postgres|redis)://\S+)", text, re.M))
    p = running["ports"]
    assert ep["haproxy"] == f"http://127.0.0.1:{p['HAPROXY_PORT']}"
    for i in (1, 2, 3):
        assert ep[f"gateway{i}"] == f"http://127.0.0.1:{p[f'GATEWAY{i}_PORT']}"
    assert ep["authsvc"] == f"http://127.0.0.1:{p['AUTHSVC_PORT']}"
    assert ep["demo-upstream"] == f"http://127.0.0.1:{p['DEMO_UPSTREAM_PORT']}"
    assert ep["PostgreSQL"].startswith("postgres://postgres@127.0.0.1:")
    assert ep["Redis"].startswith("redis://127.0.0.1:")
    assert f"stats: http://127.0.0.1:{p['HAPROXY_STATS_PORT']}/" in text


def test_admin_listeners_serve_the_metrics(running):
    p = running["ports"]
    for i in (1, 2, 3):
        m = requests.get(f"http://127.0.0.1:{p[f'GATEWAY{i}_ADMIN_PORT']}/metrics", timeout=5)
        assert m.status_code == 200 and "portcullis_build_info" in m.text, (i, m.status_code)
        # the public port routes /metrics like any path (here to the demo upstream)
        r = requests.get(f"http://127.0.0.1:{p[f'GATEWAY{i}_PORT']}/metrics", timeout=5)
        assert "portcullis_build_info" not in r.text, i
    m = requests.get(f"http://127.0.0.1:{p['AUTHSVC_ADMIN_PORT']}/metrics", timeout=5)
    assert m.status_code == 200 and 'program="authsvc"' in m.text, m.status_code
    assert requests.get(f"http://127.0.0.1:{p['AUTHSVC_PORT']}/metrics", timeout=5).status_code == 404


def test_runs_the_compose_services_with_the_compose_variables(running):
    pids = running["pids"]
    assert set(pids) == set(CFG.services()) - {"migrate"}, sorted(pids)
    assert all(_alive(pid) for pid in pids.values()), pids
    comp = CFG.compose_program_vars()
    reads = {"authsvc": CFG.help_vars("authsvc"), "gateway": CFG.help_vars("gateway")}
    for name in ["authsvc"] + CFG.GATEWAYS:
        env = _environ(pids[name])
        got = set(env) & reads["authsvc" if name == "authsvc" else "gateway"]
        assert got == comp[name], f"{name}: runs with {sorted(got)}, compose sets {sorted(comp[name])}"
    required, optional = CFG.haproxy_vars()
    hp = set(_environ(pids["haproxy"])) & (required | optional)
    assert hp == required, hp


def test_serves_through_haproxy_on_every_replica(running):
    p = running["ports"]
    c = H.ApiClient(f"http://127.0.0.1:{p['AUTHSVC_PORT']}")
    try:
        u = c.sign_up(name="make cluster")
        seen = {}
        for _ in range(6):
            r = requests.get(f"http://127.0.0.1:{p['HAPROXY_PORT']}/hello", headers={"Cookie": u.cookie,
                             "Connection": "close"}, timeout=10)
            assert r.status_code == 200, r.text[:300]
            assert r.json()["headers"]["x-user-id"] == u.id
            seen[r.headers["x-portcullis-replica"]] = True
        assert sorted(seen) == CFG.GATEWAYS, seen
        assert c.post("sign-out", cookie=u.cookie).status_code == 200
        for i in (1, 2, 3):
            url = f"http://127.0.0.1:{p[f'GATEWAY{i}_PORT']}/hello"
            H.wait_until(lambda: requests.get(url, headers={"Cookie": u.cookie}, timeout=5).status_code == 401,
                         2.0, interval=0.01, what=f"gateway{i} to refuse the signed-out cookie")
        st = requests.get(f"http://127.0.0.1:{p['HAPROXY_STATS_PORT']}/;csv", timeout=5).text
        assert len(re.findall(r"^gateways,gateway[123],.*?,UP,", st, re.M)) == 3, st
    finally:
        c.close()


def test_container_healthcheck_script(running):
    p = running["ports"]

    def hc(**env):
        return subprocess.run(["bash", CFG.HEALTHCHECK], env={"PATH": "/usr/bin:/bin", **env},
                              timeout=10, capture_output=True).returncode
    assert hc(GATEWAY_LISTEN=f"0.0.0.0:{p['GATEWAY1_PORT']}") == 0
    assert hc(GATEWAY_LISTEN=f"127.0.0.1:{p['GATEWAY2_PORT']}", HEALTHCHECK_PATH="/ready") == 0
    assert hc(AUTHSVC_LISTEN=f"0.0.0.0:{p['AUTHSVC_PORT']}") == 0
    assert hc(HEALTHCHECK_ADDR=f"127.0.0.1:{p['HAPROXY_STATS_PORT']}") == 0
    assert hc(HEALTHCHECK_ADDR=f"127.0.0.1:{p['DEMO_UPSTREAM_PORT']}") == 0
    assert hc(HEALTHCHECK_ADDR=f"127.0.0.1:{H.free_port()}") == 1                  # nothing listens
    # the image sets both listen addresses: the program PID 1 runs picks its own
    both = {"GATEWAY_LISTEN": f"0.0.0.0:{p['GATEWAY1_PORT']}", "AUTHSVC_LISTEN": f"0.0.0.0:{p['AUTHSVC_PORT']}"}
    assert hc(HEALTHCHECK_PROGRAM="authsvc", **both) == 0
    assert hc(HEALTHCHECK_PROGRAM="gateway", **both) == 0
    assert hc(HEALTHCHECK_PROGRAM="authsvc", **dict(both, AUTHSVC_LISTEN=f"0.0.0.0:{H.free_port()}")) == 1
    assert hc(HEALTHCHECK_PROGRAM="/usr/local/bin/gateway",
              **dict(both, GATEWAY_LISTEN=f"0.0.0.0:{H.free_port()}")) == 1
    assert hc(HEALTHCHECK_ADDR=f"127.0.0.1:{p['HAPROXY_PORT']}", HEALTHCHECK_PATH="/nope") == 1   # 401


def test_ctrl_c_stops_everything(running):
    proc, pids, p = running["proc"], running["pids"], running["ports"]
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)               # what a terminal's Ctrl-C does
    rc = proc.wait(STOP_TIMEOUT)
    took = time.monotonic() - t0
    assert rc is not None, f"cluster.sh still running {STOP_TIMEOUT}s after Ctrl-C:\n{H.tail(running['out'])}"
    text = running["out"].read_text()
    print(f"\ncluster.sh stopped {took:.1f}s after Ctrl-C (exit {rc})")
    assert "cluster: stopped" in text, text[-2000:]
    assert "did not stop within" not in text, text[-2000:]
    left = {n: pid for n, pid in pids.items() if _alive(pid)}
    assert not left, f"still running after Ctrl-C: {left}"
    busy = [v for v, port in p.items() if C.port_open(port)]
    assert not busy, busy
    assert (running["dir"] / "pids").read_text() == ""
