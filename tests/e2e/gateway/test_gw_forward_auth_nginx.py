"""Forward auth through a real nginx (auth_request to GET /_auth), set up the two ways
operators do: nginx's convention (X-Original-URI, -Method, -Host) and Traefik's
(X-Forwarded-Uri, -Method, -Host; ForwardAuth passes the client's headers through,
and so does nginx here). A header the client adds must never change which route's
policy judges the request (security issue #13, item 2)."""

import pytest
import requests

import pcsupport as G
from pcsupport.nginx import Nginx, NGINX_HEADERS, TRAEFIK_HEADERS


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
