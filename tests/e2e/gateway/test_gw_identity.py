"""What reaches the upstream: the identity headers the gateway adds, and never the
credential itself (issue 3, "Proxy"); method, path, query and body forwarded."""

import json
import os

import pytest

import pcsupport as H
import pcsupport as G

IDENTITY = ("x-user-id", "x-user-email", "x-auth-method", "x-session-id", "x-api-key-id")


def assert_no_credential(h, *values):
    assert "authorization" not in h, h
    assert "x-api-key" not in h, h
    assert "better-auth" not in h.get("cookie", ""), h
    blob = json.dumps(h)
    for v in values:
        assert v not in blob, "credential reached the upstream"


@pytest.mark.parametrize("kind", ["cookie", "bearer_signed", "bearer_raw"])
def test_session_identity_headers(gw, sql, mod_user, kind):
    cred = {"cookie": G.cookie(mod_user), "bearer_signed": G.bearer(mod_user.signed),
            "bearer_raw": G.bearer(mod_user.token)}[kind]
    body = G.echo(gw.get("/m/who", headers=cred))
    h = body["headers"]
    assert h["x-user-id"] == mod_user.id
    assert h["x-user-email"] == mod_user.email
    assert h["x-auth-method"] == "session"
    assert h["x-session-id"] == sql.session_id(mod_user.token)
    assert "x-api-key-id" not in h
    assert h["x-forwarded-for"] == "127.0.0.1", h
    assert h["x-forwarded-proto"] == "http", h
    assert len(h.get("x-request-id", "")) >= 16, h
    assert_no_credential(h, mod_user.token)


@pytest.mark.parametrize("src", ["x-api-key", "bearer", "path"])
def test_api_key_identity_headers(gw, mod_user, mod_key, src):
    if src == "path":
        r = gw.get(f"/oc/{mod_key.key}/a/b")
    else:
        r = gw.get("/m/a/b", headers={"x-api-key": mod_key.key} if src == "x-api-key" else G.bearer(mod_key.key))
    body = G.echo(r)
    h = body["headers"]
    assert h["x-user-id"] == mod_user.id
    assert h["x-auth-method"] == "api_key"
    assert h["x-api-key-id"] == mod_key.id
    assert "x-session-id" not in h
    assert h["x-forwarded-for"] == "127.0.0.1" and h["x-forwarded-proto"] == "http"
    assert h.get("x-request-id")
    assert_no_credential(h, mod_key.key)
    assert mod_key.key not in body["path"] and mod_key.key not in (body["query"] or "")
    if src == "path":
        assert body["path"] == "/oc/a/b", body["path"]


def test_path_segment_removed_keeps_rest_and_query(gw, mod_key):
    body = G.echo(gw.get(f"/oc/{mod_key.key}/session/x%20y/?a=1&b=%2F"))
    assert body["path"] == "/oc/session/x%20y/", body["path"]
    assert body["query"] == "a=1&b=%2F"
    body = G.echo(gw.get(f"/oc/{mod_key.key}"))
    assert mod_key.key not in body["path"]
    assert body["path"] in ("/oc", "/oc/"), body["path"]


def test_spoofed_identity_headers_are_replaced(gw, mod_user, mod_key):
    spoof = {"X-User-Id": "admin", "X-User-Email": "root@evil.test", "X-Auth-Method": "jwt",
             "X-Session-Id": "forged-session", "X-Api-Key-Id": "forged-key",
             "X-Forwarded-Proto": "https"}
    for cred, method in ((G.cookie(mod_user), "session"), ({"x-api-key": mod_key.key}, "api_key")):
        h = G.echo(gw.get("/m/x", headers={**spoof, **cred}))["headers"]
        assert h["x-user-id"] == mod_user.id
        assert h["x-user-email"] == mod_user.email if method == "session" else h.get("x-user-email") != "root@evil.test"
        assert h["x-auth-method"] == method
        assert "forged" not in json.dumps(h), h
        assert h["x-forwarded-proto"] == "http"
    # public route: no identity at all, and the spoofed ones do not pass either
    h = G.echo(gw.get("/pub/x", headers=spoof))["headers"]
    for k in IDENTITY:
        assert k not in h, (k, h)


