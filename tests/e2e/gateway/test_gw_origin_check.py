"""The origin check of cookie-authenticated unsafe requests (issue 16): a browser
attaches the session cookie to a cross-site form post, so a POST, PUT, PATCH or
DELETE authenticated by the cookie needs an Origin (or, without one, a Referer)
that is trusted (BETTER_AUTH_URL's origin, TRUSTED_ORIGINS, the route's
"trusted_origins" or "cors" origins) or the request's own host; otherwise 403 with
Better Auth's codes, and the upstream never sees the request. API keys and Bearer
tokens are exempt; "origin_check": false turns it off for a route."""

import json

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.suite import SECRET

APP = "http://app.example.test"          # in TRUSTED_ORIGINS below
PARTNER = "https://shop.partner.test"    # only in /t/'s trusted_origins
SPA = "https://spa.example.test"         # only in /c/'s cors origins


@pytest.fixture(scope="module")
def ogw(pg, redis_srv, live_authsvc, secret, upstream, gw_dir):
    routes = {"routes": [
        {"prefix": "/s/", "upstream": upstream.url, "auth": ["session", "api_key"]},
        {"prefix": "/off/", "upstream": upstream.url, "auth": ["session"], "origin_check": False},
        {"prefix": "/t/", "upstream": upstream.url, "auth": ["session"],
         "trusted_origins": ["https://*.partner.test"]},
        {"prefix": "/c/", "upstream": upstream.url, "auth": ["session"],
         "cors": {"origins": [SPA], "credentials": True}},
    ]}
    env = {**G.gw_base_env(pg, redis_srv, secret), "TRUSTED_ORIGINS": f"{APP}, *.corp.test"}
    g = G.Gateway(env, routes, workdir=gw_dir, name="gateway-origin")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _req(g, method, path, **headers):
    body = None if method in ("GET", "HEAD", "OPTIONS") else b"{}"
    return requests.request(method, f"http://127.0.0.1:{g.port}{path}", headers=headers,
                            data=body, timeout=10, allow_redirects=False)


def _refused(r, code):
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert r.json()["code"] == code, r.text


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_cookie_without_origin_refused(ogw, mod_user, method):
    _refused(_req(ogw, method, "/s/x", Cookie=mod_user.cookie), "MISSING_OR_NULL_ORIGIN")


def test_null_origin_refused(ogw, mod_user):
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Origin="null")
    _refused(r, "MISSING_OR_NULL_ORIGIN")
    assert r.json()["message"] == "Missing or null Origin"


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "http://app.example.test.evil.example",   # a trusted name as a prefix
    "https://app.example.test",               # another scheme is another origin
    "http://app.example.test:8080",           # another port too
    "http://127.0.0.1:1",                     # our host, another port
    "http://user@app.example.test",           # userinfo never matches
    "not a url",
])
def test_untrusted_origin_refused(ogw, mod_user, origin):
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Origin=origin)
    _refused(r, "INVALID_ORIGIN")
    assert r.json()["message"] == "Invalid origin"


@pytest.mark.parametrize("origin", [
    APP,                                   # TRUSTED_ORIGINS
    "http://a.b.corp.test",                # TRUSTED_ORIGINS wildcard
    "http://localhost:3000",               # BETTER_AUTH_URL's origin (its default)
])
def test_trusted_origin_passes(ogw, mod_user, origin):
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Origin=origin)
    assert r.status_code == 200, r.text[:300]
    assert G.echo(r)["method"] == "POST"


def test_own_host_passes(ogw, mod_user):
    r = _req(ogw, "DELETE", "/s/x", Cookie=mod_user.cookie, Origin=f"http://127.0.0.1:{ogw.port}")
    assert r.status_code == 200, r.text[:300]
    # the Host header is what counts, compared as the origin's scheme reads it
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Host="Www.Site.Test:80",
             Origin="http://www.site.test")
    assert r.status_code == 200, r.text[:300]


def test_referer_stands_in_for_a_missing_origin(ogw, mod_user):
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Referer=f"{APP}/page?a=1")
    assert r.status_code == 200, r.text[:300]
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Referer="https://evil.example/p")
    _refused(r, "INVALID_ORIGIN")
    # the Origin wins over the Referer
    r = _req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Origin="https://evil.example",
             Referer=f"{APP}/page")
    _refused(r, "INVALID_ORIGIN")


