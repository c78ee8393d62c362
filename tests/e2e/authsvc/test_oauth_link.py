"""Issue 18: link-social and account-info, as Better Auth 1.7.25 answers them.

The fake provider (fake_idp.py: a real HTTP server on loopback with real RS256
ID tokens, PKCE, client credentials, userinfo and refresh grants) stands in for
Google and for a generic OIDC issuer. A link walks the browser flow: POST
/link-social with the session cookie -> the provider's /authorize -> GET
/callback/google with the state cookie; then the rows PostgreSQL really holds.
"""

from __future__ import annotations

import json
import secrets
import types
import urllib.parse

import pytest
import requests

import pcsupport as H
from pcsupport.suite import base_env, check_stopped as _check_stopped
from pcsupport.fake_idp import FakeIdP

APP = "http://app.example.test"
STATE_COOKIE = "better-auth.state"


def glogin(idp, **claims):
    """The next Google sign-in: a Workspace account of the allowed domain."""
    claims.setdefault("hd", "acme.test")
    return idp.login(**claims)


def email(domain="acme.test"):
    return f"l-{secrets.token_hex(5)}@{domain}"


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as p:
        yield p


@pytest.fixture(scope="module")
def acme():
    with FakeIdP(issuer_path="/realms/acme") as p:
        yield p


@pytest.fixture(autouse=True)
def _reset(request):
    for name in ("idp", "acme"):
        if name in request.fixturenames:
            p = request.getfixturevalue(name)
            p.fail.clear()
            p.refresh_rotates = False
            p.id_token_overrides = {}
    yield


@pytest.fixture(scope="module")
def lsvc(pg, redis_srv, tmp_root, idp, acme):
    """authsvc with Google and an OIDC provider pointed at fake providers."""
    env = base_env(pg, redis_srv)
    env.update({**idp.google_env(), **acme.oidc_env("acme"), "OIDC_PROVIDERS": "acme",
                "ALLOWED_DOMAINS": "acme.test", "OAUTH_HTTP_TIMEOUT_MS": "3000"})
    svc = H.Authsvc(env, workdir=str(tmp_root / "oauth-link"), name="authsvc-link")
    try:
        yield svc
    finally:
        _check_stopped(svc)


@pytest.fixture
def client(lsvc):
    c = H.ApiClient(lsvc, origin=APP)
    yield c
    c.close()


def start_link(client, user, provider="google", **body):
    body = {"provider": provider, "callbackURL": "/settings", "errorCallbackURL": "/oops", **body}
    return client.post("link-social", json=body, cookie=user.cookie)


def link(client, user, provider="google", before_callback=None, **body):
    """The browser's walk: link-social, the provider, the callback. Returns a
    namespace with the three answers and the callback's Location."""
    f = types.SimpleNamespace()
    f.start = start_link(client, user, provider, **body)
    assert f.start.status_code == 200, f.start.text
    url = f.start.json()["url"]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]
    H.sensitive(state)
    sc = H.set_cookies(f.start)[STATE_COOKIE][0]
    H.sensitive(sc)
    f.authorize = requests.get(url, allow_redirects=False, timeout=20)
    assert f.authorize.status_code == 302, f.authorize.text
    if before_callback:
        before_callback(state)
    f.callback = requests.get(f.authorize.headers["Location"], allow_redirects=False, timeout=30,
                              headers={"Cookie": f"{STATE_COOKIE}={sc}; {user.cookie}"})
    f.location = f.callback.headers.get("Location")
    return f


def accounts_of(db, user_id):
    return db.dicts('select "providerId", "accountId", "scope" from account where "userId" = %s '
                    'order by "providerId"', (user_id,))


def test_link_social_redirect_links_without_a_new_session(client, idp, db):
    e = email()
    u = client.sign_up(e)
    claims = glogin(idp, email=e.upper())     # the provider's case is not ours
    sessions = db.scalar('select count(*) from session where "userId" = %s', (u.id,))
    f = link(client, u, scopes=["https://example.test/extra"])
    assert f.start.json()["redirect"] is True and f.start.headers["Location"] == f.start.json()["url"]
    auth_q = urllib.parse.parse_qs(urllib.parse.urlsplit(f.start.json()["url"]).query)
    assert auth_q["code_challenge_method"] == ["S256"]
    assert "https://example.test/extra" in auth_q["scope"][0].split()
    assert f.callback.status_code == 302 and f.location == "/settings", f.callback.text
    assert accounts_of(db, u.id)[1]["providerId"] == "google"
    assert accounts_of(db, u.id)[1]["accountId"] == claims["sub"]
    assert H.SESSION_COOKIE not in H.set_cookies(f.callback)
    assert db.scalar('select count(*) from session where "userId" = %s', (u.id,)) == sessions
    listed = client.get("list-accounts", cookie=u.cookie).json()
    assert sorted(a["providerId"] for a in listed) == ["credential", "google"]
    # the same account again: its tokens refreshed, no second row
    f = link(client, u)
    assert f.location == "/settings"
    assert db.scalar('select count(*) from account where "userId" = %s', (u.id,)) == 2


