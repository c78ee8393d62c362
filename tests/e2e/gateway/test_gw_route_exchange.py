"""A route's exchange with its upstream (issue 16): request_headers and response_headers
({set, remove}), preserve_host and timeout_ms, through a real gateway. What the upstream
received is read from a recording upstream (pcsupport.pyupstream: every header line, in
order, repeats kept); what the client received from the raw answer's head lines.
Config refusals are unit cases (tests/unit/test_gw_route_opts.c); one start-up error
here checks that the gateway stops on them with the place named."""

import json
import time

import pytest

import pcsupport as G
from pcsupport.pyupstream import PyUpstream


ANSWER_LINES = (b"Server: line-upstream/1\r\nX-Powered-By: a\r\nx-powered-by: b\r\n"
                b"Cache-Control: public\r\nX-Upstream-Kept: yes\r\n")


def seen(up, token):
    """The header lines [(name, value), ...] of the last request whose path holds token."""
    found = up.saw(token)
    assert found, f"the upstream saw no request {token}"
    return found[-1]["raw_headers"]


def lines(hdrs, name):
    """The values of every line named name (any case), in order."""
    return [v for k, v in hdrs if k.lower() == name.lower()]


def raw_head(port, req: bytes):
    """(status, [(name, value), ...], body) of one answer on a new connection."""
    st, _, body, raw = G.raw_http(port, req)
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return st, [tuple(p.strip() for p in ln.split(":", 1)) for ln in head[1:]], body


@pytest.fixture(scope="module")
def lup():
    u = PyUpstream(answer_lines=ANSWER_LINES)
    yield u
    u.stop()