def test_safe_methods_need_no_origin(ogw, mod_user):
    for m in ("GET", "HEAD", "OPTIONS"):
        r = _req(ogw, m, "/s/x", Cookie=mod_user.cookie, Origin="https://evil.example")
        assert r.status_code == 200, (m, r.status_code)


def test_api_keys_and_bearer_tokens_are_exempt(ogw, mod_user, mod_key):
    r = _req(ogw, "POST", "/s/x", **{"x-api-key": mod_key.key}, Origin="https://evil.example")
    assert r.status_code == 200, r.text[:300]
    r = _req(ogw, "POST", "/s/x", **G.bearer(mod_user.token))
    assert r.status_code == 200, r.text[:300]


def test_route_may_turn_it_off(ogw, mod_user):
    r = _req(ogw, "POST", "/off/x", Cookie=mod_user.cookie)
    assert r.status_code == 200, r.text[:300]


def test_route_trusted_origins_only_on_that_route(ogw, mod_user):
    assert _req(ogw, "POST", "/t/x", Cookie=mod_user.cookie, Origin=PARTNER).status_code == 200
    _refused(_req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Origin=PARTNER), "INVALID_ORIGIN")
    # the global list still holds on the route with its own
    assert _req(ogw, "POST", "/t/x", Cookie=mod_user.cookie, Origin=APP).status_code == 200


def test_cors_origins_are_trusted_on_their_route(ogw, mod_user):
    r = _req(ogw, "POST", "/c/x", Cookie=mod_user.cookie, Origin=SPA)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Access-Control-Allow-Origin"] == SPA
    _refused(_req(ogw, "POST", "/s/x", Cookie=mod_user.cookie, Origin=SPA), "INVALID_ORIGIN")


def test_forwarded_host_only_from_a_trusted_proxy(gateway_factory, mod_user):
    """X-Forwarded-Host is the host the browser used only when a configured proxy says
    so; from anyone else it cannot make an attacker's origin look like our own."""
    h = {"Cookie": mod_user.cookie, "X-Forwarded-Host": "evil.example",
         "Origin": "http://evil.example"}
    plain = gateway_factory(name="gateway-origin-xfh")
    _refused(_req(plain, "POST", "/m/x", **h), "INVALID_ORIGIN")
    behind = gateway_factory({"TRUSTED_PROXIES": "127.0.0.1/32"}, name="gateway-origin-proxy")
    assert _req(behind, "POST", "/m/x", **h).status_code == 200


def test_forward_auth_checks_the_original_method(gateway_factory, mod_user):
    g = gateway_factory(name="gateway-origin-fa")
    base = {"Cookie": mod_user.cookie, "X-Original-URI": "/m/x", "X-Original-Host": "app.site"}
    r = _req(g, "GET", "/_auth", **base, **{"X-Original-Method": "POST"})
    _refused(r, "MISSING_OR_NULL_ORIGIN")
    r = _req(g, "GET", "/_auth", **base, **{"X-Original-Method": "POST"},
             Origin="http://app.site")
    assert r.status_code == 200, r.text[:300]
    r = _req(g, "GET", "/_auth", **base, **{"X-Original-Method": "GET"})
    assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize("route,needle", [
    ({"trusted_origins": ["https://a.*"]}, "routes[0].trusted_origins[0]"),
    ({"trusted_origins": [7]}, "routes[0].trusted_origins[0]"),
    ({"trusted_origins": []}, "routes[0].trusted_origins"),
    ({"trusted_origins": "https://a.test"}, "routes[0].trusted_origins"),
    ({"origin_check": "no"}, "routes[0].origin_check"),
])
def test_bad_route_keys_stop_the_gateway(tmp_path, route, needle):
    f = tmp_path / "routes.json"
    f.write_text(json.dumps({"routes": [{"prefix": "/x/", "upstream": "http://127.0.0.1:9",
                                         "auth": ["session"], **route}]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "GATEWAY_ROUTES": str(f)}
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0 and needle.encode() in r.stderr, r.stderr


def test_bad_trusted_origins_stops_the_gateway():
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "UPSTREAM_URL": "http://127.0.0.1:9", "TRUSTED_ORIGINS": "https://ok.test, ftp://x"}
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0 and b"TRUSTED_ORIGINS" in r.stderr and b"ftp://x" in r.stderr, \
        r.stderr
