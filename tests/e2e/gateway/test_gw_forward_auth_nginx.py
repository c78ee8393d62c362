"""Forward auth through a real nginx (auth_request to GET /_auth), set up the two ways
operators do: nginx's convention (X-Original-URI, -Method, -Host) and Traefik's
(X-Forwarded-Uri, -Method, -Host; ForwardAuth passes the client's headers through,
and so does nginx here). A header the client adds must never change which route's
policy judges the request (security issue #13, item 2)."""

import asyncio
import textwrap
import urllib.parse
from pathlib import Path

import pytest
import requests
import websockets

import pcsupport as G
from pcsupport.nginx import Nginx, NGINX_HEADERS, TRAEFIK_HEADERS
from pcsupport.wsupstream import WsUpstream


def _get(n, path, **headers):
    return requests.get(n.url(path), headers=headers, timeout=10)


@pytest.fixture(scope="module")
def nginx_std(module_gateway, upstream, gw_dir):
    """nginx convention, in front of a gateway with the default FORWARD_AUTH_PROXY=nginx."""
    n = Nginx(gw_dir, module_gateway.port, upstream.port, auth_headers=NGINX_HEADERS,
              name="nginx-std")
    yield n
    n.stop()


@pytest.fixture
def traefik_like(gateway_factory, upstream, gw_dir):
    """make(gateway_env): Traefik's headers, in front of a gateway started with gateway_env."""
    made = []

    def make(env):
        g = gateway_factory(env, name="gateway-fa-traefik")
        n = Nginx(gw_dir, g.port, upstream.port, auth_headers=TRAEFIK_HEADERS,
                  name="nginx-traefik")
        made.append(n)
        return g, n

    yield make
    for n in made:
        n.stop()


def _allowed(r, user):
    body = G.echo(r)
    assert body["headers"].get("x-user-id") == user.id, body
    assert body["headers"].get("x-auth-method") == "session", body


def test_nginx_convention(nginx_std, mod_user):
    assert _get(nginx_std, "/s/x").status_code == 401
    _allowed(_get(nginx_std, "/s/x?q=1", **G.cookie(mod_user)), mod_user)
    assert _get(nginx_std, "/pub/x").status_code == 200
    # nginx sets X-Original-URI itself, so the client's is replaced
    assert _get(nginx_std, "/s/x", **{"X-Original-URI": "/pub/x"}).status_code == 401
    # a client's X-Forwarded-Uri that disagrees: refused (nginx answers 500 for a 400)
    r = _get(nginx_std, "/s/x", **{"X-Forwarded-Uri": "/pub/x"})
    assert r.status_code == 500, r.status_code
    r = _get(nginx_std, "/s/x", **{"X-Forwarded-Uri": "/pub/x"}, **G.cookie(mod_user))
    assert r.status_code == 500, r.status_code


def test_traefik_convention(traefik_like, mod_user):
    g, n = traefik_like({"FORWARD_AUTH_PROXY": "traefik"})
    assert _get(n, "/s/x").status_code == 401
    _allowed(_get(n, "/s/x", **G.cookie(mod_user)), mod_user)
    assert _get(n, "/pub/x").status_code == 200
    # the bypass: X-Original-URI from the client, passed through as Traefik does
    r = _get(n, "/s/x", **{"X-Original-URI": "/pub/x"})
    assert r.status_code != 200 and r.status_code == 500, r.status_code
    r = _get(n, "/s/secret", **{"X-Original-URI": "/pub/x", "X-Original-Method": "GET"})
    assert r.status_code == 500, r.status_code
    # a method the client makes up that disagrees with the proxy's is refused too
    r = _get(n, "/pub/x", **{"X-Original-Method": "POST"})
    assert r.status_code == 500, r.status_code
    # the same value twice is no conflict
    _allowed(_get(n, "/s/x", **{"X-Original-URI": "/s/x"}, **G.cookie(mod_user)), mod_user)


def test_traefik_headers_with_the_default_gateway_fail_closed(traefik_like, mod_user):
    """The setup of the report: Traefik's headers, gateway left at its defaults. The
    client's X-Original-URI no longer wins: the request is refused."""
    g, n = traefik_like({})
    r = _get(n, "/s/x", **{"X-Original-URI": "/pub/x"})
    assert r.status_code == 500, r.status_code
    # and without a lie, the missing X-Original-URI is a 400 (a 500 from nginx), never a 200
    assert _get(n, "/s/x", **G.cookie(mod_user)).status_code == 500
    assert _get(n, "/pub/x").status_code == 500


# ---- refusals nginx cannot relay itself (issue 16): FORWARD_AUTH_REFUSAL=403 and the
# docs/gateway.md recipe, run as written there

DOCS = Path(__file__).resolve().parents[3] / "docs" / "gateway.md"
RECIPE_MARK = "<!-- recipe: nginx-refusal"


