"""Per-route CORS (issue 16): a preflight on a route with "cors" is answered by the
gateway before authentication (a browser sends it without credentials); an allowed
origin gets the Access-Control-* lines on the real answer, proxied or the gateway's
own refusal; an origin not listed gets none; the upstream's own Access-Control-*
lines are dropped on such a route. Routes without "cors" are as before."""

import http.server
import json
import threading

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.suite import SECRET

APP = "https://app.example.test"


@pytest.fixture(scope="module")
def cgw(pg, redis_srv, live_authsvc, secret, upstream, gw_dir):
    routes = {"routes": [
        {"prefix": "/c/", "upstream": upstream.url, "auth": ["session"],
         "cors": {"origins": [APP, "http://localhost:5173"], "credentials": True,
                  "headers": ["Authorization", "Content-Type", "X-Trace"],
                  "expose_headers": ["X-Request-Id"], "max_age": 600}},
        {"prefix": "/any/", "upstream": upstream.url, "auth": ["none"],
         "cors": {"origins": ["*"], "methods": ["GET"]}},
        {"prefix": "/plain/", "upstream": upstream.url, "auth": ["session"]},
    ]}
    g = G.Gateway(G.gw_base_env(pg, redis_srv, secret), routes, workdir=gw_dir, name="gateway-cors")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _req(g, method, path, **headers):
    return requests.request(method, f"http://127.0.0.1:{g.port}{path}", headers=headers,
                            timeout=10, allow_redirects=False)


def _preflight(g, path, origin=APP, method="POST", hdrs=None):
    h = {"Origin": origin, "Access-Control-Request-Method": method}
    if hdrs:
        h["Access-Control-Request-Headers"] = hdrs
    return _req(g, "OPTIONS", path, **h)


def test_preflight_answered_before_auth(cgw):
    r = _preflight(cgw, "/c/items", hdrs="authorization, content-type")
    assert r.status_code == 204, (r.status_code, r.text[:200])
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
    assert r.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type, X-Trace"
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in r.headers["Vary"]
    assert "Content-Length" not in r.headers and r.content == b""


@pytest.mark.parametrize("origin,method,hdrs", [
    ("https://evil.example", "POST", None),          # origin not listed
    ("https://app.example.test:444", "POST", None),  # another port is another origin
    ("http://app.example.test", "POST", None),       # another scheme too
    (APP, "TRACE", None),                            # method not allowed
    (APP, "POST", "x-secret"),                       # header not allowed
    ("null", "POST", None),
])
def test_refused_preflight_has_no_allow_lines(cgw, origin, method, hdrs):
    r = _preflight(cgw, "/c/items", origin=origin, method=method, hdrs=hdrs)
    assert r.status_code == 204, r.status_code
    assert not [k for k in r.headers if k.lower().startswith("access-control-")], dict(r.headers)


def test_real_answers_carry_cors_for_an_allowed_origin(cgw, user):
    r = _req(cgw, "GET", "/c/x", Origin=APP, Cookie=user.cookie)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
    # the gateway's own refusal too, so the page can read the 401
    r = _req(cgw, "GET", "/c/x", Origin="http://localhost:5173")
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    # an origin not listed: the answer, without CORS lines (the browser hides it)
    r = _req(cgw, "GET", "/c/x", Origin="https://evil.example", Cookie=user.cookie)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


class _CorsUpstream(http.server.BaseHTTPRequestHandler):
    """An upstream with CORS lines of its own (too open ones)."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def test_upstream_cors_lines_are_dropped_on_cors_routes(gateway_factory, user):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CorsUpstream)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        up = f"http://127.0.0.1:{srv.server_address[1]}"
        g = gateway_factory({}, {"routes": [
            {"prefix": "/c/", "upstream": up, "auth": ["session"], "cors": {"origins": [APP]}},
            {"prefix": "/plain/", "upstream": up, "auth": ["session"]}]}, name="gateway-cors-up")
        r = _req(g, "GET", "/c/x", Origin="https://evil.example", Cookie=user.cookie)
        assert r.status_code == 200 and r.headers["X-Upstream"] == "yes"
        assert not [k for k in r.headers if k.lower().startswith("access-control-")], dict(r.headers)
        r = _req(g, "GET", "/c/x", Origin=APP, Cookie=user.cookie)
        assert r.headers["Access-Control-Allow-Origin"] == APP
        assert "Access-Control-Allow-Credentials" not in r.headers
        # without cors the upstream's lines are its own business, relayed as they are
        r = _req(g, "GET", "/plain/x", Origin="https://evil.example", Cookie=user.cookie)
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        srv.shutdown()
        srv.server_close()


def test_wildcard_route_and_plain_options(cgw):
    r = _preflight(cgw, "/any/x", origin="https://whoever.example", method="GET")
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    r = _req(cgw, "GET", "/any/x", Origin="https://whoever.example")
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    # an OPTIONS that is no preflight is authenticated as any request
    assert _req(cgw, "OPTIONS", "/c/x", Origin=APP).status_code == 401


def test_routes_without_cors_are_unchanged(cgw):
    r = _preflight(cgw, "/plain/x")
    assert r.status_code == 401
    assert not [k for k in r.headers if k.lower().startswith("access-control-")]


@pytest.mark.parametrize("cors,needle", [
    ({"origins": ["*"], "credentials": True}, "routes[0].cors"),
    ({"origins": []}, "routes[0].cors.origins"),
    ({"origins": ["https://a.test/path"]}, "routes[0].cors.origins[0]"),
    ({"origins": ["*", "https://a.test"]}, "routes[0].cors.origins[0]"),
    ({"origins": ["https://a.test"], "methods": ["get"]}, "routes[0].cors.methods[0]"),
    ({"origins": ["https://a.test"], "headers": ["bad header"]}, "routes[0].cors.headers[0]"),
    ({"origins": ["https://a.test"], "max_age": -1}, "routes[0].cors.max_age"),
    ({"origins": ["https://a.test"], "credential": True}, "routes[0].cors.credential"),
    ("yes", "routes[0].cors"),
    ({"origins": ["https://a.test"], "__resp": {"set": {"Access-Control-Allow-Origin": "*"}}},
     "routes[0].response_headers"),
])
def test_bad_cors_stops_the_gateway(tmp_path, cors, needle):
    f = tmp_path / "routes.json"
    route = {"prefix": "/x/", "upstream": "http://127.0.0.1:9", "auth": ["session"], "cors": cors}
    if isinstance(cors, dict) and "__resp" in cors:
        route["response_headers"] = cors.pop("__resp")
    f.write_text(json.dumps({"routes": [route]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "GATEWAY_ROUTES": str(f)}
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0 and needle.encode() in r.stderr, r.stderr
