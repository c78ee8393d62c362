"""Interop: email verification and password reset between a real Better Auth 1.7.25
and authsvc on ONE database with ONE secret.

Both servers run with requireEmailVerification on (Better Auth:
BA_REQUIRE_EMAIL_VERIFICATION=1; authsvc: REQUIRE_EMAIL_VERIFICATION=true).
Better Auth "mails" through its sendVerificationEmail / sendResetPassword hooks
into a JSON-lines file (tests/e2e/interop/server.mjs, BA_MAIL_LOG); authsvc
mails through SMTP to a real SMTP server (pcsupport.SmtpSink).  Every link or
token one side issues is consumed by the other, and each side then sees the
result (verified email, new password, spent token) the same way.
"""

from __future__ import annotations

import urllib.parse

import pytest

import pcsupport as H
from pcsupport import assert_error
from pcsupport.checks import sensitive
from pcsupport.interop import better_auth, read_mail_log

APP = "http://app.example.test"   # trusted by both (the suite's TRUSTED_ORIGINS)


@pytest.fixture
def pair(authsvc_factory, smtp_sink, secret, trusted_origins, tmp_path):
    """(authsvc, its client, Better Auth, its client, Better Auth's mail log) on a fresh database."""
    svc = authsvc_factory({"SMTP_URL": smtp_sink.url, "MAIL_FROM": "Test <no-reply@portcullis.test>",
                           "REQUIRE_EMAIL_VERIFICATION": "true", "MAIL_RETRY_MAX_SECONDS": "1",
                           "CHANGE_EMAIL_ENABLED": "true", "DELETE_USER_ENABLED": "true",
                           "MULTI_SESSION_ENABLED": "true"},
                          fresh_db=True, name="authsvc-interop-mail")
    mail_log = tmp_path / "ba-mail.jsonl"
    with better_auth(svc.env["DATABASE_URL"], secret, trusted_origins, tmp_path,
                     BA_MAIL_LOG=str(mail_log), BA_REQUIRE_EMAIL_VERIFICATION="1",
                     BA_CHANGE_EMAIL="1", BA_DELETE_USER="1", BA_MULTI_SESSION="1") as ba:
        ac, bc = H.ApiClient(svc, origin=APP), H.ApiClient(ba, origin=APP)
        assert bc.get("ok").status_code == 200, ba.logs()
        yield svc, ac, ba, bc, mail_log
        ac.close()
        bc.close()


def _ba_mail(log, to, kind, count=1):
    H.wait_until(lambda: len(read_mail_log(log, to=to, kind=kind)) >= count, 10,
                 what=f"Better Auth's {kind} mail to {to}")
    m = read_mail_log(log, to=to, kind=kind)[count - 1]
    sensitive(m["token"])
    return m


def _our_link(sink, to, part, count=1):
    m = sink.wait_for(to, count=count)[count - 1]
    links = [u for u in H.SmtpSink.links(m) if part in u]
    assert len(links) == 1, links
    return sensitive(links[0])


def _path_query(url):
    u = urllib.parse.urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def _sql(svc, q, *args):
    import psycopg2
    with psycopg2.connect(svc.env["DATABASE_URL"]) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else cur.rowcount


def _verified_user(ac, svc, tag="acct"):
    """A user signed up on authsvc, its email marked verified, signed in there."""
    email, pw = H.unique_email(tag), H.new_password()
    r = ac.post("sign-up/email", {"name": "Acct", "email": email, "password": pw})
    _sql(svc, 'update "user" set "emailVerified" = true where id = %s', r.json()["user"]["id"])
    return ac.sign_in(email, pw)


def _verified(svc, uid):
    import psycopg2
    with psycopg2.connect(svc.env["DATABASE_URL"]) as c, c.cursor() as cur:
        cur.execute('select "emailVerified" from "user" where id = %s', (uid,))
        return cur.fetchone()[0]


