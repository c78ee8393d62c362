"""Forward auth: GET /_auth for nginx auth_request, Traefik ForwardAuth, Envoy ext_authz.
The route policy comes from X-Original-URI (or X-Forwarded-Uri)."""

import pytest

import gwlib as G


def _auth(g, uri=None, fwd=None, **headers):
    h = dict(headers)
    if uri is not None:
        h["X-Original-URI"] = uri
    if fwd is not None:
        h["X-Forwarded-Uri"] = fwd
    return g.get("/_auth", headers=h)


@pytest.mark.parametrize("kind", ["cookie", "bearer_signed", "bearer_raw"])
def test_allowed_session_is_200_with_identity(gw, sql, mod_user, kind):
    cred = {"cookie": G.cookie(mod_user), "bearer_signed": G.bearer(mod_user.signed),
            "bearer_raw": G.bearer(mod_user.token)}[kind]
    r = _auth(gw, "/s/some/page?x=1", **cred)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-user-id") == mod_user.id
    assert r.headers.get("x-user-email") == mod_user.email
    assert r.headers.get("x-auth-method") == "session"
    assert r.headers.get("x-session-id") == sql.session_id(mod_user.token)
    assert r.headers.get("x-request-id")
    assert "x-api-key-id" not in r.headers
    assert r.content == b""


@pytest.mark.parametrize("src", ["x-api-key", "bearer", "path"])
def test_allowed_api_key_is_200_with_identity(gw, mod_user, mod_key, src):
    if src == "path":
        r = _auth(gw, f"/oc/{mod_key.key}/session")
    elif src == "x-api-key":
        r = _auth(gw, "/k/x", **{"x-api-key": mod_key.key})
    else:
        r = _auth(gw, "/k/x", **G.bearer(mod_key.key))
    assert r.status_code == 200, r.text
    assert r.headers.get("x-user-id") == mod_user.id
    assert r.headers.get("x-auth-method") == "api_key"
    assert r.headers.get("x-api-key-id") == mod_key.id
    assert "x-session-id" not in r.headers


def test_x_forwarded_uri_also_works(gw, mod_user):
    r = _auth(gw, fwd="/s/x", **G.cookie(mod_user))
    assert r.status_code == 200 and r.headers.get("x-user-id") == mod_user.id


def test_missing_credential_is_401(gw):
    for uri in ("/s/x", "/k/x", "/m/x", "/oc/"):
        r = _auth(gw, uri)
        assert r.status_code in (401, 404), (uri, r.status_code)
    G.assert_gw_error(_auth(gw, "/m/x"), 401)


def test_wrong_credential_kind_for_route_is_401(gw, mod_user, mod_key):
    G.assert_gw_error(_auth(gw, "/k/x", **G.cookie(mod_user)), 401)
    G.assert_gw_error(_auth(gw, "/s/x", **{"x-api-key": mod_key.key}), 401)
    G.assert_gw_error(_auth(gw, "/j/x", **G.bearer(G.jwt_like())), 401)


def test_missing_original_uri_is_400(gw, mod_user):
    G.assert_gw_error(_auth(gw, **G.cookie(mod_user)), 400)
    G.assert_gw_error(_auth(gw, "relative/path", **G.cookie(mod_user)), 400)


def test_permissions_403(gw, keys, mod_user):
    k = keys.create(mod_user.id, permissions={"files": ["read"]})
    G.assert_gw_error(_auth(gw, "/perm/x", **{"x-api-key": k.key}), 403)
    ok = keys.create(mod_user.id, permissions={"files": ["read", "write"], "projects": ["list"]})
    assert _auth(gw, "/perm/x", **{"x-api-key": ok.key}).status_code == 200


def test_public_route_200_without_identity(gw):
    r = _auth(gw, "/pub/x")
    assert r.status_code == 200
    assert "x-user-id" not in r.headers and "x-auth-method" not in r.headers


def test_no_route_is_404(gw, mod_user):
    G.assert_gw_error(_auth(gw, "/nowhere", **G.cookie(mod_user)), 404)


def test_forward_auth_does_not_proxy(gw, mod_user):
    """/_auth never reaches the upstream: /dead/ has no upstream and still answers 200."""
    r = _auth(gw, "/dead/x")
    assert r.status_code == 200, r.text