@pytest.fixture(scope="module")
def xgw(pg, redis_srv, live_authsvc, secret, gw_dir, lup, upstream):
    up = lup.url
    routes = {"routes": [
        {"prefix": "/plain/", "upstream": up, "auth": ["none"]},
        {"prefix": "/rh/", "upstream": up, "auth": ["none"],
         "request_headers": {"set": {"X-Tenant": "acme", "X-Extra": "added"},
                             "remove": ["referer", "X-Debug"]},
         "response_headers": {"set": {"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
                              "remove": ["server", "X-Powered-By"]}},
        {"prefix": "/srh/", "upstream": up, "auth": ["session"],
         "request_headers": {"set": {"X-Tenant": "acme"}, "remove": ["Referer"]}},
        {"prefix": "/ph/", "upstream": up, "auth": ["none"], "preserve_host": True},
        # timeout_ms against the demo upstream's /slow?ms=M (strip_prefix: /tN/slow -> /slow);
        # this gateway's UPSTREAM_TIMEOUT_SECONDS is G.UPSTREAM_TIMEOUT_SECONDS (1 s)
        {"prefix": "/t300/", "upstream": upstream.url, "auth": ["none"], "strip_prefix": True,
         "timeout_ms": 300},
        {"prefix": "/t4000/", "upstream": upstream.url, "auth": ["none"], "strip_prefix": True,
         "timeout_ms": 4000},
        {"prefix": "/tdef/", "upstream": upstream.url, "auth": ["none"], "strip_prefix": True},
    ]}
    g = G.Gateway(G.gw_base_env(pg, redis_srv, secret), routes, workdir=gw_dir,
                  name="gateway-route-exchange")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _req(path, token, extra=b"", host=b"gw.test", version=b"1.1"):
    h = b"Host: " + host + b"\r\n" if host else b""
    return (b"GET " + path.encode() + b"-" + token.encode() + b" HTTP/" + version + b"\r\n" + h +
            extra + b"Connection: close\r\n\r\n")


CLIENT_LINES = (b"X-Tenant: evil\r\nx-tenant: evil2\r\nX-TENANT: evil3\r\nReferer: http://r.test/\r\n"
                b"X-Debug: 1\r\nX-Keep: kept\r\n")


# ---- request_headers ----

def test_request_headers_set_replaces_every_client_line_and_remove_drops(xgw, lup):
    st, _, body = raw_head(xgw.port, _req("/rh/a", "rh1", CLIENT_LINES))
    assert st == 200, body
    h = seen(lup, "rh1")
    assert lines(h, "X-Tenant") == ["acme"], h
    assert lines(h, "X-Extra") == ["added"], h
    assert lines(h, "Referer") == [] and lines(h, "X-Debug") == [], h
    assert lines(h, "X-Keep") == ["kept"], h
    assert lines(h, "X-Forwarded-Host") == ["gw.test"], h
    assert lines(h, "X-Request-Id") and lines(h, "X-Forwarded-For") == ["127.0.0.1"], h


def test_route_without_request_headers_relays_the_client_lines(xgw, lup):
    st, _, body = raw_head(xgw.port, _req("/plain/a", "pl1", CLIENT_LINES))
    assert st == 200, body
    h = seen(lup, "pl1")
    assert lines(h, "X-Tenant") == ["evil", "evil2", "evil3"], h
    assert lines(h, "Referer") == ["http://r.test/"] and lines(h, "X-Debug") == ["1"], h
    assert lines(h, "X-Extra") == [], h


def test_request_headers_keep_the_identity_headers(xgw, lup, mod_user):
    extra = (b"Cookie: " + mod_user.cookie.encode() + b"\r\nX-User-Id: forged\r\n" + CLIENT_LINES)
    st, _, body = raw_head(xgw.port, _req("/srh/a", "srh1", extra))
    assert st == 200, body
    h = seen(lup, "srh1")
    assert lines(h, "X-User-Id") == [mod_user.id], h
    assert lines(h, "X-Auth-Method") == ["session"], h
    assert lines(h, "X-Tenant") == ["acme"] and lines(h, "Referer") == [], h
    assert lines(h, "Cookie") == [], h


# ---- response_headers ----

def test_response_headers_set_and_remove_on_the_relayed_answer(xgw):
    st, h, body = raw_head(xgw.port, _req("/rh/b", "rs1"))
    assert st == 200 and json.loads(body)["path"] == "/rh/b-rs1", (st, body)
    assert lines(h, "Cache-Control") == ["no-store"], h
    assert lines(h, "X-Frame-Options") == ["DENY"], h
    assert lines(h, "Server") == [] and lines(h, "X-Powered-By") == [], h
    assert lines(h, "X-Upstream-Kept") == ["yes"], h
    assert lines(h, "Content-Length") == [str(len(body))] and len(lines(h, "X-Request-Id")) == 1, h


def test_route_without_response_headers_relays_the_upstream_lines(xgw):
    st, h, _ = raw_head(xgw.port, _req("/plain/b", "rs2"))
    assert st == 200
    assert lines(h, "Server") == ["line-upstream/1"], h
    assert lines(h, "X-Powered-By") == ["a", "b"], h
    assert lines(h, "Cache-Control") == ["public"] and lines(h, "X-Frame-Options") == [], h


def test_response_headers_do_not_touch_the_gateways_own_errors(xgw):
    G.assert_gw_error(xgw.get("/srh/x"), 401)   # no credential: the gateway answers
    r = xgw.get("/srh/x")
    assert "x-frame-options" not in r.headers, r.headers


# ---- preserve_host ----

def test_preserve_host_sends_the_clients_host(xgw, lup):
    st, _, body = raw_head(xgw.port, _req("/ph/a", "ph1", host=b"App.Example.test:8443"))
    assert st == 200, body
    h = seen(lup, "ph1")
    assert lines(h, "Host") == ["App.Example.test:8443"], h
    assert lines(h, "X-Forwarded-Host") == ["App.Example.test:8443"], h


def test_without_preserve_host_the_upstream_gets_its_own_host(xgw, lup):
    st, _, body = raw_head(xgw.port, _req("/plain/h", "ph2", host=b"app.example.test"))
    assert st == 200, body
    h = seen(lup, "ph2")
    assert lines(h, "Host") == [lup.url[len("http://"):]], h
    assert lines(h, "X-Forwarded-Host") == ["app.example.test"], h


def test_preserve_host_without_a_client_host_sends_the_upstreams(xgw, lup):
    st, _, body = raw_head(xgw.port, _req("/ph/b", "ph3", host=None, version=b"1.0"))
    assert st == 200, body
    h = seen(lup, "ph3")
    assert lines(h, "Host") == [lup.url[len("http://"):]], h
    assert lines(h, "X-Forwarded-Host") == [], h


# ---- timeout_ms ----

def test_short_timeout_ms_answers_504_early(xgw):
    t0 = time.monotonic()
    r = xgw.get("/t300/slow?ms=2500", timeout=5)
    took = time.monotonic() - t0
    G.assert_gw_error(r, 504, "UPSTREAM_TIMEOUT_SECONDS")
    assert 0.25 <= took < 0.9, took     # 300 ms (+ the 100 ms tick), before the global 1 s


def test_long_timeout_ms_outlasts_upstream_timeout(xgw):
    t0 = time.monotonic()
    body = G.echo(xgw.get("/t4000/slow?ms=1600", timeout=8))
    assert body["path"] == "/slow" and time.monotonic() - t0 >= 1.5


def test_route_without_timeout_ms_keeps_upstream_timeout(xgw):
    t0 = time.monotonic()
    r = xgw.get("/tdef/slow?ms=2500", timeout=5)
    took = time.monotonic() - t0
    G.assert_gw_error(r, 504, "UPSTREAM_TIMEOUT_SECONDS")
    assert 0.9 <= took < 2.0, took


def test_refused_option_stops_the_gateway_with_the_place_named(tmp_path):
    rf = tmp_path / "routes.json"
    rf.write_text('{"routes": [{"prefix": "/", "upstream": "http://127.0.0.1:9", "auth": ["none"],'
                  ' "request_headers": {"set": {"X-User-Id": "admin"}}}]}')
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "c" * 40,
           "GATEWAY_ROUTES": str(rf)}
    r = G.run_bounded([G.binary("gateway")], env=G.gateway_env(env), timeout=10)
    assert r.returncode == 2, r.stderr
    assert b"routes[0].request_headers.set.X-User-Id" in r.stderr, r.stderr