def test_a_verification_link_from_better_auth_verifies_on_authsvc(pair):
    svc, ac, ba, bc, log = pair
    email, pw = H.unique_email("ba"), H.new_password()
    r = bc.post("sign-up/email", {"name": "From BA", "email": email, "password": pw})
    assert r.status_code == 200 and r.json()["token"] is None, r.text
    uid = r.json()["user"]["id"]
    # requireEmailVerification, seen the same way by both
    assert_error(bc.post("sign-in/email", {"email": email, "password": pw}), 403, "EMAIL_NOT_VERIFIED")
    assert_error(ac.post("sign-in/email", {"email": email, "password": pw}), 403, "EMAIL_NOT_VERIFIED")
    m = _ba_mail(log, email, "verify-email")
    assert m["url"].startswith(ba.base_url + "/api/auth/verify-email?token=")
    r = ac.get(_path_query(m["url"]))
    assert r.status_code == 302 and r.headers["Location"] == "/", r.text
    assert _verified(svc, uid) is True
    ac.sign_in(email, pw)
    bc.sign_in(email, pw)


def test_a_verification_link_from_authsvc_verifies_on_better_auth(pair, smtp_sink):
    svc, ac, ba, bc, log = pair
    email, pw = H.unique_email("as"), H.new_password()
    r = ac.post("sign-up/email", {"name": "From authsvc", "email": email, "password": pw,
                                  "callbackURL": APP + "/welcome"})
    assert r.status_code == 200 and r.json()["token"] is None, r.text
    uid = r.json()["user"]["id"]
    assert_error(bc.post("sign-in/email", {"email": email, "password": pw}), 403, "EMAIL_NOT_VERIFIED")
    link = _our_link(smtp_sink, email, "/verify-email?")
    r = bc.get(_path_query(link))
    assert r.status_code == 302 and r.headers["Location"] == APP + "/welcome", r.text
    assert _verified(svc, uid) is True
    bc.sign_in(email, pw)
    ac.sign_in(email, pw)


def test_verify_email_errors_match(pair):
    svc, ac, ba, bc, log = pair
    for token in ("garbage", "a.b.c"):
        for c in (ac, bc):
            assert_error(c.get("verify-email", params={"token": token}), 401, "INVALID_TOKEN")
            r = c.get("verify-email", params={"token": token, "callbackURL": APP + "/v"})
            assert r.status_code == 302 and r.headers["Location"] == APP + "/v?error=INVALID_TOKEN"


def test_a_reset_token_from_better_auth_resets_on_authsvc(pair):
    svc, ac, ba, bc, log = pair
    email, pw = H.unique_email("rb"), H.new_password()
    bc.post("sign-up/email", {"name": "R", "email": email, "password": pw})
    ac.get(_path_query(_ba_mail(log, email, "verify-email")["url"]))
    r = bc.post("request-password-reset", {"email": email, "redirectTo": APP + "/reset"})
    assert r.status_code == 200, r.text
    m = _ba_mail(log, email, "reset-password")
    token = m["token"]
    # authsvc follows Better Auth's link
    r = ac.get(_path_query(m["url"]))
    assert r.status_code == 302 and r.headers["Location"] == f"{APP}/reset?token={token}", r.text
    new = H.new_password()
    r = ac.post("reset-password", {"newPassword": new, "token": token})
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    # spent on both sides
    assert_error(bc.post("reset-password", {"newPassword": H.new_password(), "token": token}), 400,
                 "INVALID_TOKEN")
    assert_error(bc.post("sign-in/email", {"email": email, "password": pw}), 401,
                 "INVALID_EMAIL_OR_PASSWORD")
    bc.sign_in(email, new)


def test_a_reset_token_from_authsvc_resets_on_better_auth(pair, smtp_sink):
    svc, ac, ba, bc, log = pair
    email, pw = H.unique_email("ra"), H.new_password()
    ac.post("sign-up/email", {"name": "R", "email": email, "password": pw})
    bc.get(_path_query(_our_link(smtp_sink, email, "/verify-email?")))
    r = ac.post("request-password-reset", {"email": email, "redirectTo": APP + "/reset"})
    assert r.status_code == 200, r.text
    link = _our_link(smtp_sink, email, "/reset-password/", count=2)
    token = sensitive(urllib.parse.urlsplit(link).path.rsplit("/", 1)[1])
    r = bc.get(_path_query(link))
    assert r.status_code == 302 and r.headers["Location"] == f"{APP}/reset?token={token}", r.text
    new = H.new_password()
    r = bc.post("reset-password", {"newPassword": new, "token": token})
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    assert_error(ac.post("reset-password", {"newPassword": H.new_password(), "token": token}), 400,
                 "INVALID_TOKEN")
    ac.sign_in(email, new)
    bc.sign_in(email, new)


