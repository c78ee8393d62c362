"""docker-compose.yml, the Dockerfile, scripts/cluster.sh (`make cluster`) and
deploy/haproxy.cfg describe one topology (issue 6).  Docker cannot run here, so this
reads the files and checks that they name the same services, ports and variables:

- services: what cluster.sh starts == compose's services (compose's one-shot
  `migrate` is cluster.sh's `authsvc migrate` step);
- ports: cluster.sh's default host port of each service == the port compose
  publishes on 127.0.0.1, and inside compose every listen address, haproxy server
  address and upstream URL agrees with the container ports;
- variables: authsvc, migrate and the gateways get the same set in both (cluster.sh's
  set is read from the running processes by test_cluster_script.py; here from the
  script text), haproxy.cfg's variables are set by both, and every variable named
  is one the program reads (`authsvc --help`, `gateway --help`);
- Dockerfile: debian:bookworm-slim everywhere, the build stage has the -dev package
  of every pkg-config module the Makefile links, the runtime stage has the package
  of every shared library the built binaries need and no -dev package, a non-root
  user, a HEALTHCHECK on /live; .dockerignore keeps build/, .run/ and .git out.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import pcsupport as H
from pcsupport.topology import (DOCKERFILE, GATEWAYS, HAPROXY_CFG, HEALTHCHECK, REPO, SHARED,
                      apt_packages, cluster_ports, cluster_services, cluster_sh, cluster_sh_program_vars,
                      compose_program_vars, dockerfile_stages, dpkg_owner, env_of, haproxy_servers,
                      haproxy_vars, help_vars, port_of, published, service_for_port_var, services)


# ---------------------------------------------------------------------------
# services and ports


def test_same_services():
    sv = services()
    assert set(sv) == set(cluster_services()) | {"migrate"}, (sorted(sv), cluster_services())
    assert sv["migrate"]["command"] == ["authsvc", "migrate"]
    assert re.search(r'"\$BUILD/authsvc" migrate', cluster_sh()), "cluster.sh runs authsvc migrate"
    assert [n for n in sv if n.startswith("gateway")] == GATEWAYS
    assert [n for n in cluster_services() if n.startswith("gateway")] == GATEWAYS
    assert sorted(haproxy_servers()) == GATEWAYS


def test_same_published_ports():
    sv = services()
    want = {}
    for var, port in cluster_ports().items():
        want.setdefault(service_for_port_var(var, sv), set()).add(port)
    got = {n: {hp for _, hp, _ in published(s)} for n, s in sv.items() if published(s)}
    assert got == want, f"compose publishes {got}, cluster.sh uses {want}"
    for n, s in sv.items():
        for ip, _, _ in published(s):
            assert ip == "127.0.0.1", f"{n} is published on {ip}, not loopback"
    # what cluster.sh prints names the same services
    printed = set(re.findall(r"^  ([a-z0-9-]+) +(?:\$[A-Z]\b|http://)", cluster_sh(), re.M))
    assert printed == set(want), printed


def test_compose_ports_agree_inside():
    sv = services()
    env = {n: env_of(s) for n, s in sv.items()}
    assert {c for _, _, c in published(sv["authsvc"])} == {port_of(env["authsvc"]["AUTHSVC_LISTEN"]),
                                                           port_of(env["authsvc"]["AUTHSVC_ADMIN_LISTEN"])}
    demo_port = port_of(sv["demo-upstream"]["command"][1])
    assert {c for _, _, c in published(sv["demo-upstream"])} == {demo_port}
    assert port_of(env["demo-upstream"]["HEALTHCHECK_ADDR"]) == demo_port
    for g in GATEWAYS:
        listen = port_of(env[g]["GATEWAY_LISTEN"])
        admin = port_of(env[g]["GATEWAY_ADMIN_LISTEN"])
        assert {c for _, _, c in published(sv[g])} == {listen, admin}, g
        assert env[g]["UPSTREAM_URL"] == f"http://demo-upstream:{demo_port}", g
        # authsvc's JWKS by service name: BETTER_AUTH_URL's loopback is the gateway's container
        authsvc_port = port_of(env["authsvc"]["AUTHSVC_LISTEN"])
        assert env[g]["JWT_JWKS_URL"] == f"http://authsvc:{authsvc_port}/api/auth/jwks", g
        assert env["haproxy"][f"{g.upper()}_ADDR"] == f"{g}:{listen}", g
    hp = env["haproxy"]
    assert {c for _, _, c in published(sv["haproxy"])} == {port_of(hp["HAPROXY_BIND"]),
                                                           port_of(hp["HAPROXY_STATS_BIND"])}
    assert port_of(hp["HEALTHCHECK_ADDR"]) == port_of(hp["HAPROXY_STATS_BIND"])
    # the URLs of the shared block name the compose services and their usual ports
    shared = env["authsvc"]
    assert re.match(r"postgres(ql)?://[^@]+@postgres:5432/", shared["DATABASE_URL"]), shared["DATABASE_URL"]
    assert shared["REDIS_URL"] == "redis://redis:6379"
    assert port_of(shared["BETTER_AUTH_URL"]) == port_of(env["authsvc"]["AUTHSVC_LISTEN"])


# ---------------------------------------------------------------------------
# variables


def test_same_program_variables():
    authsvc_vars, gateway_vars = help_vars("authsvc"), help_vars("gateway")
    comp, sh = compose_program_vars(), cluster_sh_program_vars()
    for n in ["authsvc"] + GATEWAYS:
        reads = authsvc_vars if n == "authsvc" else gateway_vars
        assert comp[n] <= reads, f"compose sets variables {n} does not read: {comp[n] - reads}"
        assert comp[n] == sh[n] & reads, f"{n}: compose {sorted(comp[n])}, cluster.sh {sorted(sh[n] & reads)}"
        assert SHARED <= comp[n], n
    # migrate: the shared block (cluster.sh adds only AUTHSVC_LISTEN, which migrate ignores)
    assert comp["migrate"] == SHARED
    assert SHARED <= sh["migrate"]


def test_haproxy_variables_set_by_both():
    required, optional = haproxy_vars()
    assert required == {"HAPROXY_BIND", "HAPROXY_STATS_BIND", "GATEWAY1_ADDR", "GATEWAY2_ADDR",
                        "GATEWAY3_ADDR"}, required
    hp_env = set(env_of(services()["haproxy"]))
    assert required <= hp_env, required - hp_env
    assert (hp_env - required) <= optional | {"HEALTHCHECK_ADDR"}, hp_env - required
    text = cluster_sh()
    block = re.search(r"start_svc haproxy .*?haproxy -db -f \"\$ROOT/deploy/haproxy.cfg\"", text, re.S)
    assert block, "cluster.sh starts haproxy with deploy/haproxy.cfg"
    sh_vars = set(re.findall(r"([A-Z0-9_]+)=", block.group(0)))
    assert sh_vars == required, sh_vars
    for name, var in haproxy_servers().items():
        assert var == f"{name.upper()}_ADDR"


def test_haproxy_cfg_is_valid_for_both():
    from pcsupport import cluster as C
    exe = C.haproxy_exe()
    if exe is None:
        pytest.fail("haproxy not found (make deps installs it)", pytrace=False)
    local = {"HAPROXY_BIND": "127.0.0.1:8080", "HAPROXY_STATS_BIND": "127.0.0.1:8404",
             **{f"GATEWAY{i}_ADDR": f"127.0.0.1:808{i}" for i in (1, 2, 3)}}
    docker = env_of(services()["haproxy"])
    for env in (local, docker):
        r = H.run_bounded([exe, "-c", "-f", HAPROXY_CFG], env={"PATH": "/usr/bin:/bin", **env}, timeout=20)
        assert r.returncode == 0, (env, r.stdout.decode(), r.stderr.decode())


# ---------------------------------------------------------------------------
# Dockerfile and compose hygiene


def test_dockerfile_stages():
    st = dockerfile_stages()
    assert set(st) >= {"build", "runtime", "haproxy"}
    assert list(st)[-1] == "runtime", "runtime must be the last (default) stage"
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm-slim$", text, re.M)
    for name, body in st.items():
        assert body.startswith("FROM ${DEBIAN_IMAGE} AS"), f"stage {name} is not on debian:bookworm-slim"
    comp = services()
    for n, s in comp.items():
        b = s.get("build")
        if b:
            assert b["target"] in st, (n, b)


def test_dockerfile_build_stage_has_every_dev_package():
    build = apt_packages(dockerfile_stages()["build"])
    mk = (REPO / "Makefile").read_text()
    pkgs = re.search(r"^PKGS := (.*)$", mk, re.M).group(1).split()
    need = {"build-essential", "pkg-config", "libunistring-dev"}   # -lunistring has no .pc
    for m in pkgs:
        pcdir = subprocess.run(["pkg-config", "--variable=pcfiledir", m], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        need.add(dpkg_owner(f"{pcdir}/{m}.pc"))
    assert need <= build, f"build stage lacks {need - build}"
    assert "make -j" in dockerfile_stages()["build"] and " all" in dockerfile_stages()["build"]


def test_dockerfile_runtime_stage_has_exactly_the_shared_libraries():
    rt_text = dockerfile_stages()["runtime"]
    rt = apt_packages(rt_text)
    paths = set()
    for exe in ("authsvc", "gateway", "demo-upstream"):
        path = str(REPO / "build" / exe)         # the flavour the Dockerfile builds (not build/asan)
        if not Path(path).exists():
            pytest.fail(f"{path} missing: run make", pytrace=False)
        out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, timeout=30).stdout
        needed = set(re.findall(r"^\s*NEEDED\s+(\S+)", out, re.M))
        ldd = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
            ["ldd", path], capture_output=True, text=True, timeout=30).stdout, re.M))
        for lib in needed:
            if lib.startswith(("libc.so", "libm.so", "libpthread", "libdl.so", "ld-linux")):
                continue                                            # libc6 is in the base image
            assert lib in ldd, f"{exe}: {lib} not found by ldd"
            p = ldd[lib]
            paths.update({p, "/usr" + p} if p.startswith("/lib") else {p})
        assert f"/src/build/{exe}" in rt_text, f"runtime stage does not copy {exe}"
    r = subprocess.run(["dpkg", "-S", *sorted(paths)], capture_output=True, text=True, timeout=30)
    found = dict((path, pkg.split(":")[0]) for pkg, path in re.findall(r"^(\S+): (\S+)$", r.stdout, re.M))
    need = set(found.values())
    libs = {Path(p).name for p in paths}
    assert {Path(p).name for p in found} == libs, f"no package owns {libs - {Path(p).name for p in found}}"
    # Not a shared library, but libcurl needs it to verify the https providers
    # (Google, OIDC discovery, JWKS) that authsvc and the gateway call.
    assert "ca-certificates" in rt, "runtime stage lacks ca-certificates (https to providers)"
    rt = rt - {"ca-certificates"}
    assert rt == need, f"runtime packages {sorted(rt)}, the binaries need {sorted(need)}"
    assert not [p for p in rt if p.endswith("-dev")]


def test_dockerfile_runtime_user_and_healthcheck():
    for stage in ("runtime", "haproxy"):
        body = dockerfile_stages()[stage]
        users = re.findall(r"^USER\s+(\S+)", body, re.M)
        assert users and users[-1] not in ("root", "0"), f"{stage}: USER {users}"
        hc = re.findall(r"^HEALTHCHECK .*CMD \[\"portcullis-healthcheck\"\]", body, re.M)
        assert hc, f"{stage}: HEALTHCHECK"
    rt = dockerfile_stages()["runtime"]
    assert re.search(r"useradd --system --uid \d+", rt)
    # the image listens on every address by default (a container is reached from outside it)
    envs = dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", rt, re.M))))
    assert envs.get("GATEWAY_LISTEN") == "0.0.0.0:8080", envs
    assert envs.get("AUTHSVC_LISTEN") == "0.0.0.0:3000", envs
    hc = HEALTHCHECK.read_text()
    assert 'path=${HEALTHCHECK_PATH:-/live}' in hc
    assert "GATEWAY_LISTEN" in hc and "AUTHSVC_LISTEN" in hc


def test_dockerignore_keeps_local_state_out():
    lines = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    assert {".git", ".run", "build"} <= lines, lines
    # and nothing the Dockerfile copies is ignored
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M))
    for src in {s for c in copied for s in c.split()}:
        top = src.split("/")[0]
        assert top not in lines, f"{src} is copied but ignored"


def test_compose_healthchecks_and_start_order():
    sv = services()
    for n, s in sv.items():
        if n == "migrate":
            assert s.get("restart") == "no"
            continue
        assert s.get("healthcheck", {}).get("test"), f"{n} has no healthcheck"
        for dep, cond in (s.get("depends_on") or {}).items():
            assert isinstance(cond, dict) and cond.get("condition"), f"{n} -> {dep} without a condition"
            want = "service_completed_successfully" if dep == "migrate" else "service_healthy"
            assert cond["condition"] == want, (n, dep, cond)
    assert set(sv["haproxy"]["depends_on"]) == set(GATEWAYS)
    for n in ["authsvc"] + GATEWAYS:
        assert "migrate" in sv[n]["depends_on"] and "redis" in sv[n]["depends_on"], n
    assert "postgres" in sv["migrate"]["depends_on"]
