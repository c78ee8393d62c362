"""Browsers that are not signed in (issue 16): a route with
"on_unauthenticated": "redirect" sends a navigation (GET/HEAD accepting
text/html) without a valid credential to its sign_in_url with the way back in
return_to_param (callbackURL by default); API calls keep their 401 JSON; a signed-in
browser is proxied. Forward auth answers the same 401 with X-Auth-Redirect for
the proxy. The way back is checked where it is used: authsvc refuses a
callbackURL on an untrusted origin."""

import json
import urllib.parse

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.suite import SECRET, TRUSTED_ORIGINS

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SIGNIN = "https://auth.example.test/sign-in"


@pytest.fixture(scope="module")
def rgw(pg, redis_srv, live_authsvc, secret, upstream, gw_dir):
    routes = {"routes": [
        {"prefix": "/app/", "upstream": upstream.url, "auth": ["session"],
         "on_unauthenticated": "redirect", "sign_in_url": SIGNIN},
        {"prefix": "/app2/", "upstream": upstream.url, "auth": ["session", "api_key"],
         "on_unauthenticated": "redirect", "sign_in_url": "/sign-in?theme=dark",
         "return_to_param": "rd"},
        {"prefix": "/api/", "upstream": upstream.url, "auth": ["session"]},
    ]}
    g = G.Gateway(dict(G.gw_base_env(pg, redis_srv, secret), TRUSTED_PROXIES="127.0.0.2"),
                  routes, workdir=gw_dir, name="gateway-signin")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _get(g, path, accept=HTML, method="GET", **headers):
    h = {"Accept": accept, **headers} if accept else dict(headers)
    return requests.request(method, f"http://127.0.0.1:{g.port}{path}", headers=h, timeout=10,
                     allow_redirects=False)


def _back(location, param="callbackURL"):
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    return q[param][0]


def test_browser_without_session_goes_to_sign_in(rgw):
    r = _get(rgw, "/app/reports/2026?year=2026&q=a%20b")
    assert r.status_code == 302, (r.status_code, r.text[:200])
    loc = r.headers["Location"]
    assert loc.startswith(SIGNIN + "?callbackURL="), loc
    assert _back(loc) == f"http://127.0.0.1:{rgw.port}/app/reports/2026?year=2026&q=a%20b"
    assert r.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in r.headers
    # HEAD too; a cookie that does not verify is no credential either
    assert _get(rgw, "/app/x", method="HEAD").status_code == 302
    bad = _get(rgw, "/app/x", Cookie="better-auth.session_token=forged.sig")
    assert bad.status_code == 302, bad.status_code


def test_api_calls_keep_401(rgw):
    for accept in ("application/json", "*/*", None):
        r = _get(rgw, "/app/x", accept=accept)
        assert r.status_code == 401, (accept, r.status_code)
        assert r.json()["code"] and "Location" not in r.headers
    # a form post from a browser is no navigation
    r = _get(rgw, "/app/x", method="POST")
    assert r.status_code == 401 and "Location" not in r.headers
    # a route without on_unauthenticated answers 401 to a browser too
    r = _get(rgw, "/api/x")
    assert r.status_code == 401 and "Location" not in r.headers


def test_signed_in_browser_is_proxied(rgw, user):
    r = _get(rgw, "/app/x", Cookie=user.cookie)
    assert r.status_code == 200, (r.status_code, r.text[:200])


def test_relative_sign_in_url_and_own_param(rgw):
    r = _get(rgw, "/app2/page")
    assert r.status_code == 302
    loc = r.headers["Location"]
    assert loc.startswith("/sign-in?theme=dark&rd="), loc
    assert _back(loc, "rd") == f"http://127.0.0.1:{rgw.port}/app2/page"


def test_forwarded_proto_and_host_only_from_a_trusted_proxy(rgw):
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.test"}
    # the test client is 127.0.0.1, not the trusted 127.0.0.2: its headers are ignored
    r = _get(rgw, "/app/x", **fwd)
    assert _back(r.headers["Location"]) == f"http://127.0.0.1:{rgw.port}/app/x"
    # a Host that lies is only a hint: it is encoded whole, and checked on the way back
    r = _get(rgw, "/app/x", Host="evil.example")
    assert _back(r.headers["Location"]) == "http://evil.example/app/x"


def test_forward_auth_names_the_sign_in_page(rgw):
    r = requests.get(f"http://127.0.0.1:{rgw.port}/_auth", timeout=10,
                     headers={"Accept": HTML, "X-Original-URI": "/app/deep/link?x=1",
                              "X-Original-Method": "GET", "X-Original-Host": "app.example.test"})
    assert r.status_code == 401, r.status_code
    assert _back(r.headers["X-Auth-Redirect"]) == "http://app.example.test/app/deep/link?x=1"
    api = requests.get(f"http://127.0.0.1:{rgw.port}/_auth", timeout=10,
                       headers={"Accept": "application/json", "X-Original-URI": "/app/x"})
    assert api.status_code == 401 and "X-Auth-Redirect" not in api.headers


def test_authsvc_refuses_a_way_back_to_an_untrusted_origin(rgw, live_authsvc):
    evil = _back(_get(rgw, "/app/x", Host="evil.example").headers["Location"])
    good = _back(_get(rgw, "/app/x", Host=urllib.parse.urlsplit(TRUSTED_ORIGINS[0]).netloc)
                 .headers["Location"])
    for back, want in ((evil, 403), (good, 401)):
        r = requests.post(live_authsvc.api("sign-in/email"), timeout=10,
                          headers={"Origin": live_authsvc.origin, "Content-Type": "application/json"},
                          data=json.dumps({"email": "nobody-signin@example.com",
                                           "password": "Wrong-password-1", "callbackURL": back}))
        assert r.status_code == want, (back, r.status_code, r.text[:200])
        if want == 403:
            assert r.json()["code"] == "INVALID_CALLBACK_URL"


@pytest.mark.parametrize("route,needle", [
    ({"auth": ["session"], "on_unauthenticated": "redirect"}, "routes[0].sign_in_url"),
    ({"auth": ["session"], "on_unauthenticated": "redirect", "sign_in_url": "//evil.example/x"},
     "routes[0].sign_in_url"),
    ({"auth": ["session"], "on_unauthenticated": "redirect", "sign_in_url": "javascript:alert(1)"},
     "routes[0].sign_in_url"),
    ({"auth": ["session"], "on_unauthenticated": "redirect", "sign_in_url": "https://u:p@a.test/"},
     "routes[0].sign_in_url"),
    ({"auth": ["session"], "sign_in_url": "/sign-in"}, "routes[0].sign_in_url"),
    ({"auth": ["session"], "on_unauthenticated": "login"}, "routes[0].on_unauthenticated"),
    ({"auth": ["none"], "on_unauthenticated": "redirect", "sign_in_url": "/s"},
     "routes[0].on_unauthenticated"),
    ({"prefix": "/k/:apiKey/", "auth": ["api_key", "session"], "on_unauthenticated": "redirect",
      "sign_in_url": "/s"}, "routes[0].on_unauthenticated"),
    ({"auth": ["session"], "on_unauthenticated": "redirect", "sign_in_url": "/s",
      "return_to_param": "a b"}, "routes[0].return_to_param"),
])
def test_bad_redirect_settings_stop_the_gateway(tmp_path, route, needle):
    f = tmp_path / "routes.json"
    f.write_text(json.dumps({"routes": [{"prefix": "/x/", "upstream": "http://127.0.0.1:9", **route}]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "GATEWAY_ROUTES": str(f)}
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0 and needle.encode() in r.stderr, r.stderr
