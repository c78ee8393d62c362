"""Same-origin Better Auth through the gateway (issue 16): a route with
"auth": ["none"] and "auth_passthrough": true hands authsvc its own cookies and
relays its Set-Cookie lines untouched, so a browser signs in and stays signed in
through the gateway; and authsvc, trusting the gateway as a proxy, rate-limits
sign-ins per client address, not one bucket for everyone behind the gateway.

Here the test client stands in for a proxy in front of the gateway (the gateway
trusts 127.0.0.1), so X-Forwarded-For can name many clients; authsvc trusts the
gateway (127.0.0.1 too) and reads the client from the right of the header."""

import json
import time
import uuid

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.suite import SECRET, TRUSTED_ORIGINS

TRUSTED_ORIGIN = TRUSTED_ORIGINS[0]


@pytest.fixture
def stack(authsvc_factory, gateway_factory):
    prefix = f"pt{uuid.uuid4().hex[:8]}:"
    a = authsvc_factory({"RATE_LIMIT_ENABLED": "true", "REDIS_PREFIX": prefix,
                         "TRUSTED_PROXIES": "127.0.0.1"}, name="authsvc-passthrough")
    routes = {"routes": [
        {"prefix": "/api/auth/", "upstream": a.base_url, "auth": ["none"], "auth_passthrough": True},
        # the same authsvc without the flag: the gateway keeps Better Auth's cookies to itself
        {"prefix": "/plain/", "upstream": a.base_url, "auth": ["none"], "strip_prefix": True,
         "forward_cookies": True},
    ]}
    g = gateway_factory({"TRUSTED_PROXIES": "127.0.0.1"}, routes, name="gateway-passthrough")
    return a, g


def _post(g, path, body, xff=None, cookie=None):
    h = {"Origin": TRUSTED_ORIGIN, "Content-Type": "application/json"}
    if xff:
        h["X-Forwarded-For"] = xff
    if cookie:
        h["Cookie"] = cookie
    return requests.post(g.url(path), data=json.dumps(body), headers=h, timeout=10,
                         allow_redirects=False)


def _cookie_header(resp):
    """name=value of every Set-Cookie, as a browser would send them back."""
    jar = [c.split(";", 1)[0] for c in resp.raw.headers.getlist("Set-Cookie")]
    return "; ".join(jar)


def test_sign_up_and_session_through_the_gateway(stack, sql):
    a, g = stack
    email = f"pt-{uuid.uuid4().hex[:10]}@example.com"
    r = _post(g, "/api/auth/sign-up/email",
              {"email": email, "password": "Passthrough-pw-1", "name": "P T"}, xff="203.0.113.9")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    cookie = _cookie_header(r)
    assert "better-auth.session_token=" in cookie, r.raw.headers.getlist("Set-Cookie")

    got = requests.get(g.url("/api/auth/get-session"), headers={"Cookie": cookie}, timeout=10)
    assert got.status_code == 200 and got.json()["user"]["email"] == email, got.text[:300]
    # the client address authsvc stored is the one in front of the gateway
    token = got.json()["session"]["token"]
    row = sql.one('SELECT "ipAddress" FROM "session" WHERE token = %s', (token,))
    assert row[0] == "203.0.113.9", row

    # without auth_passthrough the cookie never reaches authsvc: no session
    plain = requests.get(g.url("/plain/api/auth/get-session"), headers={"Cookie": cookie}, timeout=10)
    assert plain.status_code == 200 and plain.json() is None, plain.text[:300]

    # sign-out through the gateway: authsvc's clearing Set-Cookie comes back whole
    out = _post(g, "/api/auth/sign-out", {}, cookie=cookie)
    assert out.status_code == 200, out.text[:300]
    cleared = [c for c in out.raw.headers.getlist("Set-Cookie") if c.startswith("better-auth.session_token=")]
    assert cleared and "Max-Age=0" in cleared[0], out.raw.headers.getlist("Set-Cookie")
    gone = requests.get(g.url("/api/auth/get-session"), headers={"Cookie": cookie}, timeout=10)
    assert gone.status_code == 200 and gone.json() is None, gone.text[:300]


def _sign_in(g, xff):
    return _post(g, "/api/auth/sign-in/email",
                 {"email": "nobody-passthrough@example.com", "password": "Wrong-password-1"}, xff=xff)


def test_sign_in_rate_limit_is_per_client_behind_the_gateway(stack):
    a, g = stack
    for _ in range(3):
        r = _sign_in(g, "198.51.100.1")
        assert r.status_code == 401, (r.status_code, r.text[:200])
    r = _sign_in(g, "198.51.100.1")
    assert r.status_code == 429, (r.status_code, r.text[:200])
    # another client behind the same gateway is not limited by the first one's tries
    r = _sign_in(g, "198.51.100.2")
    assert r.status_code == 401, (r.status_code, r.text[:200])


def test_passthrough_only_on_anonymous_routes(tmp_path):
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [
        {"prefix": "/x/", "upstream": "http://127.0.0.1:9", "auth": ["session"], "auth_passthrough": True}]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "GATEWAY_ROUTES": str(routes)}
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0
    assert b"routes[0].auth_passthrough" in r.stderr, r.stderr
    routes.write_text(json.dumps({"routes": [
        {"prefix": "/x/", "upstream": "http://127.0.0.1:9", "auth": ["none"], "auth_passthrough": "yes"}]}))
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0 and b"routes[0].auth_passthrough" in r.stderr, r.stderr