def _recipe(gateway_port, upstream_port, mark=RECIPE_MARK):
    """The nginx block of docs/gateway.md after the recipe mark, its two addresses
    (gateway:8080, app) made the test's own."""
    text = DOCS.read_text()
    at = text.index(mark)
    start = text.index("```nginx\n", at) + len("```nginx\n")
    block = text[start:text.index("```", start)]
    assert "http://gateway:8080" in block and "http://app;" in block, block
    block = block.replace("http://gateway:8080", f"http://127.0.0.1:{gateway_port}")
    block = block.replace("http://app;", f"http://127.0.0.1:{upstream_port};")
    return textwrap.indent(block, " " * 8)


@pytest.fixture
def nginx_recipe(gateway_factory, upstream, gw_dir):
    """make(env): a gateway started with env behind nginx set up as docs/gateway.md says."""
    made = []

    def make(env):
        g = gateway_factory(env, name="gateway-fa-recipe")
        n = Nginx(gw_dir, g.port, upstream.port, auth_headers={}, name="nginx-recipe",
                  locations=_recipe(g.port, upstream.port))
        made.append(n)
        return g, n

    yield make
    for n in made:
        n.stop()


def _limited_key(keys, sql, user, n):
    k = keys.create(user.id)
    sql.execute('update "apikey" set "rateLimitEnabled" = true, "rateLimitTimeWindow" = 60000, '
                '"rateLimitMax" = %s where id = %s', (n, k.id))
    return k


def test_recipe_gives_the_client_the_real_refusal(nginx_recipe, keys, sql, mod_user):
    g, n = nginx_recipe({"FORWARD_AUTH_REFUSAL": "403"})
    k = _limited_key(keys, sql, mod_user, 2)
    for _ in range(2):
        r = _get(n, "/k/x", **{"x-api-key": k.key})
        assert r.status_code == 200, (r.status_code, r.text[:200])
        assert G.echo(r)["headers"].get("x-user-id") == mod_user.id
    r = _get(n, "/k/x", **{"x-api-key": k.key})
    assert r.status_code == 429, (r.status_code, r.text[:200])
    assert r.json() == {"code": "RATE_LIMITED"}, r.text
    assert r.headers["content-type"] == "application/json"
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 60, retry
    # 401 is nginx's own (with the gateway's WWW-Authenticate), never made a 403
    r = _get(n, "/k/x")
    assert r.status_code == 401, r.status_code
    assert r.headers.get("www-authenticate", "").startswith("Bearer"), r.headers
    r = _get(n, "/k/x", **{"x-api-key": "pc_" + "x" * 40})
    assert r.status_code == 401, r.status_code
    # no route for the original URI: 404 through nginx, not a 500
    r = _get(n, "/no-such-route/x")
    assert r.status_code == 404 and r.json() == {"code": "NO_ROUTE"}, (r.status_code, r.text)
    # a client's lie is the 400 it is, not a 500 (nginx's own X-Original-URI wins, but the
    # client's X-Forwarded-Uri disagrees)
    r = _get(n, "/k/x", **{"x-api-key": k.key, "X-Forwarded-Uri": "/pub/x"})
    assert r.status_code == 400 and r.json() == {"code": "AMBIGUOUS_FORWARD_AUTH"}, r.text
    # an allowed answer carries no Retry-After from the recipe
    assert "retry-after" not in _get(n, "/pub/x").headers
    errors = (n.dir / "error.log").read_text()
    assert "auth request unexpected status" not in errors, errors[-2000:]


def test_without_the_mode_nginx_makes_it_a_500(nginx_recipe, keys, sql, mod_user):
    """The default (status) is what Traefik and Envoy relay; nginx cannot, and says so."""
    g, n = nginx_recipe({})
    k = _limited_key(keys, sql, mod_user, 1)
    assert _get(n, "/k/x", **{"x-api-key": k.key}).status_code == 200
    assert _get(n, "/k/x", **{"x-api-key": k.key}).status_code == 500
    assert "auth request unexpected status: 429" in (n.dir / "error.log").read_text()


def test_auth_answers_name_the_real_status(gateway_factory, keys, sql, mod_user):
    """Asked directly: X-Auth-Status and X-Auth-Code on every /_auth refusal, in both
    modes; a proxied request's refusal has neither."""
    k = _limited_key(keys, sql, mod_user, 1)
    for mode, sent in (("status", 429), ("403", 403)):
        g = gateway_factory({"FORWARD_AUTH_REFUSAL": mode}, name=f"gateway-fa-{mode}")
        h = {"X-Original-URI": "/k/x", "x-api-key": k.key}
        if mode == "status":
            r = g.get("/_auth", headers=h)
            assert r.status_code == 200, r.status_code
            assert r.headers.get("x-auth-status") is None
        r = g.get("/_auth", headers=h)
        assert r.status_code == sent, (mode, r.status_code)
        assert r.headers["x-auth-status"] == "429" and r.headers["x-auth-code"] == "RATE_LIMITED"
        assert r.json()["code"] == "RATE_LIMITED" and "retry-after" in r.headers
        r = g.get("/_auth", headers={"X-Original-URI": "/k/x"})
        assert r.status_code == 401 and r.headers["x-auth-status"] == "401", (mode, r.status_code)
        r = g.get("/_auth")
        assert r.status_code == (400 if mode == "status" else 403)
        assert r.headers["x-auth-code"] == "MISSING_ORIGINAL_URI"
        r = g.get("/k/x", headers={"x-api-key": k.key})
        assert r.status_code == 429 and "x-auth-status" not in r.headers