def test_link_state_row_is_better_auths(client, idp, db, secret):
    e = email()
    u = client.sign_up(e)
    glogin(idp, email=e)
    r = start_link(client, u)
    url = r.json()["url"]
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]
    H.sensitive(state)
    row = db.scalar('select value from verification where identifier = %s', (f"auth-state:{state}",))
    v = json.loads(row)
    assert list(v) == ["callbackURL", "codeVerifier", "errorURL", "link", "expiresAt", "oauthState"]
    assert list(v["link"]) == ["userId", "email", "encryptedSessionToken"]
    assert v["link"]["userId"] == u.id and v["link"]["email"] == e
    H.sensitive(v["codeVerifier"])
    H.sensitive(v["link"]["encryptedSessionToken"])
    # bare hex (one secret): nonce(24) + token(32) + tag(16)
    assert len(v["link"]["encryptedSessionToken"]) == 2 * (24 + 32 + 16)


@pytest.mark.parametrize("case", ["other_email", "unverified", "other_user", "session_gone",
                                  "other_domain"])
def test_link_callback_refusals(client, idp, db, case):
    e = email()
    u = client.sign_up(e)
    expect = {"other_email": "email_does_not_match", "unverified": "unable_to_link_account",
              "other_user": "account_already_linked_to_different_user",
              "session_gone": "unable_to_link_account", "other_domain": "domain_not_allowed"}[case]
    before_callback = None
    if case == "other_email":
        glogin(idp, email=email())
    elif case == "unverified":
        glogin(idp, email=e, email_verified=False)
    elif case == "other_domain":
        glogin(idp, email=email("outsider.test"))
    elif case == "other_user":
        someone = client.sign_up(email())
        claims = glogin(idp, email=someone.email)
        assert link(client, someone).location == "/settings"
        glogin(idp, sub=claims["sub"], email=e)
    else:
        glogin(idp, email=e)

        def before_callback(_state):
            r = client.post("revoke-sessions", json={}, cookie=u.cookie)
            assert r.status_code == 200, r.text
    f = link(client, u, before_callback=before_callback)
    assert f.location == f"/oops?error={expect}", f.location
    assert [a["providerId"] for a in accounts_of(db, u.id)] == ["credential"]


def test_link_social_refusals_before_the_provider(client, lsvc):
    r = requests.post(lsvc.api("link-social"), json={"provider": "google"}, timeout=10)
    H.assert_error(r, 401, "UNAUTHORIZED")
    u = client.sign_up(email())
    H.assert_error(start_link(client, u, provider="nope"), 404, "PROVIDER_NOT_FOUND")
    r = client.post("link-social", json={}, cookie=u.cookie)
    H.assert_error(r, 400, "VALIDATION_ERROR")
    r = start_link(client, u, callbackURL="https://evil.example/")
    H.assert_error(r, 403, "INVALID_CALLBACK_URL")


def test_link_social_with_an_id_token(client, idp, db):
    e = email()
    u = client.sign_up(e)
    claims = glogin(idp, email=e)
    r = start_link(client, u, idToken={"token": idp.id_token(claims)})
    assert r.status_code == 200, r.text
    assert r.json() == {"url": "", "status": True, "redirect": False}
    assert accounts_of(db, u.id)[1]["accountId"] == claims["sub"]
    assert H.SESSION_COOKIE not in H.set_cookies(r)
    # again: the same user's account, refreshed
    r = start_link(client, u, idToken={"token": idp.id_token(claims)})
    assert r.json() == {"url": "", "status": True, "redirect": False}
    # another user's provider account
    v = client.sign_up(email())
    r = start_link(client, v, idToken={"token": idp.id_token({**claims, "email": v.email})})
    H.assert_error(r, 409, "SOCIAL_ACCOUNT_ALREADY_LINKED")
    other = glogin(idp, email=email())
    r = start_link(client, v, idToken={"token": idp.id_token(other)})
    H.assert_error(r, 401, "LINKING_DIFFERENT_EMAILS_NOT_ALLOWED")
    unverified = glogin(idp, email=v.email, email_verified=False)
    r = start_link(client, v, idToken={"token": idp.id_token(unverified)})
    H.assert_error(r, 401, "LINKING_NOT_ALLOWED")
    idp.sign_with_foreign_key = True
    try:
        r = start_link(client, v, idToken={"token": idp.id_token(glogin(idp, email=v.email))})
    finally:
        idp.sign_with_foreign_key = False
    H.assert_error(r, 401, "INVALID_TOKEN")
    assert [a["providerId"] for a in accounts_of(db, v.id)] == ["credential"]