def test_reset_answers_match(pair):
    svc, ac, ba, bc, log = pair
    unknown = H.unique_email("nobody")
    bodies = [c.post("request-password-reset", {"email": unknown}) for c in (ac, bc)]
    assert [b.status_code for b in bodies] == [200, 200]
    assert bodies[0].json() == bodies[1].json()
    for c in (ac, bc):
        assert_error(c.post("reset-password", {"newPassword": H.new_password(), "token": "nope"}), 400,
                     "INVALID_TOKEN")
        r = c.get("reset-password/nope", params={"callbackURL": APP + "/r"})
        assert r.status_code == 302 and r.headers["Location"] == APP + "/r?error=INVALID_TOKEN"
    codes = [c.post("request-password-reset", {"email": unknown, "redirectTo": "https://evil.example/"})
             for c in (ac, bc)]
    assert [r.status_code for r in codes] == [403, 403]
    assert codes[0].json()["code"] == codes[1].json()["code"], [r.text for r in codes]
    # a taken address at sign-up: both answer like a new one
    email = H.unique_email("dup")
    bc.post("sign-up/email", {"name": "D", "email": email, "password": H.new_password()})
    for c in (ac, bc):
        r = c.post("sign-up/email", {"name": "D", "email": email, "password": H.new_password()})
        assert r.status_code == 200 and r.json()["token"] is None, r.text
        assert sorted(r.json()["user"]) == ["createdAt", "email", "emailVerified", "id", "image",
                                            "name", "updatedAt"], r.text


# ---------------------------------------------------------------------------
# Account routes: the same session on both sides, the same answers


def _same(ra, rb):
    assert ra.status_code == rb.status_code, (ra.text, rb.text)
    ja, jb = ra.json(), rb.json()
    if isinstance(ja, dict) and "message" in ja and ra.status_code >= 400:
        # Better Auth leaves out the code of a few errors (APIError.fromStatus);
        # authsvc always sends one (design.md: every error has a code)
        if "code" in jb:
            assert ja.get("code") == jb["code"], (ja, jb)
        else:
            assert ja["message"] == jb["message"], (ja, jb)
    else:
        assert ja == jb, (ja, jb)
    return ja


def test_account_routes_answer_alike(pair):
    svc, ac, ba, bc, log = pair
    u = _verified_user(ac, svc)
    both = lambda m, path, body=None: [getattr(c, m)(path, body, bearer=u.token) if m == "post"
                                       else c.get(path, bearer=u.token) for c in (ac, bc)]
    assert _same(*both("post", "verify-password", {"password": u.password})) == {"status": True}
    _same(*both("post", "verify-password", {"password": "wrong-password-2"}))
    accounts = _same(*both("get", "list-accounts"))
    assert [a["providerId"] for a in accounts] == ["credential"] and accounts[0]["scopes"] == []
    _same(*both("post", "unlink-account", {"accountId": accounts[0]["id"]}))
    _same(*both("post", "unlink-account", {"accountId": "nope"}))
    _same(*both("post", "update-session", {}))
    _same(*both("post", "change-email", {"newEmail": u.email}))


