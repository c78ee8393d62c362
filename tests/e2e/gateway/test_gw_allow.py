"""A route's "allow" rules (issue 16): sessions and JWTs pass only when the caller's
email is listed, by domain ("email_domains", exactly the part after the '@') or whole
("emails"), and verified: 403 EMAIL_NOT_ALLOWED / EMAIL_NOT_VERIFIED otherwise. The
email and its verified flag come through every layer (L1, authsvc's Redis entry,
PostgreSQL, a JWT's claims); the same verdict answers forward auth. An API key has
no email to judge, so a route with "allow" may not accept one."""

import json
import os

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.suite import SECRET


def _routes(up, authsvc):
    return {
        "jwt_issuers": [{"issuer": authsvc.origin, "jwks_uri": authsvc.api("/jwks")}],
        "routes": [
            {"prefix": "/dom/", "upstream": up, "auth": ["session", "jwt"],
             "allow": {"email_domains": ["Corp.Test"]}},
            {"prefix": "/one/", "upstream": up, "auth": ["session"],
             "allow": {"emails": ["Boss@Other.Test"], "email_domains": ["corp.test"]}},
            {"prefix": "/open/", "upstream": up, "auth": ["session", "jwt"]},
        ]}


def _user(svc, sql, domain, verified):
    c = H.ApiClient(svc)
    try:
        email = f"a{os.urandom(4).hex()}@{domain}"
        u = c.sign_up(email=email)
        if verified:
            sql.execute('UPDATE "user" SET "emailVerified" = true WHERE "id" = %s', (u.id,))
            u = c.sign_in(u.email, u.password)   # a new session, read with the flag
        return u
    finally:
        c.close()


@pytest.fixture(scope="module")
def people(live_authsvc, sql):
    return {
        "corp": _user(live_authsvc, sql, "corp.test", True),
        "corp_unverified": _user(live_authsvc, sql, "corp.test", False),
        "sub": _user(live_authsvc, sql, "eu.corp.test", True),
        "other": _user(live_authsvc, sql, "other.test", True),
    }


@pytest.fixture(scope="module")
def boss(live_authsvc, sql):
    c = H.ApiClient(live_authsvc)
    try:
        u = c.sign_up(email="boss@other.test")
        sql.execute('UPDATE "user" SET "emailVerified" = true WHERE "id" = %s', (u.id,))
        return c.sign_in(u.email, u.password)
    finally:
        c.close()


def _gw(factory, upstream, authsvc, name, **env):
    return factory({"BETTER_AUTH_URL": authsvc.base_url, **env},
                   _routes(upstream.url, authsvc), name=name)


@pytest.fixture(scope="module")
def agw(pg, redis_srv, live_authsvc, secret, upstream, gw_dir):
    env = {**G.gw_base_env(pg, redis_srv, secret), "BETTER_AUTH_URL": live_authsvc.base_url}
    g = G.Gateway(env, _routes(upstream.url, live_authsvc), workdir=gw_dir, name="gateway-allow")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _get(g, path, **headers):
    return requests.get(f"http://127.0.0.1:{g.port}{path}", headers=headers, timeout=10)


def _refused(r, code):
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert r.json()["code"] == code, r.text


def _jwt(svc, u):
    c = H.ApiClient(svc)
    try:
        r = c.get("token", cookie=u.cookie)
        assert r.status_code == 200, r.text[:300]
        return r.json()["token"]
    finally:
        c.close()


def test_listed_domain_verified_passes(agw, people):
    for _ in range(2):      # the second from L1
        r = _get(agw, "/dom/x", Cookie=people["corp"].cookie)
        assert r.status_code == 200, r.text[:300]
        assert G.echo(r)["headers"]["x-user-email"] == people["corp"].email


def test_unverified_email_refused(agw, people):
    for _ in range(2):
        _refused(_get(agw, "/dom/x", Cookie=people["corp_unverified"].cookie), "EMAIL_NOT_VERIFIED")


def test_other_domain_and_subdomain_refused(agw, people):
    r = _get(agw, "/dom/x", Cookie=people["other"].cookie)
    _refused(r, "EMAIL_NOT_ALLOWED")
    assert "not allowed" in r.json()["message"]
    _refused(_get(agw, "/dom/x", Cookie=people["sub"].cookie), "EMAIL_NOT_ALLOWED")
    # the same users pass where no rule applies
    assert _get(agw, "/open/x", Cookie=people["other"].cookie).status_code == 200
    assert _get(agw, "/open/x", Cookie=people["corp_unverified"].cookie).status_code == 200


def test_exact_emails_beside_domains(agw, people, boss):
    assert _get(agw, "/one/x", Cookie=boss.cookie).status_code == 200
    assert _get(agw, "/one/x", Cookie=people["corp"].cookie).status_code == 200
    _refused(_get(agw, "/one/x", Cookie=people["other"].cookie), "EMAIL_NOT_ALLOWED")


