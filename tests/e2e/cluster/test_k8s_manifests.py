"""deploy/k8s (issue 25): the Kustomize base and its dev and prod overlays. No
cluster exists here and kustomize is not installed, so this renders each overlay
itself - the subset of kustomize the manifests use, exactly: `resources` (files
and directories), `patches` by `path` (strategic merge, with the merge keys of
the fields patched; anything else fails the render), `images` (newName,
newTag), `namespace` - and checks
the result against the Dockerfile, docker-compose.yml and the programs
themselves:

- every object is valid YAML of a known apiVersion/kind, every file under
  deploy/k8s is used, selectors match their pods, Services name real ports;
- images and commands are compose's (portcullis:latest, or in prod the
  image under VERSION's tag, running `authsvc`, `authsvc migrate`, `gateway`,
  `demo-upstream`; compose's postgres and redis);
- every variable a container gets is in its program's `--help` table, or is
  NAME_FILE for such a NAME; every file variable (NAME_FILE, GATEWAY_ROUTES)
  names a file a mounted Secret or ConfigMap holds; the container's
  environment, with the mounts written to a temporary directory, passes the
  program's own `--check`, and a two-line file behind each NAME_FILE makes
  `--check` fail naming it (so the program really reads that file);
- container ports are the listen addresses' ports (on 0.0.0.0), the same ports
  as compose's; probes are GET /live (liveness) and /ready (readiness) on the
  public port; the Prometheus annotations name the admin port and /metrics;
- the NetworkPolicy lets only the monitoring namespace's Prometheus pods reach
  an admin port, and lets the public port in;
- every pod runs as non-root, with a read-only root filesystem, no privilege
  escalation, every capability dropped, no service account token;
- dev: one replica each, PostgreSQL and Redis in the namespace, the Secret's URLs
  name their Services; prod: three gateway replicas, a PodDisruptionBudget, a
  HorizontalPodAutoscaler on CPU, resources set, no Secret or database in it;
- docs/kubernetes.md says how to apply, names the Secret's keys and says the
  manifests were checked this way, not applied; README links it.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import pcsupport as H
from pcsupport.topology import DOCKERFILE, REPO, dockerfile_stages, env_of, help_vars, port_of, services

K8S = REPO / "deploy" / "k8s"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
DOC = REPO / "docs" / "kubernetes.md"

KNOWN_KINDS = {
    ("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job"),
    ("networking.k8s.io/v1", "NetworkPolicy"), ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
}
WORKLOADS = {"Deployment", "StatefulSet", "Job"}
# Strategic merge: the patchMergeKey of the lists a patch may touch; other lists
# are replaced whole only where Kubernetes does so (no merge key).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath"}
REPLACED_LISTS = {"command", "args"}
PROGRAMS = ("authsvc", "gateway")
# Listen variables of each program: (public, admin)
LISTEN_VARS = {"authsvc": ("AUTHSVC_LISTEN", "AUTHSVC_ADMIN_LISTEN"),
               "gateway": ("GATEWAY_LISTEN", "GATEWAY_ADMIN_LISTEN")}
# Variables naming a file a container must find (besides every NAME_FILE)
FILE_VARS = {"GATEWAY_ROUTES", "AUTHSVC_LOG", "GATEWAY_LOG", "UPSTREAM_CA_FILE", "SMTP_CA_FILE",
             "GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY", "MAIL_TEMPLATES_DIR"}
# Values --check is given for the Secret keys prod leaves to the operator
# (docs/kubernetes.md: kubectl create secret generic portcullis ...)
PROD_SECRET_STANDINS = {"better-auth-secret": "x" * 40,
                        "database-url": "postgres://portcullis:pw@db.example.internal:5432/portcullis",
                        "redis-url": "redis://:pw@redis.example.internal:6379"}


# ---------------------------------------------------------------------------
# the kustomize subset


def _yaml():
    try:
        import yaml
    except ImportError:
        pytest.fail("PyYAML is missing: make deps installs python3-yaml", pytrace=False)
    return yaml


def _load_docs(path: Path) -> list:
    docs = [d for d in _yaml().safe_load_all(path.read_text()) if d is not None]
    for d in docs:
        assert isinstance(d, dict), f"{path}: a document is not a mapping"
    return docs


def _merge(dst, patch, where: str):
    """Kubernetes strategic merge of patch into dst (a new value)."""
    if isinstance(patch, dict):
        assert isinstance(dst, dict), f"{where}: a mapping patches a {type(dst).__name__}"
        out = dict(dst)
        for k, v in patch.items():
            assert not str(k).startswith("$"), f"{where}.{k}: directives are outside the test's subset"
            assert v is not None, f"{where}.{k}: null (delete) is outside the test's subset"
            out[k] = _merge(dst[k], v, f"{where}.{k}") if k in dst else copy.deepcopy(v)
        return out
    if isinstance(patch, list):
        field = where.rsplit(".", 1)[-1]
        if field in REPLACED_LISTS:
            return copy.deepcopy(patch)
        key = MERGE_KEYS.get(field)
        assert key, f"{where}: how kustomize merges `{field}` is outside the test's subset"
        out = [copy.deepcopy(x) for x in dst]
        for item in patch:
            hit = [i for i, x in enumerate(out) if x.get(key) == item[key]]
            if hit:
                out[hit[0]] = _merge(out[hit[0]], item, f"{where}[{item[key]}]")
            else:
                out.append(copy.deepcopy(item))
        return out
    return patch


def render(directory: Path, seen: set | None = None) -> list:
    """The objects `kustomize build directory` prints (in no particular order)."""
    seen = set() if seen is None else seen
    kfile = directory / "kustomization.yaml"
    seen.add(kfile.resolve())
    (k,) = _load_docs(kfile)
    assert (k.get("apiVersion"), k.get("kind")) == ("kustomize.config.k8s.io/v1beta1", "Kustomization"), kfile
    extra = set(k) - {"apiVersion", "kind", "resources", "patches", "namespace", "images"}
    assert not extra, f"{kfile}: {sorted(extra)} are outside the test's kustomize subset"
    objs = []
    for r in k.get("resources") or []:
        p = directory / r
        if p.is_dir():
            objs += render(p, seen)
        else:
            seen.add(p.resolve())
            objs += _load_docs(p)
    for entry in k.get("patches") or []:
        assert set(entry) == {"path"}, f"{kfile}: patch {entry}: only `path` is in the test's subset"
        p = directory / entry["path"]
        seen.add(p.resolve())
        (patch,) = _load_docs(p)
        hits = [i for i, o in enumerate(objs)
                if (o["kind"], o["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])]
        assert len(hits) == 1, f"{p}: patches {len(hits)} objects"
        objs[hits[0]] = _merge(objs[hits[0]], patch, f"{p.name}")
    for rule in k.get("images") or []:
        assert set(rule) <= {"name", "newName", "newTag"}, f"{kfile}: images {rule}: outside the test's subset"
        for _, t in pods(objs):
            for c in t["spec"]["containers"] + t["spec"].get("initContainers", []):
                name, tag = split_image(c["image"])
                if name == rule["name"]:
                    c["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"
    ns = k.get("namespace")
    if ns:
        for o in objs:     # kustomize renames a v1 Namespace to it too
            if o["kind"] == "Namespace":
                o["metadata"]["name"] = ns
            else:
                o["metadata"]["namespace"] = ns
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"{directory}: {dup} defined twice"
    return objs


def split_image(image: str) -> tuple:
    """(name, tag) of an image reference without a digest."""
    assert "@" not in image, f"{image}: digests are outside the test's subset"
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    return name, tag


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request):
    return request.param, render(OVERLAYS[request.param])


def by_kind(objs, kind) -> dict:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def pods(objs):
    """(workload, pod template) of every Deployment, StatefulSet and Job."""
    return [(o, o["spec"]["template"]) for o in objs if o["kind"] in WORKLOADS]


def program_of(container) -> str | None:
    cmd = container.get("command") or []
    return cmd[0] if cmd and cmd[0] in PROGRAMS else None


def portcullis_containers(objs):
    """(workload, pod template, container, program) of authsvc and gateway containers."""
    return [(w, t, c, program_of(c)) for w, t in pods(objs) for c in t["spec"]["containers"]
            if program_of(c)]


def config_env(objs, container) -> dict:
    """The variables a container gets: envFrom ConfigMaps, then env."""
    cms = by_kind(objs, "ConfigMap")
    env = {}
    for src in container.get("envFrom") or []:
        assert set(src) == {"configMapRef"}, f"{container['name']}: envFrom {src}: ConfigMaps only"
        name = src["configMapRef"]["name"]
        assert name in cms, f"{container['name']}: envFrom names no ConfigMap {name}"
        env.update({k: str(v) for k, v in cms[name]["data"].items()})
    for e in container.get("env") or []:
        assert set(e) == {"name", "value"}, f"{container['name']}: env {e}: plain values only (secrets are files)"
        env[e["name"]] = str(e["value"])
    return env


@functools.lru_cache(maxsize=None)
def image_env() -> dict:
    """ENV of the Dockerfile's runtime stage (what the image sets)."""
    rt = dockerfile_stages()["runtime"]
    return dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", rt, re.M))))