def test_a_change_email_link_from_either_side_works_on_the_other(pair, smtp_sink):
    svc, ac, ba, bc, log = pair
    u = _verified_user(ac, svc, "chg1")
    new = H.unique_email("chg1new")
    r = bc.post("change-email", {"newEmail": new, "callbackURL": APP + "/s"}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    m = _ba_mail(log, new, "verify-email")
    r = ac.get(_path_query(m["url"]), bearer=u.token)
    assert r.status_code == 302 and r.headers["Location"] == APP + "/s", r.text
    assert _sql(svc, 'select email from "user" where id = %s', u.id) == [(new,)]
    bc.sign_in(new, u.password)

    v = _verified_user(ac, svc, "chg2")
    new2 = H.unique_email("chg2new")
    r = ac.post("change-email", {"newEmail": new2}, bearer=v.token)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    link = _our_link(smtp_sink, new2, "/verify-email?")
    r = bc.get(_path_query(link), bearer=v.token)
    assert r.status_code == 302, r.text
    assert _sql(svc, 'select email from "user" where id = %s', v.id) == [(new2,)]
    ac.sign_in(new2, v.password)


def test_delete_user_on_either_side(pair):
    svc, ac, ba, bc, log = pair
    u = _verified_user(ac, svc, "del1")
    r = bc.post("delete-user", {"password": u.password}, bearer=u.token)
    assert r.status_code == 200 and r.json() == {"success": True, "message": "User deleted"}, r.text
    assert ac.session_of(bearer=u.token) is None
    assert_error(ac.post("sign-in/email", {"email": u.email, "password": u.password}), 401,
                 "INVALID_EMAIL_OR_PASSWORD")
    email, pw = H.unique_email("del2"), H.new_password()
    uid = bc.post("sign-up/email", {"name": "B", "email": email, "password": pw}).json()["user"]["id"]
    _sql(svc, 'update "user" set "emailVerified" = true where id = %s', uid)
    v = bc.sign_in(email, pw)
    ra = ac.post("delete-user", {"password": pw}, bearer=v.token)
    assert ra.status_code == 200 and ra.json() == {"success": True, "message": "User deleted"}, ra.text
    assert bc.session_of(bearer=v.token) is None
    assert _sql(svc, 'select count(*) from "user" where id = %s', uid) == [(0,)]


def test_multi_session_cookies_work_on_both(pair):
    """Two accounts signed in through different servers into one browser."""
    svc, ac, ba, bc, log = pair
    a, b = _verified_user(ac, svc, "ms-a"), _verified_user(ac, svc, "ms-b")
    jar = {}

    def take(r):
        for name, (value, attrs) in H.set_cookies(r).items():
            if value == "":
                jar.pop(name, None)
            else:
                sensitive(value)
                jar[name] = value
        return r

    hdr = lambda: "; ".join(f"{k}={v}" for k, v in jar.items())
    r = take(ac.post("sign-in/email", {"email": a.email, "password": a.password}))
    ta = r.json()["token"]
    r = take(bc.post("sign-in/email", {"email": b.email, "password": b.password}, cookie=hdr()))
    tb = r.json()["token"]
    assert sorted(k for k in jar if "_multi-" in k) == sorted(
        f"better-auth.session_token_multi-{t.lower()}" for t in (ta, tb)), jar.keys()
    lists = [c.get("multi-session/list-device-sessions", cookie=hdr()) for c in (ac, bc)]
    assert [r.status_code for r in lists] == [200, 200]
    key = lambda x: x["user"]["id"]
    la, lb = sorted(lists[0].json(), key=key), sorted(lists[1].json(), key=key)
    assert [x["user"]["id"] for x in la] == [x["user"]["id"] for x in lb] == sorted([a.id, b.id])
    assert [x["session"]["token"] for x in la] == [x["session"]["token"] for x in lb]
    # switch on Better Auth to the session authsvc made, then revoke it on authsvc
    r = take(bc.post("multi-session/set-active", {"sessionToken": ta}, cookie=hdr()))
    assert r.status_code == 200 and r.json()["user"]["id"] == a.id, r.text
    assert ac.session_of(cookie=hdr())["user"]["id"] == a.id
    r = take(ac.post("multi-session/revoke", {"sessionToken": ta}, cookie=hdr()))
    assert r.status_code == 200, r.text
    assert bc.session_of(cookie=hdr())["user"]["id"] == b.id
    assert bc.session_of(bearer=ta) is None