def _google_account(client, idp, db):
    e = email()
    u = client.sign_up(e)
    claims = glogin(idp, email=e, name="Linked Person")
    assert link(client, u).location == "/settings"
    row = db.scalar('select id from account where "userId" = %s and "providerId" = %s',
                    (u.id, "google"))
    return u, claims, row


def test_account_info_google_reads_the_id_token(client, idp, db):
    u, claims, row = _google_account(client, idp, db)
    r = client.get("account-info", params={"accountId": row}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["user", "data", "account"]
    assert body["user"] == {"name": "Linked Person", "email": claims["email"],
                            "image": claims["picture"], "emailVerified": True}
    assert body["data"]["sub"] == claims["sub"] and body["data"]["hd"] == "acme.test"
    assert body["account"] == {"id": row, "providerId": "google", "accountId": claims["sub"]}


def test_account_info_refreshes_an_expired_access_token(client, idp, db):
    u, claims, row = _google_account(client, idp, db)
    old = db.scalar('select "accessToken" from account where id = %s', (row,))
    db.execute('update account set "accessTokenExpiresAt" = now() - interval \'1 minute\' '
               'where id = %s', (row,))
    idp.refresh_rotates = True
    seen = len([x for x in idp.seen("token") if x[2].get("grant_type") == "refresh_token"])
    r = client.get("account-info", params={"accountId": row}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    refreshes = [x for x in idp.seen("token") if x[2].get("grant_type") == "refresh_token"]
    assert len(refreshes) == seen + 1
    assert refreshes[-1][2]["client_id"] == idp.client_id
    new = db.dicts('select "accessToken", "refreshToken", "idToken", '
                   '"accessTokenExpiresAt" > now() as fresh from account where id = %s', (row,))[0]
    assert new["accessToken"] != old and new["fresh"] and new["idToken"]
    assert new["refreshToken"] == refreshes[-1][2]["refresh_token"] or new["refreshToken"] in idp.refresh
    # the provider refuses the refresh: Better Auth's answer, nothing stored
    db.execute('update account set "accessTokenExpiresAt" = now() - interval \'1 minute\' '
               'where id = %s', (row,))
    idp.fail["token"] = 400
    r = client.get("account-info", params={"accountId": row}, cookie=u.cookie)
    H.assert_error(r, 400, "FAILED_TO_GET_ACCESS_TOKEN")
    assert db.scalar('select "accessToken" from account where id = %s', (row,)) == new["accessToken"]


def test_account_info_oidc_asks_userinfo(client, acme, db):
    e = email()
    u = client.sign_up(e)
    claims = acme.login(email=e, name="Acme Person", department="ops")
    f = link(client, u, provider="acme")
    assert f.location == "/settings", f.location
    row = db.scalar('select id from account where "userId" = %s and "providerId" = %s',
                    (u.id, "acme"))
    seen = len(acme.seen("userinfo"))
    r = client.get("account-info", params={"accountId": row}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    assert len(acme.seen("userinfo")) == seen + 1
    body = r.json()
    assert body["user"]["name"] == "Acme Person" and body["data"]["department"] == "ops"
    assert body["account"]["providerId"] == "acme" and body["account"]["accountId"] == claims["sub"]
    acme.fail["userinfo"] = 500
    r = client.get("account-info", params={"accountId": row}, cookie=u.cookie)
    H.assert_error(r, 401, "FAILED_TO_GET_USER_INFO")


def test_account_info_refusals(client, idp, db, lsvc):
    u, _claims, row = _google_account(client, idp, db)
    r = requests.get(lsvc.api("account-info"), params={"accountId": row}, timeout=10)
    H.assert_error(r, 401, "UNAUTHORIZED")
    H.assert_error(client.get("account-info", cookie=u.cookie), 400, "VALIDATION_ERROR")
    other = client.sign_up(email())
    r = client.get("account-info", params={"accountId": row}, cookie=other.cookie)
    H.assert_error(r, 400, "ACCOUNT_NOT_FOUND")
    cred = db.scalar('select id from account where "userId" = %s and "providerId" = %s',
                     (u.id, "credential"))
    r = client.get("account-info", params={"accountId": cred}, cookie=u.cookie)
    H.assert_error(r, 400, "PROVIDER_NOT_CONFIGURED")
    db.execute('update account set "accessToken" = null where id = %s', (row,))
    r = client.get("account-info", params={"accountId": row}, cookie=u.cookie)
    H.assert_error(r, 400, "ACCESS_TOKEN_NOT_FOUND")
