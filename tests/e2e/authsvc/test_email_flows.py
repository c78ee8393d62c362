"""Email verification and password reset, from request to mail to link to result.

Every test runs its own authsvc on a fresh database (so no other authsvc's
mailer takes its outbox) and a real SMTP server (pcsupport.SmtpSink, aiosmtpd
in its own process) that the mails are read from.  Tokens are checked with an
independent JWT library (PyJWT) against Better Auth's format: HS256 over
{email, userId, iat, exp} keyed by the secret.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.parse

import jwt as pyjwt
import pytest

import pcsupport as H
from pcsupport import assert_error
from pcsupport.checks import sensitive

APP = "http://app.example.test"      # one of the suite's TRUSTED_ORIGINS
FROM = "Portcullis Test <no-reply@portcullis.test>"


def _mail_env(sink, **extra):
    env = {"SMTP_URL": sink.url, "MAIL_FROM": FROM, "MAIL_RETRY_MAX_SECONDS": "1"}
    env.update(extra)
    return env


@pytest.fixture
def mailsvc(authsvc_factory, smtp_sink):
    """make(**env) -> (authsvc, client) with mail to smtp_sink, on a fresh database."""
    def make(sink=None, fresh_db=True, **env):
        svc = authsvc_factory(_mail_env(sink or smtp_sink, **env), fresh_db=fresh_db,
                              name="authsvc-mail")
        return svc, H.ApiClient(svc)
    return make


def _sql(svc, q, *args):
    import psycopg2
    with psycopg2.connect(svc.env["DATABASE_URL"]) as c, c.cursor() as cur:
        cur.execute(q, args)
        return cur.fetchall() if cur.description else cur.rowcount


def _one_link(msg, part):
    links = [u for u in H.SmtpSink.links(msg) if part in u]
    assert len(links) == 1, f"links in {msg!r}: {H.SmtpSink.links(msg)}"
    return sensitive(links[0])


def _query(url):
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _get_link(client, url, **kw):
    """GET the link's path and query on this client's server."""
    u = urllib.parse.urlsplit(url)
    return client.get(u.path + ("?" + u.query if u.query else ""), **kw)


# ---------------------------------------------------------------------------
# Email verification


def test_sign_up_mails_a_verification_link_that_verifies(mailsvc, smtp_sink):
    svc, c = mailsvc(EMAIL_VERIFICATION_SEND_ON_SIGN_UP="true")
    u = c.sign_up(name="Ada <Lovelace>")
    assert u.token, "without REQUIRE_EMAIL_VERIFICATION sign-up still signs in"
    (m,) = smtp_sink.wait_for(u.email)
    assert m.envelope_rcpts == [u.email] and m.mail_from == "no-reply@portcullis.test"
    assert "no-reply@portcullis.test" in m.header("From") and "Verify your email" in m.subject
    assert m.header("Message-ID", "").startswith("<portcullis-mail-")
    assert m.msg.get_content_type() == "multipart/alternative"
    assert "Ada &lt;Lovelace&gt;" in m.html and "<Lovelace>" not in m.html
    link = _one_link(m, "/verify-email?")
    assert link.startswith(svc.base_url + "/api/auth/verify-email?token=")
    q = _query(link)
    assert q["callbackURL"] == "/"
    claims = pyjwt.decode(q["token"], svc.env["BETTER_AUTH_SECRET"], algorithms=["HS256"])
    assert claims["email"] == u.email.lower() and claims["userId"] == u.id
    assert claims["exp"] - claims["iat"] == 3600
    assert pyjwt.get_unverified_header(q["token"])["alg"] == "HS256"
    assert c.session_of(u)["user"]["emailVerified"] is False

    r = _get_link(c, link)
    assert r.status_code == 302 and r.headers["Location"] == "/", r.text
    assert _sql(svc, 'select "emailVerified" from "user" where id = %s', u.id) == [(True,)]
    # the cached session sees it at once
    assert c.session_of(u)["user"]["emailVerified"] is True
    # a second use of the link: already verified, same answer
    r = _get_link(c, link)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    r = c.get("verify-email", params={"token": q["token"]})
    assert r.status_code == 200 and r.json() == {"status": True, "user": None}


def test_verify_email_refuses_bad_tokens(mailsvc, smtp_sink):
    svc, c = mailsvc()
    u = c.sign_up()
    other = c.sign_up()
    secret = svc.env["BETTER_AUTH_SECRET"]
    now = int(time.time())

    def tok(payload, key=secret, alg="HS256"):
        return sensitive(pyjwt.encode(payload, key, algorithm=alg))

    good = {"email": u.email, "userId": u.id, "iat": now, "exp": now + 600}
    cases = {
        "INVALID_TOKEN": [
            tok(good, key="another-secret-of-enough-length-0123456789"),
            tok(dict(good, userId=other.id)),                   # for another user
            tok({"email": u.email, "userId": u.id, "iat": now}),  # no exp
            tok(dict(good, email="not-an-email")),
            pyjwt.encode(good, None, algorithm="none"),          # alg none
            tok(good)[:-3] + "AAA",                              # signature changed
            "garbage", "a.b.c",
        ],
        "TOKEN_EXPIRED": [tok(dict(good, iat=now - 7200, exp=now - 10))],
        "USER_NOT_FOUND": [tok(dict(good, email="nobody-" + u.email, userId=None))],
    }
    cases["USER_NOT_FOUND"] = [tok({"email": "nobody-" + u.email, "iat": now, "exp": now + 600})]
    for code, toks in cases.items():
        for t in toks:
            r = c.get("verify-email", params={"token": t})
            assert_error(r, 401, code)
            r = c.get("verify-email", params={"token": t, "callbackURL": APP + "/done?x=1"})
            assert r.status_code == 302, r.text
            assert r.headers["Location"] == f"{APP}/done?x=1&error={code}"
    assert _sql(svc, 'select count(*) from "user" where "emailVerified"') == [(0,)]
    # an untrusted callback is refused before anything else
    r = c.get("verify-email", params={"token": tok(good), "callbackURL": "https://evil.example/"})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    assert_error(c.get("verify-email"), 400, "VALIDATION_ERROR")
    # the good one works
    r = c.get("verify-email", params={"token": tok(good)})
    assert r.status_code == 200 and r.json() == {"status": True, "user": None}
    assert _sql(svc, 'select "emailVerified" from "user" where id = %s', u.id) == [(True,)]


def test_send_verification_email_rules(mailsvc, smtp_sink):
    svc, c = mailsvc()
    u = c.sign_up()
    v = c.sign_up()
    assert_error(c.post("send-verification-email", {"email": v.email}, bearer=u.token), 400,
                 "EMAIL_MISMATCH")
    assert_error(c.post("send-verification-email", {"email": u.email,
                                                    "callbackURL": "https://evil.example/x"}),
                 403, "INVALID_CALLBACK_URL")
    assert_error(c.post("send-verification-email", {"email": "nope"}), 400, "VALIDATION_ERROR")
    # without a session: the same answer for a known and an unknown address
    r1 = c.post("send-verification-email", {"email": u.email.upper(), "callbackURL": "/welcome"})
    r2 = c.post("send-verification-email", {"email": "unknown-" + u.email})
    assert r1.status_code == r2.status_code == 200 and r1.json() == r2.json() == {"status": True}
    (m,) = smtp_sink.wait_for(u.email)
    assert _query(_one_link(m, "/verify-email?"))["callbackURL"] == "/welcome"
    smtp_sink.assert_none("unknown-" + u.email, wait=1.0)
    # with its session, for its own address
    r = c.post("send-verification-email", {"email": v.email}, bearer=v.token)
    assert r.status_code == 200 and r.json() == {"status": True}
    (m,) = smtp_sink.wait_for(v.email)
    assert _get_link(c, _one_link(m, "/verify-email?")).status_code == 302
    assert_error(c.post("send-verification-email", {"email": v.email}, bearer=v.token), 400,
                 "EMAIL_ALREADY_VERIFIED")
    # sent rows keep no link
    rows = _sql(svc, 'select "sentAt" is not null, "text", "html", "subject" from portcullis_mail')
    assert rows and all(r == (True, None, None, None) for r in rows), rows


def test_anonymous_mail_routes_answer_no_sooner_than_the_floor(mailsvc, smtp_sink):
    """Without a session, send-verification-email (Better Auth's 500 ms floor) and
    request-password-reset answer no sooner for an address without an account than
    for one with it; the loop holds the answers, so no worker waits: more requests
    than AUTHSVC_WORKERS at once all end in about one floor, not one per worker."""
    import concurrent.futures
    svc, c = mailsvc(AUTHSVC_WORKERS="2")
    u = c.sign_up()
    for path, key in (("send-verification-email", "email"), ("request-password-reset", "email")):
        for addr in (u.email, "nobody-" + u.email):
            t0 = time.monotonic()
            r = c.post(path, {key: addr})
            took = time.monotonic() - t0
            assert r.status_code == 200, r.text
            assert took >= 0.5, (path, addr, took)
    n = 8

    def one(i):
        cc = H.ApiClient(svc)
        try:
            return cc.post("send-verification-email", {"email": f"nobody{i}-{u.email}"}).status_code
        finally:
            cc.close()
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        assert list(ex.map(one, range(n))) == [200] * n
    # two workers sleeping 500 ms each would need n / 2 * 0.5 s = 2 s
    assert time.monotonic() - t0 < 1.9


def test_require_email_verification(mailsvc, smtp_sink, db):
    svc, c = mailsvc(REQUIRE_EMAIL_VERIFICATION="true", EMAIL_VERIFICATION_SEND_ON_SIGN_IN="true")
    email, pw = H.unique_email(), H.new_password()
    r = c.post("sign-up/email", {"name": "N", "email": email, "password": pw,
                                 "callbackURL": APP + "/in"})
    assert r.status_code == 200 and r.json()["token"] is None, r.text
    assert "set-cookie" not in r.headers
    uid = r.json()["user"]["id"]
    assert _sql(svc, 'select count(*) from "session"') == [(0,)]
    smtp_sink.wait_for(email)                    # sendOnSignUp follows requireEmailVerification
    # a taken address answers like a new one (another id), and nothing is written
    r2 = c.post("sign-up/email", {"name": "N", "email": email, "password": H.new_password()})
    assert r2.status_code == 200 and r2.json()["token"] is None
    assert r2.json()["user"]["id"] != uid and r2.json()["user"]["email"] == email
    assert _sql(svc, 'select count(*) from "user"') == [(1,)]
    # sign-in refused until verified; each refusal mails a fresh link
    assert_error(c.post("sign-in/email", {"email": email, "password": pw}), 403,
                 "EMAIL_NOT_VERIFIED")
    msgs = smtp_sink.wait_for(email, count=2)
    # a wrong password is still 401, not a hint that the account exists
    assert_error(c.post("sign-in/email", {"email": email, "password": "wrong-password-1"}), 401,
                 "INVALID_EMAIL_OR_PASSWORD")
    link = _one_link(msgs[0], "/verify-email?")
    assert _query(link)["callbackURL"] == APP + "/in"
    r = _get_link(c, link)
    assert r.status_code == 302 and r.headers["Location"] == APP + "/in"
    assert "set-cookie" not in r.headers         # no auto sign-in unless asked
    u = c.sign_in(email, pw)
    assert c.session_of(u)["user"]["emailVerified"] is True


def test_auto_sign_in_after_verification(mailsvc, smtp_sink):
    svc, c = mailsvc(REQUIRE_EMAIL_VERIFICATION="true", EMAIL_VERIFICATION_AUTO_SIGN_IN="true")
    email = H.unique_email()
    c.post("sign-up/email", {"name": "N", "email": email, "password": H.new_password()})
    (m,) = smtp_sink.wait_for(email)
    r = _get_link(c, _one_link(m, "/verify-email?"))
    assert r.status_code == 302
    cookies = H.set_cookies(r)
    value = cookies[c.cookie_name][0]
    sensitive(value)
    s = c.session_of(cookie=f"{c.cookie_name}={value}")
    assert s["user"]["email"] == email and s["user"]["emailVerified"] is True


# ---------------------------------------------------------------------------
# Password reset


def test_password_reset_flow(mailsvc, smtp_sink):
    svc, c = mailsvc(REVOKE_SESSIONS_ON_PASSWORD_RESET="true")
    u = c.sign_up(name="Reset Me")
    r = c.post("request-password-reset", {"email": u.email, "redirectTo": APP + "/reset"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True, "message": "If this email exists in our system, "
                        "check your email for the reset link"}
    (m,) = smtp_sink.wait_for(u.email)
    assert "Reset your" in m.subject
    link = _one_link(m, "/reset-password/")
    path = urllib.parse.urlsplit(link).path
    token = sensitive(path.rsplit("/", 1)[1])
    assert len(token) == 24 and token.isalnum()
    assert _query(link) == {"callbackURL": APP + "/reset"}
    rows = _sql(svc, 'select value, "expiresAt" - now() > interval \'55 minutes\' from verification '
                     'where identifier = %s', "reset-password:" + token)
    assert rows == [(u.id, True)]
    # the link redirects to the app with the token
    r = _get_link(c, link)
    assert r.status_code == 302 and r.headers["Location"] == f"{APP}/reset?token={token}"
    # a bad token redirects with the error
    r = c.get("reset-password/notatoken", params={"callbackURL": APP + "/reset"})
    assert r.status_code == 302 and r.headers["Location"] == f"{APP}/reset?error=INVALID_TOKEN"
    r = c.get("reset-password/" + token, params={"callbackURL": "https://evil.example/"})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    # too short: refused, token kept
    assert_error(c.post("reset-password", {"newPassword": "short", "token": token}), 400,
                 "PASSWORD_TOO_SHORT")
    new = H.new_password()
    r = c.post("reset-password", {"newPassword": new, "token": token})
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    # once only
    assert_error(c.post("reset-password", {"newPassword": H.new_password(), "token": token}), 400,
                 "INVALID_TOKEN")
    assert _sql(svc, "select count(*) from verification where identifier like 'reset-password:%%'") == [(0,)]
    # the old session ended (REVOKE_SESSIONS_ON_PASSWORD_RESET), the old password too
    assert c.session_of(u) is None
    assert_error(c.post("sign-in/email", {"email": u.email, "password": u.password}), 401,
                 "INVALID_EMAIL_OR_PASSWORD")
    c.sign_in(u.email, new)


def test_password_reset_refusals(mailsvc, smtp_sink):
    svc, c = mailsvc()
    u = c.sign_up()
    # unknown address: the same answer, no mail, no row
    r = c.post("request-password-reset", {"email": "nobody-" + u.email})
    assert r.status_code == 200 and r.json()["status"] is True
    assert_error(c.post("request-password-reset", {"email": u.email,
                                                   "redirectTo": "https://evil.example/"}),
                 403, "INVALID_REDIRECT_URL")
    assert _sql(svc, "select count(*) from verification") == [(0,)]
    # an expired token
    c.post("request-password-reset", {"email": u.email})
    (m,) = smtp_sink.wait_for(u.email)
    token = sensitive(urllib.parse.urlsplit(_one_link(m, "/reset-password/")).path.rsplit("/", 1)[1])
    _sql(svc, "update verification set \"expiresAt\" = now() - interval '1 second' "
              "where identifier = %s", "reset-password:" + token)
    assert_error(c.post("reset-password", {"newPassword": H.new_password(), "token": token}), 400,
                 "INVALID_TOKEN")
    r = c.get("reset-password/" + token, params={"callbackURL": "/reset"})
    assert r.status_code == 302
    assert r.headers["Location"] == svc.origin + "/reset?error=INVALID_TOKEN"
    assert_error(c.post("reset-password", {"newPassword": H.new_password()}), 400, "INVALID_TOKEN")
    # the session survives a reset without REVOKE_SESSIONS_ON_PASSWORD_RESET
    c.post("request-password-reset", {"email": u.email})
    m = smtp_sink.wait_for(u.email, count=2)[-1]
    token = sensitive(urllib.parse.urlsplit(_one_link(m, "/reset-password/")).path.rsplit("/", 1)[1])
    r = c.post("reset-password?token=" + token, {"newPassword": H.new_password()})
    assert r.status_code == 200, r.text
    assert c.session_of(u)["user"]["id"] == u.id


def test_reset_creates_the_credential_account_for_a_social_user(mailsvc, smtp_sink):
    svc, c = mailsvc()
    u = c.sign_up()
    _sql(svc, "update account set \"providerId\" = 'google', \"accountId\" = 'g-1', password = null "
              "where \"userId\" = %s", u.id)
    c.post("request-password-reset", {"email": u.email})
    (m,) = smtp_sink.wait_for(u.email)
    token = sensitive(urllib.parse.urlsplit(_one_link(m, "/reset-password/")).path.rsplit("/", 1)[1])
    new = H.new_password()
    assert c.post("reset-password", {"newPassword": new, "token": token}).status_code == 200
    rows = _sql(svc, 'select "providerId", "accountId" from account where "userId" = %s order by 1',
                u.id)
    assert rows == [("credential", u.id), ("google", "g-1")]
    c.sign_in(u.email, new)


# ---------------------------------------------------------------------------
# The outbox: nothing lost, nothing sent twice


def test_smtp_down_then_up_delivers_once(mailsvc, smtp_sink):
    svc, c = mailsvc()
    u = c.sign_up()
    smtp_sink.stop()
    assert c.post("request-password-reset", {"email": u.email}).status_code == 200
    H.wait_until(lambda: _sql(svc, 'select attempts from portcullis_mail')[0][0] >= 2, 10,
                 what="two refused attempts")
    (row,) = _sql(svc, 'select "sentAt", "failedAt", "lastError" from portcullis_mail')
    assert row[0] is None and row[1] is None and row[2], row
    smtp_sink.start()
    smtp_sink.wait_for(u.email, timeout=15)
    time.sleep(2.5)
    assert len(smtp_sink.messages(u.email)) == 1
    assert _sql(svc, 'select "sentAt" is not null, "lastError" from portcullis_mail') == [(True, None)]


def test_crash_after_commit_delivers_after_restart(mailsvc, smtp_sink, authsvc_factory):
    svc, c = mailsvc()
    u = c.sign_up()
    smtp_sink.stop()
    assert c.post("request-password-reset", {"email": u.email}).status_code == 200
    assert _sql(svc, 'select count(*) from portcullis_mail where "sentAt" is null') == [(1,)]
    os.kill(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(10)
    smtp_sink.start()
    dbname = urllib.parse.urlsplit(svc.env["DATABASE_URL"]).path.lstrip("/")
    again = authsvc_factory(_mail_env(smtp_sink), database=dbname, name="authsvc-mail-2")
    (m,) = smtp_sink.wait_for(u.email, timeout=15)
    link = _one_link(m, "/reset-password/")
    token = sensitive(urllib.parse.urlsplit(link).path.rsplit("/", 1)[1])
    c2 = H.ApiClient(again)
    assert c2.post("reset-password", {"newPassword": H.new_password(), "token": token}).status_code == 200
    time.sleep(1.5)
    assert len(smtp_sink.messages(u.email)) == 1


def test_permanent_refusal_is_not_retried(mailsvc, smtp_sink_factory):
    sink = smtp_sink_factory(fail_rcpt="refused@example.com")
    svc, c = mailsvc(sink=sink)
    u = c.sign_up(email="refused@example.com")
    assert c.post("request-password-reset", {"email": u.email}).status_code == 200
    H.wait_until(lambda: _sql(svc, 'select "failedAt" is not null from portcullis_mail')[0][0], 10,
                 what="the mail marked failed")
    (row,) = _sql(svc, 'select attempts, "lastError", text from portcullis_mail')
    assert row[0] == 1 and "550" in row[1] and row[2] is None, row
    time.sleep(2)
    assert _sql(svc, 'select attempts from portcullis_mail') == [(1,)]


def test_smtp_auth_and_starttls(mailsvc, smtp_sink_factory, tmp_path):
    import subprocess
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-days", "2", "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True)
    sink = smtp_sink_factory(require_auth="mailer:s3cret-pass", tls_cert=str(cert), tls_key=str(key))
    pwfile = tmp_path / "pw"
    pwfile.write_text("s3cret-pass\n")
    sensitive("s3cret-pass")
    svc, c = mailsvc(sink=sink, SMTP_USERNAME="mailer", SMTP_PASSWORD_FILE=str(pwfile),
                     SMTP_CA_FILE=str(cert), SMTP_REQUIRE_TLS="true")
    u = c.sign_up()
    assert c.post("request-password-reset", {"email": u.email}).status_code == 200
    (m,) = sink.wait_for(u.email)
    assert m.tls and m.auth_login == "mailer"


def test_required_tls_sends_nothing_in_plain_text(mailsvc, smtp_sink):
    """SMTP_REQUIRE_TLS=true against a server that offers no STARTTLS: the mail
    waits in the outbox with the reason, nothing reaches the server."""
    svc, c = mailsvc(SMTP_REQUIRE_TLS="true")
    u = c.sign_up()
    assert c.post("request-password-reset", {"email": u.email}).status_code == 200
    H.wait_until(lambda: _sql(svc, 'select attempts from portcullis_mail')[0][0] >= 1, 10,
                 what="a delivery attempt")
    (row,) = _sql(svc, 'select "sentAt", "failedAt", "lastError" from portcullis_mail')
    assert row[0] is None and row[1] is None and row[2], row
    smtp_sink.assert_none(u.email, wait=1.0)


def test_without_smtp_url_mails_go_to_the_log(authsvc_factory):
    svc = authsvc_factory({}, fresh_db=True, name="authsvc-nomail")
    c = H.ApiClient(svc)
    u = c.sign_up()
    assert c.post("send-verification-email", {"email": u.email}).status_code == 200

    def logged():
        text = "\n".join(str(x) for x in svc.log_lines())
        return "/api/auth/verify-email?token=" in text and u.email in text
    H.wait_until(logged, 10, what="the mail in the log")
    assert "no SMTP_URL" in "\n".join(str(x) for x in svc.log_lines())


def test_templates_dir_replaces_a_template(mailsvc, smtp_sink, tmp_path):
    (tmp_path / "reset-password.subject").write_text("{{app}}: new password for {{name}}\r\n")
    (tmp_path / "reset-password.txt").write_text("Go to {{url}} ({{minutes}} min) {{unknown}}\n")
    svc, c = mailsvc(MAIL_TEMPLATES_DIR=str(tmp_path), MAIL_APP_NAME="Acme",
                     RESET_PASSWORD_TOKEN_EXPIRES_IN="600")
    u = c.sign_up(name="Bob\r\nBcc: x@evil.example")
    c.post("request-password-reset", {"email": u.email})
    (m,) = smtp_sink.wait_for(u.email)
    assert m.subject == "Acme: new password for BobBcc: x@evil.example"
    assert m.header("Bcc") is None and m.envelope_rcpts == [u.email]
    assert m.text.startswith("Go to " + svc.base_url + "/api/auth/reset-password/")
    assert "(10 min) {{unknown}}" in m.text
    assert "Choose a new password" in m.html        # the built-in HTML part


def test_reset_and_verification_are_rate_limited(mailsvc, smtp_sink):
    svc, c = mailsvc(RATE_LIMIT_ENABLED="true")
    for path in ("request-password-reset", "send-verification-email"):
        codes = [c.post(path, {"email": H.unique_email()}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429], (path, codes)
