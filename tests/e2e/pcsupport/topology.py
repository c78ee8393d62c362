"""Readers of the cluster topology as docker-compose.yml, scripts/cluster.sh,
deploy/haproxy.cfg and the Dockerfile describe it (used by test_cluster_config.py
and test_cluster_script.py; no tests here)."""

from __future__ import annotations

import re
import subprocess

import pytest

import pcsupport as H

REPO = H.REPO
COMPOSE = REPO / "docker-compose.yml"
CLUSTER_SH = REPO / "scripts" / "cluster.sh"
HAPROXY_CFG = REPO / "deploy" / "haproxy.cfg"
DOCKERFILE = REPO / "Dockerfile"
HEALTHCHECK = REPO / "deploy" / "healthcheck.sh"
GATEWAYS = ["gateway1", "gateway2", "gateway3"]
SHARED = {"DATABASE_URL", "REDIS_URL", "BETTER_AUTH_SECRET", "BETTER_AUTH_URL"}


def compose() -> dict:
    try:
        import yaml
    except ImportError:
        pytest.fail("PyYAML is missing: make deps installs python3-yaml", pytrace=False)
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict:
    return compose()["services"]


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} / ${VAR:?message} with nothing set in the environment."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}",
                  lambda m: m.group(3) if m.group(2) == "-" else f"<{m.group(1)}>", value)


def env_of(svc: dict) -> dict:
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
    return {k: ("" if v is None else interpolate(str(v))) for k, v in e.items()}


def published(svc: dict) -> list:
    """[(host_ip, host_port, container_port)] of a compose service."""
    out = []
    for p in svc.get("ports") or []:
        parts = str(p).split(":")
        assert len(parts) == 3, f"publish on an explicit address (127.0.0.1:host:container): {p}"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1].rstrip("/").split("/")[0])


def cluster_sh() -> str:
    return CLUSTER_SH.read_text()


def cluster_services() -> list:
    text = cluster_sh()
    names = re.findall(r"^\s*start_svc ([a-z0-9-]+) ", text, re.M)
    if re.search(r'echo "postgres \$PG_PID"', text):
        names.insert(0, "postgres")
    return names


def cluster_ports() -> dict:
    """{VARIABLE: default port} from the `: "${X_PORT:=N}"` lines of cluster.sh."""
    return {k: int(v) for k, v in re.findall(r'^: "\$\{([A-Z0-9_]+_PORT):=(\d+)\}"', cluster_sh(), re.M)}


def norm(name: str) -> str:
    return name.upper().replace("-", "_")


def service_for_port_var(var: str, names) -> str:
    stem = var[: -len("_PORT")]
    hits = [n for n in names if stem == norm(n) or stem.startswith(norm(n) + "_")]
    assert len(hits) == 1, f"cluster.sh's {var} matches no single compose service: {hits}"
    return hits[0]


def help_vars(program: str) -> set:
    r = H.run_bounded([H.binary(program), "--help"], env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", r.stdout.decode(), re.M))


def haproxy_vars() -> tuple:
    """(required, optional): variables deploy/haproxy.cfg expands; optional ones are
    only used inside `.if defined(X)` blocks."""
    text = HAPROXY_CFG.read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", text))
    optional = set(re.findall(r"^\.if defined\(([A-Z0-9_]+)\)", text, re.M))
    return used - optional, optional


def haproxy_servers() -> dict:
    """{server name: variable of its address}"""
    return dict(re.findall(r'^\s*server (\S+) "\$\{([A-Z0-9_]+)\}"', HAPROXY_CFG.read_text(), re.M))


def dockerfile_stages() -> dict:
    """{stage name: its text} (FROM ... AS name)."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM\s+", text, flags=re.M)
    out = {}
    for p in parts[1:]:
        m = re.match(r"(\S+)\s+AS\s+(\S+)", p)
        assert m, f"every stage is named: FROM {p.splitlines()[0]}"
        out[m.group(2)] = "FROM " + p
    return out


def apt_packages(stage_text: str) -> set:
    m = re.search(r"apt-get install[^\n]*?--no-install-recommends((?:[^&]|\\\n)*)", stage_text)
    assert m, "apt-get install --no-install-recommends in the stage"
    return set(re.findall(r"[a-z0-9][a-z0-9.+-]+", m.group(1).replace("\\\n", " ")))


def dpkg_owner(path: str) -> str:
    r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"dpkg -S {path}: {r.stderr}"
    return r.stdout.split(":", 1)[0].strip()


def compose_program_vars() -> dict:
    sv = services()
    return {n: set(env_of(sv[n])) for n in ["migrate", "authsvc"] + GATEWAYS}


def cluster_sh_program_vars() -> dict:
    """What cluster.sh gives each program: the exported shared variables plus the ones
    on its own command line (start_svc NAME LOG env A=.. B=.. program)."""
    text = cluster_sh()
    exported = set(re.findall(r"^export ([A-Z_]+)", text, re.M))
    exported |= {v for v in SHARED if re.search(rf"^\s*export {v}\b", text, re.M)}
    out = {}
    for name, rest in re.findall(r"^\s*start_svc ([a-z0-9-]+) \S+ env ((?:[A-Z0-9_]+=\S+ )+)", text, re.M):
        out[name] = exported | set(re.findall(r"([A-Z0-9_]+)=", rest))
    m = re.search(r"^\s*((?:[A-Z0-9_]+=\S+ )+)\"\$BUILD/authsvc\" migrate", text, re.M)
    out["migrate"] = exported | (set(re.findall(r"([A-Z0-9_]+)=", m.group(1))) if m else set())
    return out
