"""verify-password, list-accounts, unlink-account, update-session, change-email and
delete-user: Better Auth's account routes, each on its own authsvc and database,
mail read from a real SMTP server (pcsupport.SmtpSink)."""

from __future__ import annotations

import time
import urllib.parse

import pytest

import pcsupport as H
from pcsupport import assert_error
from pcsupport.checks import sensitive

APP = "http://app.example.test"


@pytest.fixture
def mk(authsvc_factory, smtp_sink):
    def make(**env):
        e = {"SMTP_URL": smtp_sink.url, "MAIL_FROM": "T <no-reply@portcullis.test>",
             "MAIL_RETRY_MAX_SECONDS": "1"}
        e.update(env)
        svc = authsvc_factory(e, fresh_db=True, name="authsvc-account")
        return svc, H.ApiClient(svc, origin=APP)
    return make


def _sql(svc, q, *args):
    import psycopg2
    with psycopg2.connect(svc.env["DATABASE_URL"]) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else cur.rowcount


def _link(sink, to, part, count=1):
    m = sink.wait_for(to, count=count)[count - 1]
    links = [u for u in H.SmtpSink.links(m) if part in u]
    assert len(links) == 1, links
    return m, sensitive(links[0])


def _pq(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def test_verify_password(mk):
    svc, c = mk()
    u = c.sign_up()
    r = c.post("verify-password", {"password": u.password}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    assert_error(c.post("verify-password", {"password": "wrong-password-9"}, bearer=u.token), 400,
                 "INVALID_PASSWORD")
    assert_error(c.post("verify-password", {"password": u.password}), 401)
    assert_error(c.post("verify-password", {}, bearer=u.token), 400, "VALIDATION_ERROR")


def test_list_and_unlink_accounts(mk):
    svc, c = mk(SESSION_FRESH_AGE_SECONDS="2")
    u = c.sign_up()
    _sql(svc, 'insert into account (id, "accountId", "providerId", "userId", scope, "accessToken", '
              '"createdAt", "updatedAt") values (%s, %s, %s, %s, %s, %s, now(), now())',
         "acc-google-1", "g-123", "google", u.id, "openid, email,,profile", "secret-access-token")
    r = c.get("list-accounts", bearer=u.token)
    assert r.status_code == 200, r.text
    accts = {a["providerId"]: a for a in r.json()}
    assert set(accts) == {"credential", "google"}
    g = accts["google"]
    assert g["scopes"] == ["openid", "email", "profile"] and g["accountId"] == "g-123"
    assert set(g) == {"id", "accountId", "providerId", "userId", "createdAt", "updatedAt", "scopes"}
    assert "secret-access-token" not in r.text and "password" not in r.text
    assert accts["credential"]["scopes"] == []
    # another user's account cannot be unlinked (v's own last account is checked
    # first, as Better Auth does); an unknown one is not found
    v = c.sign_up()
    assert_error(c.post("unlink-account", {"accountId": accts["credential"]["id"]}, bearer=v.token),
                 400, "FAILED_TO_UNLINK_LAST_ACCOUNT")
    _sql(svc, 'insert into account (id, "accountId", "providerId", "userId", "createdAt", "updatedAt") '
              "values ('acc-v-2', 'v-2', 'oidc', %s, now(), now())", v.id)
    assert_error(c.post("unlink-account", {"accountId": accts["credential"]["id"]}, bearer=v.token),
                 400, "ACCOUNT_NOT_FOUND")
    assert_error(c.post("unlink-account", {"accountId": "nope"}, bearer=u.token), 400,
                 "ACCOUNT_NOT_FOUND")
    r = c.post("unlink-account", {"accountId": "acc-google-1"}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    # never the last way to sign in
    assert_error(c.post("unlink-account", {"accountId": accts["credential"]["id"]}, bearer=u.token),
                 400, "FAILED_TO_UNLINK_LAST_ACCOUNT")
    assert _sql(svc, 'select count(*) from account where "userId" = %s', u.id) == [(1,)]
    # a session older than SESSION_FRESH_AGE_SECONDS may not unlink
    time.sleep(2.1)
    assert_error(c.post("unlink-account", {"accountId": "nope"}, bearer=u.token), 403,
                 "SESSION_NOT_FRESH")


def test_update_session_has_nothing_to_update(mk):
    svc, c = mk()
    u = c.sign_up()
    assert_error(c.post("update-session", {"ipAddress": "1.2.3.4"}, bearer=u.token), 400,
                 "NO_FIELDS_TO_UPDATE")
    assert_error(c.post("update-session", {}), 401)


def test_change_email_verification_link(mk, smtp_sink):
    svc, c = mk(CHANGE_EMAIL_ENABLED="true")
    u = c.sign_up()
    new = H.unique_email("new")
    assert_error(c.post("change-email", {"newEmail": u.email}, bearer=u.token), 400,
                 "EMAIL_IS_THE_SAME")
    assert_error(c.post("change-email", {"newEmail": new, "callbackURL": "https://evil.example/"},
                        bearer=u.token), 403, "INVALID_CALLBACK_URL")
    # an address in use: the same answer, no mail
    taken = c.sign_up()
    r = c.post("change-email", {"newEmail": taken.email}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"status": True}
    r = c.post("change-email", {"newEmail": new.upper(), "callbackURL": "/settings"}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    m, link = _link(smtp_sink, new, "/verify-email?")
    smtp_sink.assert_none(taken.email)
    assert _sql(svc, 'select email from "user" where id = %s', u.id) == [(u.email,)]
    r = c.get(_pq(link))
    assert r.status_code == 302 and r.headers["Location"] == "/settings", r.text
    assert _sql(svc, 'select email from "user" where id = %s', u.id) == [(new,)]
    assert c.session_of(u)["user"]["email"] == new
    c.sign_in(new, u.password)
    # another user's session may not consume it
    r = c.get(_pq(link), bearer=taken.token)
    assert r.status_code == 302 and "error=" in r.headers["Location"]


def test_change_email_with_confirmation_from_the_old_address(mk, smtp_sink):
    svc, c = mk(CHANGE_EMAIL_ENABLED="true", CHANGE_EMAIL_SEND_CONFIRMATION="true")
    u = c.sign_up()
    _sql(svc, 'update "user" set "emailVerified" = true where id = %s', u.id)
    new = H.unique_email("new")
    assert c.post("change-email", {"newEmail": new}, bearer=u.token).status_code == 200
    m, link = _link(smtp_sink, u.email, "/verify-email?")
    assert new in m.text and "Approve" in m.subject
    smtp_sink.assert_none(new)
    r = c.get(_pq(link))        # the link carries callbackURL=/ (as Better Auth's)
    assert r.status_code == 302 and r.headers["Location"] == "/", r.text
    _, link2 = _link(smtp_sink, new, "/verify-email?")
    r = c.get("verify-email", params={"token": dict(urllib.parse.parse_qsl(
        urllib.parse.urlsplit(link2).query))["token"]})
    assert r.status_code == 200 and r.json()["user"]["email"] == new, r.text
    assert _sql(svc, 'select email, "emailVerified" from "user" where id = %s', u.id) == [(new, True)]


def test_change_email_unverified_at_once(mk, smtp_sink):
    svc, c = mk(CHANGE_EMAIL_ENABLED="true", CHANGE_EMAIL_UPDATE_WITHOUT_VERIFICATION="true")
    u = c.sign_up()
    new = H.unique_email("new")
    assert c.post("change-email", {"newEmail": new}, bearer=u.token).status_code == 200
    assert _sql(svc, 'select email from "user" where id = %s', u.id) == [(new,)]
    _, link = _link(smtp_sink, new, "/verify-email?")
    assert c.get(_pq(link)).status_code == 302
    assert _sql(svc, 'select "emailVerified" from "user" where id = %s', u.id) == [(True,)]


def test_change_email_disabled(mk):
    svc, c = mk()
    u = c.sign_up()
    assert_error(c.post("change-email", {"newEmail": H.unique_email()}, bearer=u.token), 400,
                 "CHANGE_EMAIL_DISABLED")


def test_delete_user_with_password(mk, redis_client):
    svc, c = mk(DELETE_USER_ENABLED="true")
    u = c.sign_up()
    other = c.sign_in(u.email, u.password)
    key = c.post("api-key/create", {}, bearer=u.token).json()
    assert "key" in key, key
    sensitive(key["key"])
    assert_error(c.post("delete-user", {"password": "wrong-password-1"}, bearer=u.token), 400,
                 "INVALID_PASSWORD")
    r = c.post("delete-user", {"password": u.password}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"success": True, "message": "User deleted"}, r.text
    assert H.set_cookies(r)[c.cookie_name][0] == ""
    for t in ("user", "session", "account"):
        col = "id" if t == "user" else '"userId"'
        assert _sql(svc, f'select count(*) from "{t}" where {col} = %s', u.id) == [(0,)]
    assert _sql(svc, 'select count(*) from apikey where "referenceId" = %s', u.id) == [(0,)]
    assert c.session_of(other) is None
    assert not redis_client.exists(H.session_key(other.token))


def test_delete_user_needs_a_fresh_session_without_password(mk):
    svc, c = mk(DELETE_USER_ENABLED="true", SESSION_FRESH_AGE_SECONDS="1")
    u = c.sign_up()
    time.sleep(1.2)
    assert_error(c.post("delete-user", {}, bearer=u.token), 400, "SESSION_EXPIRED")
    v = c.sign_up()
    r = c.post("delete-user", {}, bearer=v.token)
    assert r.status_code == 200, r.text


def test_delete_user_by_mailed_link(mk, smtp_sink):
    svc, c = mk(DELETE_USER_ENABLED="true", DELETE_USER_SEND_VERIFICATION="true")
    u = c.sign_up()
    r = c.post("delete-user", {"callbackURL": APP + "/bye"}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"success": True,
                                                 "message": "Verification email sent"}, r.text
    assert _sql(svc, 'select count(*) from "user" where id = %s', u.id) == [(1,)]
    m, link = _link(smtp_sink, u.email, "/delete-user/callback?")
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert len(q["token"]) == 32 and q["token"] == q["token"].lower() and q["callbackURL"] == APP + "/bye"
    # only with the user's own session
    v = c.sign_up()
    assert_error(c.get(_pq(link), bearer=v.token), 404, "INVALID_TOKEN")
    assert_error(c.get(_pq(link)), 404, "FAILED_TO_GET_USER_INFO")
    # the wrong user's attempt spent the token (Better Auth consumes it too)
    r = c.post("delete-user", {"callbackURL": APP + "/bye"}, bearer=u.token)
    _, link = _link(smtp_sink, u.email, "/delete-user/callback?", count=2)
    r = c.get(_pq(link), bearer=u.token)
    assert r.status_code == 302 and r.headers["Location"] == APP + "/bye", r.text
    assert _sql(svc, 'select count(*) from "user" where id = %s', u.id) == [(0,)]
    assert c.session_of(u) is None


def test_delete_user_disabled_is_not_found(mk):
    svc, c = mk()
    u = c.sign_up()
    assert c.post("delete-user", {"password": u.password}, bearer=u.token).status_code == 404
    assert _sql(svc, 'select count(*) from "user" where id = %s', u.id) == [(1,)]