@functools.lru_cache(maxsize=None)
def help_rows(program: str) -> dict:
    """{NAME: (default, help text)} of `program --help`."""
    r = H.run_bounded([H.binary(program), "--help"], env={"PATH": "/usr/bin:/bin"}, timeout=10)
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^  ([A-Z][A-Z0-9_]+) +(\S+) +(.*)$", r.stdout.decode(), re.M)
    return {n: ("" if d == "(unset)" or d == "(required)" else d, h) for n, d, h in rows}


def effective(program: str, env: dict, name: str) -> str:
    """A variable's value as the program sees it: the container's, the image's, its default."""
    if name in env:
        return env[name]
    if name in image_env():
        return image_env()[name]
    return help_rows(program)[name][0]


def volume_files(objs, template, container, workload=None) -> dict:
    """{path in the container: (content or None, volume kind, writable)} of what
    each mount holds; for an emptyDir, {mountPath: (None, 'emptyDir', True)}."""
    vols = {v["name"]: v for v in template["spec"].get("volumes") or []}
    for claim in (workload or {}).get("spec", {}).get("volumeClaimTemplates") or []:
        vols[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "persistentVolumeClaim": {}}
    secrets, cms = by_kind(objs, "Secret"), by_kind(objs, "ConfigMap")
    out = {}
    for m in container.get("volumeMounts") or []:
        v = vols.get(m["name"])
        assert v, f"{container['name']}: mount {m['name']} has no volume"
        assert "subPath" not in m, f"{container['name']}: subPath mounts do not follow updates"
        mp = m["mountPath"].rstrip("/")
        if "emptyDir" in v:
            out[mp] = (None, "emptyDir", not m.get("readOnly", False))
            continue
        if "secret" in v:
            name, kind = v["secret"]["secretName"], "secret"
            data = secrets[name].get("stringData") if name in secrets else None
            if name not in secrets:
                data = PROD_SECRET_STANDINS
        elif "configMap" in v:
            name, kind = v["configMap"]["name"], "configMap"
            assert name in cms, f"{container['name']}: volume {v['name']} names no ConfigMap {name}"
            data = cms[name]["data"]
        else:
            out[mp] = (None, next(iter(set(v) - {"name"})), not m.get("readOnly", False))
            continue
        spec = v[kind]
        items = spec.get("items") or [{"key": k, "path": k} for k in data]
        for it in items:
            assert it["key"] in data, f"{container['name']}: {kind} {name} has no key {it['key']}"
            out[f"{mp}/{it['path']}"] = (str(data[it["key"]]), kind, False)
    return out