def test_nginx_passes_the_refresh_cookie_on(nginx_std, user, sql, redis_client, secret):
    """A session due for Better Auth's sliding refresh: /_auth's 200 carries the session
    cookie with the new Max-Age, and nginx (auth_request_set + add_header, as
    docs/gateway.md says) hands it to the browser, once (issue 16)."""
    sql.execute('update "session" set "expiresAt" = now() + interval \'2 days\', '
                '"updatedAt" = now() - interval \'5 days\' where token = %s', (user.token,))
    redis_client.delete(G.session_key(user.token))
    r = _get(nginx_std, "/s/refresh", **G.cookie(user))
    _allowed(r, user)
    want = (f"better-auth.session_token={G.cookie_value(secret, user.token)}; Max-Age=604800; "
            "Path=/; HttpOnly; SameSite=Lax")
    assert G.set_cookie_headers(r) == [want], G.set_cookie_headers(r)
    G.wait_until(lambda: sql.scalar('select extract(epoch from "expiresAt" - now()) from "session" '
                                    'where token = %s', (user.token,)) > 6.9 * 86400, 3,
                 what="sliding refresh UPDATE of expiresAt")
    # refreshed: the next answers carry none (nginx adds no empty header)
    r2 = _get(nginx_std, "/s/again", **G.cookie(user))
    _allowed(r2, user)
    assert G.set_cookie_headers(r2) == [] and "set-cookie" not in r2.headers


# docs/gateway.md's sign-in recipe: a browser without a session is sent to the
# sign-in page through nginx; an API call still gets 401 JSON

SIGNIN = "https://auth.example.test/sign-in"


def test_signin_recipe_redirects_browsers(gateway_factory, upstream, gw_dir, mod_user):
    routes = {"routes": [
        {"prefix": "/app/", "upstream": upstream.url, "auth": ["session"],
         "on_unauthenticated": "redirect", "sign_in_url": SIGNIN}]}
    g = gateway_factory({}, routes, name="gateway-fa-signin")
    n = Nginx(gw_dir, g.port, upstream.port, auth_headers={}, name="nginx-signin",
              locations=_recipe(g.port, upstream.port, "<!-- recipe: nginx-signin"))
    try:
        html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        r = requests.get(n.url("/app/page?x=1"), headers=html, timeout=10, allow_redirects=False)
        assert r.status_code == 302, (r.status_code, r.text[:200])
        assert r.headers["cache-control"] == "no-store"
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)
        assert r.headers["location"].startswith(SIGNIN + "?callbackURL=")
        assert q["callbackURL"] == [f"http://127.0.0.1:{n.port}/app/page?x=1"], q
        r = requests.get(n.url("/app/page"), headers={"Accept": "application/json"}, timeout=10,
                         allow_redirects=False)
        assert r.status_code == 401 and r.json() == {"code": "UNAUTHORIZED"}, (r.status_code, r.text)
        r = requests.get(n.url("/app/page"), headers={**html, **G.cookie(mod_user)}, timeout=10,
                         allow_redirects=False)
        assert r.status_code == 200, (r.status_code, r.text[:200])
        assert G.echo(r)["headers"].get("x-user-id") == mod_user.id
    finally:
        n.stop()


# docs/gateway.md's WebSocket recipe: nginx asks /_auth about the handshake, then
# upgrades the connection to the app itself (issue 15)

def test_websocket_recipe_authenticates_the_handshake(gateway_factory, gw_dir, mod_user):
    up = WsUpstream()
    routes = {"routes": [{"prefix": "/ws/", "upstream": up.url, "auth": ["session"]}]}
    g = gateway_factory({}, routes, name="gateway-fa-ws")
    n = Nginx(gw_dir, g.port, up.port, auth_headers={}, name="nginx-ws",
              locations=_recipe(g.port, up.port, "<!-- recipe: nginx-websocket"))

    async def echo(headers):
        async with websockets.connect(f"ws://127.0.0.1:{n.port}/ws/echo", extra_headers=headers,
                                      ping_interval=None) as ws:
            await ws.send("through nginx")
            return await ws.recv()

    try:
        assert asyncio.run(asyncio.wait_for(echo(G.cookie(mod_user)), 20)) == "through nginx"
        hs = up.handshakes[-1]
        assert hs["x-user-id"] == mod_user.id and hs["upgrade"].lower() == "websocket", hs
        for bad in ({}, {"Cookie": "better-auth.session_token=forged.sig"}):
            with pytest.raises(websockets.InvalidStatusCode) as e:
                asyncio.run(asyncio.wait_for(echo(bad), 20))
            assert e.value.status_code == 401
        assert len(up.handshakes) == 1, "a refused handshake reached the app"
    finally:
        n.stop()
        up.stop()