def test_bearer_session_token_judged_the_same(agw, people):
    assert _get(agw, "/dom/x", **G.bearer(people["corp"].token)).status_code == 200
    _refused(_get(agw, "/dom/x", **G.bearer(people["other"].token)), "EMAIL_NOT_ALLOWED")


def test_jwts_judged_by_their_claims(agw, live_authsvc, people):
    good = _jwt(live_authsvc, people["corp"])
    r = _get(agw, "/dom/x", **G.bearer(good))
    assert r.status_code == 200, r.text[:300]
    assert G.echo(r)["headers"]["x-auth-method"] == "jwt"
    _refused(_get(agw, "/dom/x", **G.bearer(_jwt(live_authsvc, people["corp_unverified"]))),
             "EMAIL_NOT_VERIFIED")
    _refused(_get(agw, "/dom/x", **G.bearer(_jwt(live_authsvc, people["other"]))),
             "EMAIL_NOT_ALLOWED")


@pytest.mark.parametrize("env", [
    {"L1_MAX_ENTRIES": "0"},                              # authsvc's Redis entry
    {"L1_MAX_ENTRIES": "0", "L2_ENABLED": "false"},       # PostgreSQL every time
])
def test_every_layer_carries_the_flag(gateway_factory, upstream, live_authsvc, people, env):
    g = _gw(gateway_factory, upstream, live_authsvc, "gateway-allow-layers", **env)
    assert _get(g, "/dom/x", Cookie=people["corp"].cookie).status_code == 200
    _refused(_get(g, "/dom/x", Cookie=people["corp_unverified"].cookie), "EMAIL_NOT_VERIFIED")
    _refused(_get(g, "/dom/x", Cookie=people["other"].cookie), "EMAIL_NOT_ALLOWED")


def test_redis_entry_without_the_flag_is_read_from_postgres(gateway_factory, upstream,
                                                            live_authsvc, redis_srv, people):
    """An entry written before emailVerified was always there must not read as
    unverified (nor as verified): the gateway asks PostgreSQL and rewrites it."""
    u = people["corp"]
    r = redis_srv.client()
    keys = [k for k in r.keys("*s:*") if k]
    entry = None
    for k in keys:
        v = r.get(k)
        if v and u.id.encode() in v and b'"emailVerified":true' in v:
            entry = (k, json.loads(v))
            break
    assert entry, "authsvc wrote no Redis entry for the session"
    k, doc = entry
    del doc["user"]["emailVerified"]
    ttl = r.pttl(k)
    r.command("SET", k, json.dumps(doc), "PX", str(ttl if ttl > 0 else 60000))
    g = _gw(gateway_factory, upstream, live_authsvc, "gateway-allow-old", L1_MAX_ENTRIES="0")
    assert _get(g, "/dom/x", Cookie=u.cookie).status_code == 200
    assert b'"emailVerified":true' in r.get(k)


def test_forward_auth_answers_the_same(agw, people):
    h = {"X-Original-URI": "/dom/x", "X-Original-Method": "GET"}
    assert _get(agw, "/_auth", Cookie=people["corp"].cookie, **h).status_code == 200
    _refused(_get(agw, "/_auth", Cookie=people["other"].cookie, **h), "EMAIL_NOT_ALLOWED")


@pytest.mark.parametrize("allow,auth,needle", [
    ({"email_domains": ["corp.test"]}, ["session", "api_key"], "routes[0].allow: only on"),
    ({"email_domains": ["corp.test"]}, ["none"], "routes[0].allow: only on"),
    ({}, ["session"], "routes[0].allow: needs"),
    ({"email_domains": []}, ["session"], "routes[0].allow.email_domains"),
    ({"email_domains": ["@corp.test"]}, ["session"], "routes[0].allow.email_domains[0]"),
    ({"email_domains": ["*.corp.test"]}, ["session"], "routes[0].allow.email_domains[0]"),
    ({"emails": ["nobody"]}, ["session"], "routes[0].allow.emails[0]"),
    ({"emails": ["a@b@c"]}, ["session"], "routes[0].allow.emails[0]"),
    ({"roles": ["admin"]}, ["session"], "routes[0].allow.roles"),
    (["corp.test"], ["session"], "routes[0].allow"),
])
def test_bad_allow_stops_the_gateway(tmp_path, allow, auth, needle):
    f = tmp_path / "routes.json"
    f.write_text(json.dumps({"routes": [{"prefix": "/x/", "upstream": "http://127.0.0.1:9",
                                         "auth": auth, "allow": allow}]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "GATEWAY_ROUTES": str(f)}
    r = H.run_bounded([H.binary("gateway"), "--check"], env=G.gateway_env(env), timeout=10)
    assert r.returncode != 0 and needle.encode() in r.stderr, r.stderr
