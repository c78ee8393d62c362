"""The admin listener (GATEWAY_ADMIN_LISTEN, issue 17): /metrics and /_stats answer
there and not on the public port, where /metrics is an ordinary path that reaches the
upstream; the health checks answer on both (under GATEWAY_HEALTH_PREFIX on the public
port); the admin port routes nothing; bad values and a taken port are start-up errors."""

import json
import re
import time

import requests

import pcsupport as G
from pcsupport import fds as F


def _catch_all(upstream):
    return {"routes": [{"prefix": "/", "upstream": upstream.url, "auth": ["none"]}]}


def test_metrics_and_stats_move_to_the_admin_port(gateway_factory, upstream):
    g = gateway_factory(route_table=_catch_all(upstream), name="gateway-admin")
    m = requests.get(g.admin_url("/metrics"), timeout=5)
    assert m.status_code == 200 and m.headers["Content-Type"].startswith("text/plain")
    assert "portcullis_gateway_requests_total" in m.text or "portcullis_build_info" in m.text
    st = requests.get(g.admin_url("/_stats"), timeout=5)
    assert st.status_code == 200 and "conns_open" in st.json()
    for path in ("/health", "/live", "/ready"):
        a = requests.get(g.admin_url(path), timeout=5)
        p = g.get(path)
        assert a.status_code == 200 and p.status_code == 200, (path, a.text, p.text)
        want = "ready" if path == "/ready" else "ok"
        assert a.json()["status"] == want and p.json()["status"] == want, (a.text, p.text)
        assert "path" not in p.json(), "the public health check went upstream"
    # on the public port /metrics and /_stats are paths like any other: the upstream's
    for path in ("/metrics", "/_stats"):
        r = g.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert r.json()["path"] == path, r.text[:300]


def test_the_admin_port_routes_nothing(gateway_factory, upstream, mod_key):
    g = gateway_factory(route_table=_catch_all(upstream), name="gateway-admin-only")
    for path in ("/", "/anything", "/_auth/x", "/metrics/x", "/healthz"):
        r = requests.get(g.admin_url(path), timeout=5,
                         headers={"Authorization": f"Bearer {mod_key.key}"})
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        body = r.json()
        assert body["code"] == "NOT_FOUND" and body["requestId"], body
    r = requests.post(g.admin_url("/metrics"), data=b"x", timeout=5)
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED", r.text
    h = requests.head(g.admin_url("/metrics"), timeout=5)
    assert h.status_code == 200 and h.content == b""


def test_health_prefix(gateway_factory, upstream):
    g = gateway_factory({"GATEWAY_HEALTH_PREFIX": "/_gw"}, route_table=_catch_all(upstream),
                        name="gateway-health-prefix")
    assert g.get("/_gw/health").json() == {"status": "ok"}
    assert g.get("/_gw/live").json() == {"status": "ok"}
    # without the prefix the public port routes the path: here, to the upstream
    r = g.get("/health")
    assert r.status_code == 200 and r.json()["path"] == "/health", r.text[:200]
    # the admin port answers both spellings
    for path in ("/health", "/_gw/health", "/live", "/_gw/ready"):
        assert requests.get(g.admin_url(path), timeout=5).status_code == 200, path


def test_prefixed_health_still_answers_over_the_connection_cap(gateway_factory, upstream):
    g = gateway_factory({"GATEWAY_HEALTH_PREFIX": "/_gw", "GATEWAY_MAX_CONNS": "10",
                         "GATEWAY_HEAD_TIMEOUT_MS": "60000"},
                        route_table=_catch_all(upstream), name="gateway-prefix-cap")
    idle = F.idle_conns(g.port, 10)
    try:
        assert len(idle) == 10
        time.sleep(0.5)   # all accepted
        st, _, body = F.get(g.port, "/_gw/health")
        assert st == 200, (st, body)
        st, _, body = F.get(g.port, "/health")   # a routed path over the cap
        assert st == 503 and json.loads(body)["code"] == "TOO_MANY_CONNECTIONS", (st, body)
        st, _, body = F.get(g.admin_port, "/metrics")
        assert st == 200, (st, body[:200])
    finally:
        F.close_all(idle)


