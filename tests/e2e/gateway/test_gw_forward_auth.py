"""Forward auth: GET /_auth for nginx auth_request, Traefik ForwardAuth, Envoy ext_authz.
The route policy comes from the one header FORWARD_AUTH_URI_HEADER names (by default
the proxy's: X-Original-URI for nginx, X-Forwarded-Uri for Traefik) or, for Envoy, from
the path after /_auth; any two candidate headers that disagree are refused.
(Through a real nginx: test_gw_forward_auth_nginx.py.)"""

import json

import pytest

import pcsupport as H
import pcsupport as G


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


def test_x_forwarded_uri_is_not_read_by_default(gw, mod_user):
    """Only the named header counts (nginx's X-Original-URI by default)."""
    G.assert_gw_error(_auth(gw, fwd="/s/x", **G.cookie(mod_user)), 400, "MISSING_ORIGINAL_URI")


@pytest.mark.parametrize("uri,fwd", [("/pub/x", "/s/x"), ("/s/x", "/pub/x")])
def test_disagreeing_uri_headers_are_refused(gw, uri, fwd):
    """The bypass of issue #13: a client-made X-Original-URI next to the proxy's
    X-Forwarded-Uri (or the other way round) is refused, not judged by either."""
    G.assert_gw_error(_auth(gw, uri, fwd), 400, "AMBIGUOUS_FORWARD_AUTH")


def test_agreeing_uri_headers_are_fine(gw, mod_user):
    r = _auth(gw, "/s/x?a=1", "/s/x?a=1", **G.cookie(mod_user))
    assert r.status_code == 200 and r.headers.get("x-user-id") == mod_user.id


def _raw_auth(port, lines):
    req = "GET /_auth HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(l + "\r\n" for l in lines) + \
        "Connection: close\r\n\r\n"
    return G.raw_http(port, req.encode())


def test_two_lines_of_the_named_header_that_disagree(gw):
    st, _, body, _ = _raw_auth(gw.port, ["X-Original-URI: /pub/x", "X-Original-URI: /s/x"])
    assert st == 400 and json.loads(body)["code"] == "AMBIGUOUS_FORWARD_AUTH", body
    st, _, body, _ = _raw_auth(gw.port, ["X-Original-URI: /s/x", "x-original-uri: /pub/x"])
    assert st == 400 and json.loads(body)["code"] == "AMBIGUOUS_FORWARD_AUTH", body
    st, _, _, _ = _raw_auth(gw.port, ["X-Original-URI: /pub/x", "X-Original-URI: /pub/x"])
    assert st == 200


@pytest.mark.parametrize("hdrs", [
    {"X-Original-Method": "GET", "X-Forwarded-Method": "DELETE"},
    {"X-Original-Host": "a.example", "X-Forwarded-Host": "b.example"},
])
def test_disagreeing_method_or_host_is_refused(gw, hdrs):
    G.assert_gw_error(_auth(gw, "/pub/x", **hdrs), 400, "AMBIGUOUS_FORWARD_AUTH")


def test_malformed_method_or_host_is_400(gw):
    G.assert_gw_error(_auth(gw, "/pub/x", **{"X-Original-Method": "get me"}), 400, "BAD_FORWARD_AUTH")
    G.assert_gw_error(_auth(gw, "/pub/x", **{"X-Original-Host": "a/b"}), 400, "BAD_FORWARD_AUTH")


@pytest.fixture(scope="module")
def fa_gateways(pg, redis_srv, live_authsvc, secret, routes, gw_dir):
    """Gateways of other FORWARD_AUTH_* settings, shared by this module's tests."""
    made = {}

    def get(name, env):
        if name not in made:
            made[name] = G.Gateway({**G.gw_base_env(pg, redis_srv, secret), **env}, routes,
                                   workdir=gw_dir, name=f"gateway-fa-{name}")
        return made[name]

    yield get
    G.check_stopped(*made.values())


def test_traefik_reads_x_forwarded_uri_only(fa_gateways, mod_user):
    g = fa_gateways("traefik", {"FORWARD_AUTH_PROXY": "traefik"})
    r = _auth(g, fwd="/s/x", **G.cookie(mod_user), **{"X-Forwarded-Method": "POST",
                                                        "X-Forwarded-Host": "app.example",
                                                        "Origin": "http://app.example"})
    assert r.status_code == 200 and r.headers.get("x-user-id") == mod_user.id
    G.assert_gw_error(_auth(g, uri="/s/x", **G.cookie(mod_user)), 400, "MISSING_ORIGINAL_URI")
    G.assert_gw_error(_auth(g, "/pub/x", "/s/x"), 400, "AMBIGUOUS_FORWARD_AUTH")
    assert _auth(g, fwd="/s/x").status_code == 401


