"""Routes as people moving from Kong, Traefik or nginx write them (issue 16, "Routes
file"): strip_prefix with X-Forwarded-Prefix, hosts and methods with the most specific
route winning, and X-Forwarded-For/-Proto/-Host/-Prefix kept only from TRUSTED_PROXIES.
Each through a real gateway and the demo upstream's echo."""

import json

import pytest

import pcsupport as G


@pytest.fixture(scope="module")
def rule_routes(upstream):
    up = upstream.url
    return {"routes": [
        # the original service's route: /opencode/<key>/session/list -> /session/list
        {"prefix": "/opencode/:apiKey/", "upstream": up, "auth": ["api_key"], "strip_prefix": True},
        {"prefix": "/app/", "upstream": up + "/app", "auth": ["none"], "strip_prefix": True},
        {"prefix": "/pub/", "upstream": up, "auth": ["none"]},
        # hosts and methods: the upstream base path tells the routes apart
        {"prefix": "/", "upstream": up + "/exact", "auth": ["none"], "hosts": ["api.example.test"]},
        {"prefix": "/h/", "upstream": up + "/any", "auth": ["none"]},
        {"prefix": "/h/", "upstream": up + "/wild", "auth": ["none"], "hosts": ["*.example.test"]},
        {"prefix": "/h/", "upstream": up + "/post", "auth": ["none"], "methods": ["POST"]},
    ]}


def _gateway(pg, redis_srv, secret, routes, gw_dir, name, **env):
    return G.Gateway(G.gw_base_env(pg, redis_srv, secret, **env), routes, workdir=gw_dir, name=name)


@pytest.fixture(scope="module")
def rgw(pg, redis_srv, live_authsvc, secret, rule_routes, gw_dir):
    g = _gateway(pg, redis_srv, secret, rule_routes, gw_dir, "gateway-route-rules")
    try:
        yield g
    finally:
        G.check_stopped(g)


@pytest.fixture(scope="module")
def trusting_gw(pg, redis_srv, live_authsvc, secret, rule_routes, gw_dir):
    """A gateway behind a proxy on 127.0.0.1 (where the test client connects from)."""
    g = _gateway(pg, redis_srv, secret, rule_routes, gw_dir, "gateway-route-rules-trusting",
                 TRUSTED_PROXIES="127.0.0.0/8, ::1")
    try:
        yield g
    finally:
        G.check_stopped(g)


# ---- strip_prefix ----

def test_strip_prefix_sends_what_follows_the_key(rgw, mod_key):
    body = G.echo(rgw.get(f"/opencode/{mod_key.key}/session/list?limit=5"))
    assert body["path"] == "/session/list", body["path"]
    assert body["query"] == "limit=5"
    assert body["headers"]["x-forwarded-prefix"] == f"/opencode/{mod_key.key}"
    assert body["headers"]["x-api-key-id"] == mod_key.id


def test_strip_prefix_with_the_key_alone_sends_root(rgw, mod_key):
    for tail in ("", "/"):
        body = G.echo(rgw.get(f"/opencode/{mod_key.key}{tail}"))
        assert body["path"] == "/", (tail, body["path"])


def test_strip_prefix_still_checks_the_key(rgw):
    G.assert_gw_error(rgw.get("/opencode/pc_not-a-key/session/list"), 401)


def test_strip_prefix_goes_under_the_upstream_base_path(rgw):
    body = G.echo(rgw.get("/app/assets/x.js"))
    assert body["path"] == "/app/assets/x.js", body["path"]   # base /app + /assets/x.js
    assert body["headers"]["x-forwarded-prefix"] == "/app"
    assert G.echo(rgw.get("/app"))["path"] == "/app/"


def test_route_without_strip_prefix_sends_no_prefix_header(rgw):
    h = G.echo(rgw.get("/pub/x", headers={"X-Forwarded-Prefix": "/forged"}))["headers"]
    assert "x-forwarded-prefix" not in h, h


# ---- hosts and methods ----

@pytest.mark.parametrize("method,host,path,base", [
    ("GET", "api.example.test", "/h/x", "/exact"),           # an exact host beats everything
    ("GET", "API.Example.Test:8443", "/other", "/exact"),    # case and port do not count
    ("GET", "a.example.test", "/h/x", "/wild"),              # a wildcard beats no hosts
    ("POST", "a.example.test", "/h/x", "/wild"),             # hosts before methods
    ("POST", "other.test", "/h/x", "/post"),                 # a listed method beats none
    ("GET", "other.test", "/h/x", "/any"),
    ("GET", "example.test", "/h/x", "/any"),                 # *.x needs a label before x
])
def test_most_specific_route_wins(rgw, method, host, path, base):
    body = G.echo(rgw.request(method, path, headers={"Host": host}))
    assert body["path"] == base + path, (method, host, body["path"])


def test_route_for_another_host_is_404(rgw):
    G.assert_gw_error(rgw.get("/other", headers={"Host": "other.test"}), 404, "NO_ROUTE")


# ---- X-Forwarded-* from a stranger and from a trusted proxy ----

FORGED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
          "X-Forwarded-Host": "evil.test", "X-Forwarded-Prefix": "/forged"}


def test_untrusted_forwarded_headers_are_replaced(rgw):
    h = G.echo(rgw.get("/app/x", headers={"Host": "gw.test", **FORGED}))["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1", h
    assert h["x-forwarded-proto"] == "http", h
    assert h["x-forwarded-host"] == "gw.test", h
    assert h["x-forwarded-prefix"] == "/app", h


def test_trusted_proxy_forwarded_headers_are_kept(trusting_gw):
    h = G.echo(trusting_gw.get("/app/x", headers={"Host": "gw.test", **FORGED}))["headers"]
    assert h["x-forwarded-for"] == "203.0.113.7, 127.0.0.1", h
    assert h["x-forwarded-proto"] == "https", h
    assert h["x-forwarded-host"] == "evil.test", h
    assert h["x-forwarded-prefix"] == "/forged/app", h


def test_trusted_proxy_every_x_forwarded_for_line_in_order(trusting_gw):
    req = (b"GET /pub/xff HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.9\r\n"
           b"X-Forwarded-For: 198.51.100.7, 192.0.2.1\r\nConnection: close\r\n\r\n")
    st, _, body, _ = G.raw_http(trusting_gw.port, req)
    assert st == 200, body
    h = json.loads(body)["headers"]
    assert h["x-forwarded-for"] == "203.0.113.9, 198.51.100.7, 192.0.2.1, 127.0.0.1", h
    assert h["x-forwarded-host"] == "127.0.0.1", h


def test_trusted_proxy_odd_proto_is_not_passed_on(trusting_gw):
    h = G.echo(trusting_gw.get("/pub/x", headers={"X-Forwarded-Proto": "gopher"}))["headers"]
    assert h["x-forwarded-proto"] == "http", h


def test_bad_trusted_proxies_is_a_start_up_error(tmp_path):
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "c" * 40,
           "UPSTREAM_URL": "http://127.0.0.1:9", "TRUSTED_PROXIES": "10.0.0.0/33"}
    r = G.run_bounded([G.binary("gateway")], env=G.gateway_env(env), timeout=10)
    assert r.returncode == 2 and b"TRUSTED_PROXIES" in r.stderr, r.stderr