def test_admin_off(gateway_factory, upstream):
    g = gateway_factory({"GATEWAY_ADMIN_LISTEN": "off"}, route_table=_catch_all(upstream),
                        name="gateway-admin-off")
    assert g.admin_port is None
    r = g.get("/metrics")
    assert r.status_code == 200 and r.json()["path"] == "/metrics"
    assert g.get("/live").json() == {"status": "ok"}


def test_metrics_off_hides_them_on_the_admin_port(gateway_factory):
    g = gateway_factory({"GATEWAY_METRICS": "false"}, name="gateway-metrics-off")
    for path in ("/metrics", "/_stats"):
        r = requests.get(g.admin_url(path), timeout=5)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
    assert requests.get(g.admin_url("/live"), timeout=5).status_code == 200


def test_a_taken_admin_port_is_a_start_up_error(gateway_factory):
    g = gateway_factory(name="gateway-admin-first")
    env = dict(g.env, GATEWAY_LISTEN=f"127.0.0.1:{G.free_port()}",
               GATEWAY_LOG=str(g.dir / "gateway-admin-second.log"))
    r = G.run_bounded([G.binary("gateway")], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0
    err = r.stderr.decode(errors="replace")
    assert "GATEWAY_ADMIN_LISTEN" in err and str(g.admin_port) in err, err[-500:]


def test_bad_values_are_configuration_errors():
    for k, v in (("GATEWAY_HEALTH_PREFIX", "health"), ("GATEWAY_HEALTH_PREFIX", "/gw/"),
                 ("GATEWAY_HEALTH_PREFIX", "/a/../b"), ("GATEWAY_HEALTH_PREFIX", "/a b"),
                 ("GATEWAY_ADMIN_LISTEN", "nowhere"), ("GATEWAY_ADMIN_LISTEN", "127.0.0.1:0x")):
        env = {"DATABASE_URL": "postgres://x@127.0.0.1:1/x", k: v}
        r = G.run_bounded([G.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
        err = r.stderr.decode(errors="replace")
        assert r.returncode != 0 and k in err, (k, v, err[-300:])


def _samples(text):
    """{metric name: [label text of each sample]} of a Prometheus exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ", line)
        assert m, f"not a sample line: {line!r}"
        out.setdefault(m.group(1), []).append(m.group(2) or "")
    return out


def test_process_metrics_and_the_dashboard_match_what_is_served(gateway_factory, upstream,
                                                               live_authsvc, mod_key):
    g = gateway_factory(route_table=_catch_all(upstream), name="gateway-dashboard")
    for _ in range(3):
        assert g.get("/x", headers={"x-api-key": mod_key.key}).status_code == 200
    assert g.get("/x", headers={"x-api-key": "pk_nope"}).status_code in (200, 401)
    served = {}
    for text in (g.metrics(), requests.get(live_authsvc.admin_url("/metrics"), timeout=5).text):
        s = _samples(text)
        # the process_* figures, named as the Prometheus clients name them
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_virtual_memory_bytes", "process_start_time_seconds",
                     "process_open_fds", "process_max_fds"):
            assert name in s, (name, sorted(s)[:20])
        value = {l.split()[0]: float(l.split()[1]) for l in text.splitlines()
                 if l.startswith("process_")}
        assert value["process_resident_memory_bytes"] > 1 << 20
        assert 3 <= value["process_open_fds"] <= value["process_max_fds"]
        assert time.time() - 3600 < value["process_start_time_seconds"] <= time.time() + 1
        for k, v in s.items():
            served.setdefault(k, []).extend(v)
    dash = json.loads((G.REPO / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 12
    for e in exprs:
        for name in re.findall(r"\b((?:portcullis|process)_[a-z0-9_]+)\b", e):
            assert name in served, f"the dashboard asks for {name}, which nobody serves: {e}"
            labels = set(re.findall(r"([a-z_]+)(?:=~|!=|=)\"", e.split(name, 1)[1].split("}")[0])) \
                if e.split(name, 1)[1].startswith("{") else set()
            labels |= {x.strip() for grp in re.findall(r"by \(([^)]*)\)", e) for x in grp.split(",")}
            labels -= {"job", "instance"}   # Prometheus adds them
            for lab in labels:
                if lab == "le" and not name.endswith("_bucket"):
                    continue
                assert any(f'{lab}="' in l for l in served[name]), (name, lab, served[name][:3])