def test_named_header(fa_gateways, mod_user):
    g = fa_gateways("named", {"FORWARD_AUTH_URI_HEADER": "X-Auth-Uri"})
    assert _auth(g, **G.cookie(mod_user), **{"X-Auth-Uri": "/s/x"}).status_code == 200
    G.assert_gw_error(_auth(g, "/s/x", **G.cookie(mod_user)), 400, "MISSING_ORIGINAL_URI")
    # the named one disagreeing with a known one
    G.assert_gw_error(_auth(g, **{"X-Auth-Uri": "/s/x", "X-Original-URI": "/pub/x"}), 400,
                      "AMBIGUOUS_FORWARD_AUTH")


def test_envoy_takes_the_request_itself(fa_gateways, mod_user):
    """ext_authz (HTTP, path_prefix /_auth) sends the original method and path."""
    g = fa_gateways("envoy", {"FORWARD_AUTH_PROXY": "envoy"})
    r = g.request("POST", "/_auth/s/x?a=1", headers={**G.cookie(mod_user), **G.same_origin(g)})
    assert r.status_code == 200 and r.headers.get("x-user-id") == mod_user.id, r.text
    G.assert_gw_error(g.get("/_auth/s/x"), 401)
    assert g.get("/_auth/pub/x").status_code == 200
    G.assert_gw_error(g.get("/_auth/s/x", headers={"X-Original-URI": "/pub/x"}), 400,
                      "AMBIGUOUS_FORWARD_AUTH")
    G.assert_gw_error(g.get("/_auth/nowhere"), 404)
    # requests would normalise the dot segment away: send it as is
    st, _, body, _ = G.raw_http(g.port, b"GET /_auth/pub/../s/x HTTP/1.1\r\nHost: a\r\n"
                                b"Connection: close\r\n\r\n")
    assert st == 400 and json.loads(body)["code"] == "BAD_PATH", body


def test_access_log_has_the_original_method_and_host(fa_gateways, mod_user):
    g = fa_gateways("traefik", {"FORWARD_AUTH_PROXY": "traefik"})
    r = _auth(g, fwd="/pub/logged", **{"X-Forwarded-Method": "PATCH",
                                       "X-Forwarded-Host": "logged.example"})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]

    def line():
        for ln in g.log_path.read_text(errors="replace").splitlines():
            if rid in ln:
                return json.loads(ln)
        return None
    H.wait_until(lambda: line() is not None, 5, what="access log line")
    entry = line()
    assert entry["path"] == "/pub/logged" and entry["orig_method"] == "PATCH", entry
    assert entry["orig_host"] == "logged.example", entry


def _run(env, timeout=10):
    return H.run_bounded([H.binary("gateway")], env=G.gateway_env(env), timeout=timeout)


@pytest.mark.parametrize("env,needle", [
    ({"FORWARD_AUTH_PROXY": "haproxy"}, "FORWARD_AUTH_PROXY"),
    ({"FORWARD_AUTH_URI_HEADER": "X Bad"}, "FORWARD_AUTH_URI_HEADER"),
    ({"FORWARD_AUTH_METHOD_HEADER": "X:y"}, "FORWARD_AUTH_METHOD_HEADER"),
    ({"FORWARD_AUTH_HOST_HEADER": "a" * 65}, "FORWARD_AUTH_HOST_HEADER"),
    ({"FORWARD_AUTH_PROXY": "envoy", "FORWARD_AUTH_URI_HEADER": "X-Original-URI"},
     "FORWARD_AUTH_URI_HEADER"),
])
def test_bad_forward_auth_config_stops_the_gateway(tmp_path, env, needle):
    base = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "c" * 40,
            "REDIS_URL": "redis://127.0.0.1:1", "GATEWAY_LISTEN": f"127.0.0.1:{H.free_port()}",
            "UPSTREAM_URL": "http://127.0.0.1:9"}
    r = _run({**base, **env})
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2 and needle in err, (r.returncode, err)


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
