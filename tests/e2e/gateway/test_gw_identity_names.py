"""Identity headers under the names users already wire (issue 16): oauth2-proxy's
X-Auth-Request-User and X-Auth-Request-Email beside ours, and IDENTITY_HEADER_NAMES to
rename or drop any of them. Every name, old and new, is the gateway's alone: a client's
line of that name never reaches the upstream. The parsing and its refusals are unit
tests (tests/unit/test_gw_identity_names.c) and test_gw_config.py."""

import pytest

import pcsupport as G

SPOOF = {"X-Auth-Request-User": "admin", "X-Auth-Request-Email": "admin@evil.example",
         "X-Remote-User": "admin", "X-Remote-Email": "admin@evil.example",
         "X-User-Id": "admin"}


def test_oauth2_proxy_names_beside_ours(gw, mod_user, mod_key):
    for cred, method in ((G.cookie(mod_user), "session"), ({"x-api-key": mod_key.key}, "api_key")):
        h = G.echo(gw.get("/m/who", headers={**cred, **SPOOF}))["headers"]
        assert h["x-user-id"] == mod_user.id and h["x-auth-request-user"] == mod_user.id, h
        assert h["x-auth-method"] == method
        if method == "session":
            assert h["x-user-email"] == mod_user.email, h
            assert h["x-auth-request-email"] == mod_user.email, h
        else:  # an API key's principal has no email: neither header, and no client's
            assert "x-user-email" not in h and "x-auth-request-email" not in h, h
        # not renamed: a client's X-Remote-* is just a header
        assert h.get("x-remote-user") == "admin", h
    # forward auth answers with them too
    r = gw.get("/_auth", headers={"X-Original-URI": "/s/x", **G.cookie(mod_user)})
    assert r.status_code == 200
    assert r.headers["x-auth-request-user"] == mod_user.id
    assert r.headers["x-auth-request-email"] == mod_user.email
    # an anonymous route gets none, and a client's are still dropped
    h = G.echo(gw.get("/pub/x", headers=SPOOF))["headers"]
    for name in ("x-auth-request-user", "x-auth-request-email", "x-user-id"):
        assert name not in h, h


@pytest.fixture(scope="module")
def renamed(request, pg, redis_srv, live_authsvc, secret, routes, gw_dir):
    e = G.gw_base_env(pg, redis_srv, secret)
    e["IDENTITY_HEADER_NAMES"] = ("X-User-Id=X-Remote-User, X-User-Email=X-Remote-Email,"
                                  "X-Auth-Request-User=,X-Auth-Request-Email=")
    g = G.Gateway(e, routes, workdir=gw_dir, name="gateway-renamed", start=False)
    g.start()
    yield g
    g.stop()
    G.check_stopped(g)


def test_renamed_and_dropped(renamed, mod_user, mod_key):
    h = G.echo(renamed.get("/m/who", headers={**G.cookie(mod_user), **SPOOF}))["headers"]
    assert h["x-remote-user"] == mod_user.id, h
    assert h["x-remote-email"] == mod_user.email, h
    for name in ("x-user-id", "x-user-email", "x-auth-request-user", "x-auth-request-email"):
        assert name not in h, (name, h)
    assert h["x-auth-method"] == "session" and h["x-session-id"], h
    # a client's line of the new name is dropped even where the gateway adds none
    h = G.echo(renamed.get("/pub/x", headers=SPOOF))["headers"]
    for name in ("x-remote-user", "x-remote-email", "x-user-id", "x-auth-request-user"):
        assert name not in h, (name, h)
    r = renamed.get("/_auth", headers={"X-Original-URI": "/k/x", "x-api-key": mod_key.key})
    assert r.status_code == 200
    assert r.headers["x-remote-user"] == mod_user.id and "x-user-id" not in r.headers
    assert r.headers["x-api-key-id"] == mod_key.id