def run_check(program: str, env: dict, files: dict):
    """`program --check` with env, the mounted files written under a temporary
    directory (and the variables naming them pointed there)."""
    with tempfile.TemporaryDirectory(prefix="pc-k8s-") as tmp:
        for path, (content, _, _) in files.items():
            p = Path(tmp + path)
            if content is None:
                p.mkdir(parents=True, exist_ok=True)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(content)
        mounts = sorted({p if c is None else str(Path(p).parent) for p, (c, _, _) in files.items()},
                        key=len, reverse=True)
        run_env = {"PATH": "/usr/bin:/bin", **image_env(),   # and the sanitizers' settings of `make test`
                   **{k: v for k, v in os.environ.items() if k.endswith("SAN_OPTIONS")}}
        for k, v in env.items():
            run_env[k] = tmp + v if any(v == m or v.startswith(m + "/") for m in mounts) else v
        r = H.run_bounded([H.binary(program), "--check"], env=run_env, timeout=20)
        return r.returncode, r.stdout.decode() + r.stderr.decode()


# ---------------------------------------------------------------------------
# rendering, kinds, files


def test_every_object_is_a_known_kind_in_the_namespace(overlay):
    name, objs = overlay
    (k,) = _load_docs(OVERLAYS[name] / "kustomization.yaml")
    ns = k["namespace"]
    assert by_kind(objs, "Namespace") == {ns: by_kind(objs, "Namespace")[ns]}, "one Namespace, the overlay's"
    for o in objs:
        assert (o.get("apiVersion"), o.get("kind")) in KNOWN_KINDS, (o.get("apiVersion"), o.get("kind"))
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", o["metadata"]["name"]), o["metadata"]["name"]
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == ns