def test_spoofed_headers_with_odd_case_and_duplicates(gw, mod_user):
    raw = (f"GET /m/x HTTP/1.1\r\nHost: t\r\nCookie: {mod_user.cookie}\r\n"
           "x-USER-id: admin\r\nX-User-Id: admin2\r\nConnection: close\r\n\r\n").encode()
    status, _, body, _ = G.raw_http(gw.port, raw)
    assert status == 200, body[:300]
    h = json.loads(body)["headers"]
    assert h["x-user-id"] == mod_user.id, h


def test_client_request_id_kept_when_well_formed(gw, mod_user):
    rid = "client-" + os.urandom(8).hex()
    r = gw.get("/m/x", headers={"X-Request-Id": rid, **G.cookie(mod_user)})
    assert G.echo(r)["headers"]["x-request-id"] == rid
    assert r.headers.get("x-request-id") == rid


@pytest.mark.parametrize("bad", ["has space", "x" * 65, "semi;colon", "quote\"", "ünïcode"])
def test_malformed_request_id_replaced(gw, mod_user, bad):
    r = gw.get("/m/x", headers={"X-Request-Id": bad.encode("utf-8"), **G.cookie(mod_user)})
    got = G.echo(r)["headers"]["x-request-id"]
    assert got != bad and got.isalnum() and len(got) >= 16, got


def test_x_forwarded_for_from_a_stranger_is_replaced(gw, mod_user):
    """Without TRUSTED_PROXIES nobody vouches for the client's X-Forwarded-For: the
    upstream gets the peer alone (test_gw_route_rules.py: kept from a trusted proxy)."""
    h = G.echo(gw.get("/m/x", headers={"X-Forwarded-For": "203.0.113.7", **G.cookie(mod_user)}))["headers"]
    assert h["x-forwarded-for"] == "127.0.0.1", h


def test_hop_by_hop_headers_dropped_end_to_end_kept(gw, mod_user):
    h = G.echo(gw.get("/m/x", headers={
        "X-Custom": "kept", "Accept": "application/x-test", "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "1", "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "TE": "trailers", "Upgrade": "websocket", **G.cookie(mod_user)}))["headers"]
    assert h.get("x-custom") == "kept" and h.get("accept") == "application/x-test", h
    for k in ("x-drop-me", "keep-alive", "proxy-authorization", "te", "upgrade"):
        assert k not in h, (k, h)


def test_unused_credential_of_other_kind_is_forwarded_untouched(gw, mod_user, mod_key):
    """Only the credential the gateway consumed is removed (x-api-key was the credential,
    the session cookie is still never forwarded on a route without forward_cookies)."""
    h = G.echo(gw.get("/m/x", headers={"x-api-key": mod_key.key, **G.cookie(mod_user)}))["headers"]
    assert h["x-auth-method"] == "api_key"
    assert_no_credential(h, mod_key.key, mod_user.token)


def test_forward_cookies_route_strips_better_auth_cookies(gw, mod_user):
    c = f"theme=dark; {mod_user.cookie}; better-auth.session_data=abc; lang=en"
    h = G.echo(gw.get("/fc/x", headers={"Cookie": c}))["headers"]
    assert h["x-auth-method"] == "session"
    assert h.get("cookie") == "theme=dark; lang=en", h.get("cookie")
    assert_no_credential(h, mod_user.token)
    # without forward_cookies no cookie at all goes upstream
    h = G.echo(gw.get("/s/x", headers={"Cookie": c}))["headers"]
    assert "cookie" not in h, h


def test_upstream_status_and_headers_relayed(gw, mod_user):
    for code in (201, 404, 418, 500, 503):
        r = gw.get(f"/status/{code}", headers=G.cookie(mod_user))
        assert r.status_code == code, r.text[:200]
        assert r.headers.get("content-type") == "application/json"
        assert r.json()["path"] == f"/status/{code}"


def test_keep_alive_reuse_does_not_leak_identity(gw, mod_user, keys, sql, live_authsvc):
    """Many requests from two principals over one client connection: each upstream
    request carries its own identity."""
    other = H.ApiClient(live_authsvc).sign_up(name="Other")
    k = keys.create(other.id)
    for i in range(20):
        if i % 2:
            h = G.echo(gw.get("/m/x", headers=G.cookie(mod_user)))["headers"]
            assert h["x-user-id"] == mod_user.id and "x-api-key-id" not in h
        else:
            h = G.echo(gw.get("/m/x", headers={"x-api-key": k.key}))["headers"]
            assert h["x-user-id"] == other.id and "x-session-id" not in h