def test_every_manifest_file_is_used():
    seen = set()
    for d in OVERLAYS.values():
        render(d, seen)
    files = {p.resolve() for p in K8S.rglob("*") if p.is_file()}
    assert files == seen, f"not in any kustomization: {sorted(str(p) for p in files - seen)}"
    for p in files:
        assert p.suffix == ".yaml", p


def test_selectors_and_services_match_pods(overlay):
    _, objs = overlay
    for w, t in pods(objs):
        labels = t["metadata"]["labels"]
        if w["kind"] != "Job":
            sel = w["spec"]["selector"]["matchLabels"]
            assert sel.items() <= labels.items(), (w["metadata"]["name"], sel, labels)
    for s in by_kind(objs, "Service").values():
        sel = s["spec"]["selector"]
        hit = [t for _, t in pods(objs) if sel.items() <= t["metadata"]["labels"].items()]
        assert hit, f"Service {s['metadata']['name']} selects no pod"
        for t in hit:
            ports = {p.get("name"): p["containerPort"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
            for sp in s["spec"]["ports"]:
                tp = sp.get("targetPort", sp["port"])
                assert tp in ports or tp in ports.values(), (s["metadata"]["name"], tp, ports)


def service_port(objs, host: str, port: int) -> bool:
    """host:port is a Service of the render (short name, same namespace) on that port."""
    s = by_kind(objs, "Service").get(host)
    return s is not None and port in {p["port"] for p in s["spec"]["ports"]}


# ---------------------------------------------------------------------------
# images and commands


def test_images_and_commands_are_composes(overlay):
    _, objs = overlay
    comp = services()
    cmds = {tuple(s["command"]): s["image"] for s in comp.values() if s.get("command")}
    want_pc = comp["authsvc"]["image"]
    version = (REPO / "VERSION").read_text().strip()
    rt = dockerfile_stages()["runtime"]
    for w, t in pods(objs):
        for c in t["spec"]["containers"] + t["spec"].get("initContainers", []):
            cmd = tuple(c.get("command") or [])
            name, tag = split_image(c["image"])
            if name.rsplit("/", 1)[-1] == split_image(want_pc)[0]:
                # compose's portcullis:latest, or pushed to a registry under the release's tag
                assert c["image"] == want_pc or tag == version, f"{c['name']}: {c['image']}, VERSION is {version}"
                assert cmd and f"/src/build/{cmd[0]}" in rt, f"{c['name']}: the image has no {cmd[:1]}"
                if cmd[0] == "demo-upstream":
                    assert len(cmd) == 3 and cmd[2] == comp["demo-upstream"]["command"][2], cmd
                else:
                    assert cmd in cmds and cmds[cmd] == want_pc, f"{c['name']}: {cmd} is not a compose command"
            else:
                assert c["name"] in comp and comp[c["name"]]["image"] == c["image"], \
                    f"{c['name']}: image {c['image']} is not compose's"
                if comp[c["name"]].get("command"):
                    assert list(cmd) == comp[c["name"]]["command"], (c["name"], cmd)
    progs = sorted(c.get("command")[0:2] == ["authsvc", "migrate"] and "migrate" or program_of(c)
                   for _, _, c, _ in portcullis_containers(objs))
    assert progs == ["authsvc", "gateway", "migrate"], progs
    jobs = by_kind(objs, "Job")
    assert [c["command"] for j in jobs.values() for c in j["spec"]["template"]["spec"]["containers"]] == \
        [comp["migrate"]["command"]]


# ---------------------------------------------------------------------------
# variables and files


def test_every_variable_is_in_the_programs_help(overlay):
    _, objs = overlay
    for w, t, c, prog in portcullis_containers(objs):
        reads = help_vars(prog)
        for v in config_env(objs, c):
            ok = v in reads or (v.endswith("_FILE") and v[: -len("_FILE")] in reads)
            assert ok, f"{w['metadata']['name']}/{c['name']}: {prog} --help does not list {v}"
    for w, t in pods(objs):
        for c in t["spec"]["containers"]:
            if (c.get("command") or [""])[0] == "demo-upstream":
                assert not c.get("env") and not c.get("envFrom"), "demo-upstream reads no variable"


def test_shared_variables_as_in_compose(overlay):
    _, objs = overlay
    comp = {n: set(env_of(s)) for n, s in services().items()}
    for w, t, c, prog in portcullis_containers(objs):
        stems = {v[: -len("_FILE")] if v.endswith("_FILE") and v not in FILE_VARS else v
                 for v in config_env(objs, c)}
        cname = "migrate" if c["command"] == ["authsvc", "migrate"] else ("authsvc" if prog == "authsvc" else "gateway1")
        want = comp[cname] - {"TRUSTED_PROXIES", "UPSTREAM_URL"}   # gateway: a routes file instead
        assert want <= stems, f"{c['name']}: compose's {sorted(want - stems)} missing"
        for secret in ("BETTER_AUTH_SECRET", "DATABASE_URL", "REDIS_URL"):
            assert secret not in config_env(objs, c), f"{c['name']}: {secret} in plain text, not a file"


def test_file_variables_name_mounted_files(overlay):
    _, objs = overlay
    for w, t, c, prog in portcullis_containers(objs):
        env, files = config_env(objs, c), volume_files(objs, t, c)
        for v, path in env.items():
            if not (v.endswith("_FILE") or v in FILE_VARS):
                continue
            if v in ("AUTHSVC_LOG", "GATEWAY_LOG"):
                # a log file must be on a writable emptyDir (the root filesystem is read-only)
                assert any(path.startswith(mp + "/") and kind == "emptyDir" and rw
                           for mp, (_, kind, rw) in files.items()), f"{c['name']}: {v}={path} not writable"
                continue
            assert path in files and files[path][0] is not None, \
                f"{w['metadata']['name']}/{c['name']}: {v}={path} is not a mounted file ({sorted(files)})"
            if v.endswith("_FILE") and v not in FILE_VARS:
                assert files[path][1] == "secret", f"{c['name']}: {v} is not from a Secret"


def test_the_programs_check_the_environment(overlay):
    """Each container's environment passes `program --check`; a two-line file
    behind a NAME_FILE fails it, naming NAME_FILE, so the program reads it."""
    _, objs = overlay
    for w, t, c, prog in portcullis_containers(objs):
        env, files = config_env(objs, c), volume_files(objs, t, c)
        rc, out = run_check(prog, env, files)
        assert rc == 0, f"{w['metadata']['name']}/{c['name']}: {prog} --check: {out}"
        file_vars = [v for v in env if v.endswith("_FILE") and v not in FILE_VARS]
        assert {"BETTER_AUTH_SECRET_FILE", "DATABASE_URL_FILE", "REDIS_URL_FILE"} <= set(file_vars), file_vars
        for v in file_vars:
            broken = dict(files)
            broken[env[v]] = ("one\ntwo\n", "secret", False)
            rc, out = run_check(prog, env, broken)
            assert rc != 0 and f"{v}:" in out, f"{c['name']}: {prog} does not read {v} ({rc}: {out})"


def test_workers_are_not_the_nodes_core_count(overlay):
    """0 means one per core, and the programs count the node's cores, not the pod's CPUs."""
    _, objs = overlay
    for w, t, c, prog in portcullis_containers(objs):
        if c["command"] != [prog]:
            continue
        var = "GATEWAY_WORKERS" if prog == "gateway" else "PASSWORD_WORKERS"
        n = int(effective(prog, config_env(objs, c), var))
        assert n >= 1, f"{c['name']}: {var}={n}"
        cpu = (c.get("resources") or {}).get("limits", {}).get("cpu")
        if cpu is not None:
            assert n <= float(str(cpu).rstrip("m")) / (1000 if str(cpu).endswith("m") else 1) + 1e-9, (var, n, cpu)


# ---------------------------------------------------------------------------
# ports, probes, metrics


def container_ports(c) -> dict:
    return {p["name"]: p["containerPort"] for p in c.get("ports") or []}


def test_ports_are_the_listen_addresses(overlay):
    _, objs = overlay
    comp = {n: env_of(s) for n, s in services().items()}
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.*)$", dockerfile_stages()["runtime"], re.M)[0].split()}
    for w, t, c, prog in portcullis_containers(objs):
        ports = container_ports(c)
        if c["command"] == ["authsvc", "migrate"]:
            assert not ports, "migrate listens on nothing"
            continue
        env = config_env(objs, c)
        pub, adm = (effective(prog, env, v) for v in LISTEN_VARS[prog])
        for addr in (pub, adm):
            assert addr.rsplit(":", 1)[0] in ("0.0.0.0", "[::]"), f"{c['name']}: {addr} is not reachable in a pod"
        assert ports == {"http": port_of(pub), "admin": port_of(adm)}, (c["name"], ports, pub, adm)
        assert port_of(pub) in exposed, f"the Dockerfile does not EXPOSE {port_of(pub)}"
        cname = "authsvc" if prog == "authsvc" else "gateway1"
        assert port_of(pub) == port_of(comp[cname][LISTEN_VARS[prog][0]]), "public port differs from compose"
        assert port_of(adm) == port_of(comp[cname][LISTEN_VARS[prog][1]]), "admin port differs from compose"
    for w, t in pods(objs):
        for c in t["spec"]["containers"]:
            if (c.get("command") or [""])[0] == "demo-upstream":
                assert container_ports(c) == {"http": port_of(c["command"][1])}
                assert c["command"][1].startswith("0.0.0.0:")


def test_probes_are_live_and_ready_on_the_public_port(overlay):
    _, objs = overlay
    for w, t, c, prog in portcullis_containers(objs):
        if c["command"] != [prog]:
            continue
        rows = help_rows(prog)
        pvar = f"{prog.upper()}_HEALTH_PREFIX"
        assert "/live and /ready on the public listener" in rows[pvar][1], rows[pvar]
        prefix = effective(prog, config_env(objs, c), pvar)
        ports = container_ports(c)
        for probe, path in (("livenessProbe", "/live"), ("readinessProbe", "/ready")):
            g = c[probe]["httpGet"]
            assert g["path"] == prefix + path, (c["name"], probe, g)
            assert g["port"] in ("http", ports["http"]), (c["name"], probe, g)
            assert g.get("scheme", "HTTP") == "HTTP"
    # compose's healthcheck asks /live too (deploy/healthcheck.sh)
    assert "path=${HEALTHCHECK_PATH:-/live}" in (REPO / "deploy" / "healthcheck.sh").read_text()


def test_admin_port_is_scraped(overlay):
    _, objs = overlay
    for w, t, c, prog in portcullis_containers(objs):
        if c["command"] != [prog]:
            continue
        a = t["metadata"].get("annotations") or {}
        assert a.get("prometheus.io/scrape") == "true", (c["name"], a)
        assert a.get("prometheus.io/port") == str(container_ports(c)["admin"]), (c["name"], a)
        assert a.get("prometheus.io/path") == "/metrics", (c["name"], a)
        assert "/metrics" in help_rows(prog)[LISTEN_VARS[prog][1]][1]


def _rule_ports(rule, c) -> set:
    """Container ports an ingress rule lets in (every port when it names none)."""
    ports = container_ports(c)
    if not rule.get("ports"):
        return set(ports.values())
    out = set()
    for p in rule["ports"]:
        assert p.get("protocol", "TCP") == "TCP"
        v = ports.get(p["port"], p["port"])
        end = p.get("endPort", v)
        out |= {n for n in ports.values() if v <= n <= end}
    return out


def test_network_policy_keeps_the_admin_port_private(overlay):
    _, objs = overlay
    pols = list(by_kind(objs, "NetworkPolicy").values())
    for w, t, c, prog in portcullis_containers(objs):
        if c["command"] != [prog]:
            continue
        labels = t["metadata"]["labels"]
        mine = [p for p in pols if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
                and not p["spec"]["podSelector"].get("matchExpressions")]
        assert [p for p in mine if "Ingress" in p["spec"].get("policyTypes", [])], f"no policy selects {prog}"
        admin, public = container_ports(c)["admin"], container_ports(c)["http"]
        reach_public = False
        for p in mine:
            for rule in p["spec"].get("ingress") or []:
                let_in = _rule_ports(rule, c)
                if public in let_in:
                    reach_public = True
                if admin not in let_in:
                    continue
                peers = rule.get("from") or []
                assert peers, f"{p['metadata']['name']}: the admin port {admin} is open to everyone"
                for peer in peers:
                    assert set(peer) == {"namespaceSelector", "podSelector"}, peer
                    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
                    assert peer["podSelector"].get("matchLabels"), peer
        assert reach_public, f"{prog}: the policy shuts the public port {public}"


# ---------------------------------------------------------------------------
# pod security


def test_every_pod_is_locked_down(overlay):
    _, objs = overlay
    uid = int(re.search(r"useradd --system --uid (\d+)", dockerfile_stages()["runtime"]).group(1))
    for w, t in pods(objs):
        spec, n = t["spec"], w["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, n
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), n
        psc = spec.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True and int(psc.get("runAsUser", 0)) > 0, (n, psc)
        assert psc.get("seccompProfile") == {"type": "RuntimeDefault"}, n
        if any(program_of(c) for c in spec["containers"]) or \
                any((c.get("command") or [""])[0] == "demo-upstream" for c in spec["containers"]):
            assert psc["runAsUser"] == uid, f"{n}: runs as {psc['runAsUser']}, the image's user is {uid}"
        for v in spec.get("volumes") or []:
            assert "hostPath" not in v, (n, v)
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, (n, c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (n, c["name"])
            assert sc.get("capabilities") == {"drop": ["ALL"]}, (n, c["name"], sc.get("capabilities"))
            assert not sc.get("privileged"), (n, c["name"])
            assert sc.get("runAsUser", psc["runAsUser"]) != 0, (n, c["name"])


# ---------------------------------------------------------------------------
# the overlays


def test_routes_and_jwks_name_services(overlay):
    name, objs = overlay
    routes = json.loads(by_kind(objs, "ConfigMap")["portcullis-routes"]["data"]["routes.json"])
    for r in routes["routes"]:
        u = urlsplit(r["upstream"])
        if u.hostname == "app" and name == "prod":
            continue        # your application's Service (docs/kubernetes.md)
        assert service_port(objs, u.hostname, u.port), f"{name}: route {r['prefix']} -> {r['upstream']}: no such Service"
    for w, t, c, prog in portcullis_containers(objs):
        if prog == "gateway":
            u = urlsplit(config_env(objs, c)["JWT_JWKS_URL"])
            assert service_port(objs, u.hostname, u.port) and u.path == "/api/auth/jwks", u


def test_dev_overlay():
    objs = render(OVERLAYS["dev"])
    for w, _ in pods(objs):
        if w["kind"] != "Job":
            assert w["spec"]["replicas"] == 1, w["metadata"]["name"]
    wl = {w["metadata"]["name"]: w for w, _ in pods(objs)}
    assert {"postgres", "redis", "authsvc", "gateway", "portcullis-migrate"} <= set(wl), sorted(wl)
    sec = by_kind(objs, "Secret")["portcullis"]["stringData"]
    db, rd = urlsplit(sec["database-url"]), urlsplit(sec["redis-url"])
    assert service_port(objs, db.hostname, db.port) and db.hostname == "postgres", db
    assert service_port(objs, rd.hostname, rd.port) and rd.hostname == "redis", rd
    pg = wl["postgres"]["spec"]["template"]["spec"]["containers"][0]
    pg_env = {e["name"]: e["value"] for e in pg["env"]}
    assert db.username == pg_env["POSTGRES_USER"] and db.path == "/" + pg_env["POSTGRES_DB"]
    assert db.password == by_kind(objs, "Secret")["postgres"]["stringData"]["password"]
    assert pg_env["POSTGRES_PASSWORD_FILE"] in volume_files(objs, wl["postgres"]["spec"]["template"], pg, wl["postgres"])
    assert len(sec["better-auth-secret"]) >= 32


def test_prod_overlay():
    objs = render(OVERLAYS["prod"])
    deps = by_kind(objs, "Deployment")
    assert deps["gateway"]["spec"]["replicas"] == 3
    version = (REPO / "VERSION").read_text().strip()
    for _, _, c, _ in portcullis_containers(objs):
        assert c["image"].endswith(f"/portcullis:{version}"), f"prod runs {c['image']}, not a registry's {version}"
    assert not by_kind(objs, "Secret"), "prod holds no secret: the operator creates it"
    assert not by_kind(objs, "StatefulSet") and set(deps) == {"authsvc", "gateway"}, "PostgreSQL and Redis are external"
    gw_labels = deps["gateway"]["spec"]["template"]["metadata"]["labels"]
    pdbs = [p for p in by_kind(objs, "PodDisruptionBudget").values()
            if p["spec"]["selector"]["matchLabels"].items() <= gw_labels.items()]
    assert len(pdbs) == 1, pdbs
    pdb = pdbs[0]["spec"]
    assert pdb.get("minAvailable", 0) < 3 or pdb.get("maxUnavailable", 0) >= 1, "a drain could never proceed"
    (hpa,) = by_kind(objs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] > 3
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    for n in ("authsvc", "gateway"):
        (c,) = deps[n]["spec"]["template"]["spec"]["containers"]
        res = c.get("resources") or {}
        assert {"cpu", "memory"} <= set(res.get("requests", {})) and {"cpu", "memory"} <= set(res.get("limits", {})), (n, res)
    # the sizing comments name bench results that exist
    for p in OVERLAYS["prod"].glob("*-patch.yaml"):
        for f in re.findall(r"bench/results/\S+\.md", p.read_text()):
            assert (REPO / f).exists(), f"{p.name} cites {f}, which does not exist"


def test_docs():
    text = DOC.read_text()
    assert "kubectl apply -k deploy/k8s/overlays/prod" in text
    assert "test_k8s_manifests.py" in text and re.search(r"not (been )?applied", text), \
        "the doc says how the manifests were checked, and that they were not applied"
    keys = set(PROD_SECRET_STANDINS)
    m = re.search(r"kubectl -n portcullis create secret generic portcullis(.*?)\n\n", text, re.S)
    assert m, "the doc shows how to create the Secret"
    assert set(re.findall(r"--from-file=([a-z-]+)=", m.group(1))) == keys, m.group(1)
    assert "docs/kubernetes.md" in (REPO / "README.md").read_text()
