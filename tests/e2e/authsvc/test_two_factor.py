"""Better Auth's twoFactor plugin in authsvc (TWO_FACTOR_ENABLED): enable, the TOTP URI,
sign-in answering {twoFactorRedirect} with no session, the second step with TOTP
(checked with pyotp, an independent implementation), a backup code or a trusted device,
replayed and wrong codes until the limits, disable.

A code is only good for one period here: Totp.fresh_code() (pcsupport.two_factor)
picks, around the current time, a TOTP counter the test has not used yet."""

from __future__ import annotations

import base64
import re
import time
import urllib.parse

import psycopg2
import pytest

import pcsupport as H
from pcsupport import assert_error
from pcsupport.checks import sensitive
from pcsupport.two_factor import S, TF, TRUST, Totp, challenge, cookies_of, enable

APP = "http://app.example.test"


@pytest.fixture
def tf(authsvc_factory):
    def make(**env):
        e = {"TWO_FACTOR_ENABLED": "true", "TWO_FACTOR_ISSUER": "Portcullis Test"}
        e.update(env)
        svc = authsvc_factory(e, fresh_db=True, name="authsvc-2fa")
        return svc, H.ApiClient(svc, origin=APP)
    return make


def sql(svc, q, *args):
    c = psycopg2.connect(svc.env["DATABASE_URL"])
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute(q, args)
            return cur.fetchall() if cur.description else None
    finally:
        c.close()


def test_enable_then_sign_in_with_totp(tf):
    svc, c = tf()
    u = c.sign_up()
    # the plugin's user field, where Better Auth puts it, false from sign-up on
    assert list(u.body["user"])[-2:] == ["twoFactorEnabled", "id"], u.body
    assert u.body["user"]["twoFactorEnabled"] is False
    assert c.session_of(u)["user"]["twoFactorEnabled"] is False
    assert sql(svc, 'select "twoFactorEnabled" from "user" where "id" = %s', u.id)[0][0] is False
    r = c.post("two-factor/enable", {"password": u.password}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    body = r.json()
    uri = sensitive(body["totpURI"])
    assert set(body) == {"method", "totpURI", "backupCodes"}
    assert len(body["backupCodes"]) == 10
    for code in body["backupCodes"]:
        sensitive(code)
        assert len(code) == 11 and code[5] == "-" and code.replace("-", "").isalnum(), code
    p = urllib.parse.urlsplit(uri)
    assert p.scheme == "otpauth" and p.netloc == "totp"
    assert urllib.parse.unquote(p.path) == f"/Portcullis Test:{u.email}"
    q = urllib.parse.parse_qs(p.query)
    assert q["issuer"] == ["Portcullis Test"] and q["digits"] == ["6"] and q["period"] == ["30"]
    # the secret is 32 characters used as their bytes, carried in base32
    raw = base64.b32decode(q["secret"][0] + "=" * (-len(q["secret"][0]) % 8))
    assert len(raw) == 32
    # stored sealed, not enabled until a code is verified
    rows = sql(svc, 'select "secret", "backupCodes", "verified", "failedVerificationCount" '
                    'from "twoFactor" where "userId" = %s', u.id)
    assert len(rows) == 1
    secret, backup, verified, failed = rows[0]
    assert verified is False and failed == 0
    assert all(ch in "0123456789abcdef" for ch in secret) and len(secret) == 2 * (24 + 32 + 16)
    assert raw.decode() not in secret and body["backupCodes"][0] not in backup
    assert sql(svc, 'select "twoFactorEnabled" from "user" where "id" = %s', u.id)[0][0] is False
    assert c.sign_in(u.email, u.password).body["user"]["twoFactorEnabled"] is False  # not on yet
    # the URI again, with the password: the same secret, but named after the app
    # (MAIL_APP_NAME), as Better Auth's get-totp-uri ignores the plugin's issuer
    r = c.post("two-factor/get-totp-uri", {"password": u.password}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    again = sensitive(r.json()["totpURI"])
    assert again == uri.replace("Portcullis%20Test", "Portcullis").replace("Portcullis+Test", "Portcullis")
    assert_error(c.post("two-factor/get-totp-uri", {"password": "wrong-password"}, cookie=u.cookie),
                 400, "INVALID_PASSWORD")
    app = Totp(uri)
    assert_error(c.post("two-factor/verify-totp", {"code": "000000"}, cookie=u.cookie), 401,
                 "INVALID_CODE")
    r = c.post("two-factor/verify-totp", {"code": app.fresh_code()}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == u.id
    assert sql(svc, 'select "twoFactorEnabled" from "user" where "id" = %s', u.id)[0][0] is True
    assert sql(svc, 'select "verified" from "twoFactor" where "userId" = %s', u.id)[0][0] is True
    newc = f"{S}={cookies_of(r)[S]}"
    assert c.session_of(cookie=newc)["user"]["twoFactorEnabled"] is True
    assert c.session_of(cookie=u.cookie) is None        # the old session was replaced
    # sign-in now stops at the second factor: no session row is made
    before = sql(svc, 'select count(*) from "session" where "userId" = %s', u.id)[0][0]
    r = c.post("sign-in/email", {"email": u.email, "password": u.password})
    assert "set-auth-token" not in r.headers
    tfc = challenge(c, u)
    assert sql(svc, 'select count(*) from "session" where "userId" = %s', u.id)[0][0] == before
    assert c.session_of(cookie=tfc) is None
    r = c.post("two-factor/verify-totp", {"code": app.fresh_code()}, cookie=tfc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "user"} and body["user"]["id"] == u.id
    assert body["user"]["twoFactorEnabled"] is True
    got = cookies_of(r)
    assert got[TF] == "" and got[S]
    assert r.headers.get("set-auth-token")
    assert c.session_of(bearer=body["token"])["user"]["id"] == u.id
    # the challenge is spent
    assert_error(c.post("two-factor/verify-totp", {"code": app.peek_code()}, cookie=tfc), 401,
                 "INVALID_TWO_FACTOR_COOKIE")


def test_replayed_code_is_refused(tf):
    svc, c = tf()
    u = c.sign_up()
    app, _codes, _cookie = enable(c, u)
    # a code of this period or the next, chosen away from a period's end, so that
    # it is still inside the window when it arrives (a slow build takes seconds)
    if 30 - time.time() % 30 < 8:
        time.sleep(30 - time.time() % 30 + 0.1)
    now = int(time.time()) // 30
    counter = next(x for x in (now, now + 1) if x not in app.used)
    app.used.add(counter)
    code = app.code_of(counter)
    r = c.post("two-factor/verify-totp", {"code": code}, cookie=challenge(c, u))
    assert r.status_code == 200, r.text
    assert_error(c.post("two-factor/verify-totp", {"code": code}, cookie=challenge(c, u)), 401,
                 "INVALID_CODE")


def test_wrong_codes_until_the_limits(tf):
    svc, c = tf()
    u = c.sign_up()
    app, _codes, _cookie = enable(c, u)
    tfc = challenge(c, u)
    for _ in range(5):
        assert_error(c.post("two-factor/verify-totp", {"code": "123456x"}, cookie=tfc), 401,
                     "INVALID_CODE")
    r = c.post("two-factor/verify-totp", {"code": app.peek_code()}, cookie=tfc)
    assert_error(r, 400, "TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE")
    assert cookies_of(r).get(TF) == ""
    assert_error(c.post("two-factor/verify-totp", {"code": app.peek_code()}, cookie=tfc), 401,
                 "INVALID_TWO_FACTOR_COOKIE")
    # per account: 10 failures in a row (5 above + 5 more) lock the second factor
    tfc = challenge(c, u)
    for _ in range(5):
        assert_error(c.post("two-factor/verify-backup-code", {"code": "nope"}, cookie=tfc), 401,
                     "INVALID_BACKUP_CODE")
    assert_error(c.post("two-factor/verify-totp", {"code": app.peek_code()}, cookie=challenge(c, u)),
                 429, "ACCOUNT_TEMPORARILY_LOCKED")
    locked = sql(svc, 'select "failedVerificationCount", "lockedUntil" > now() + interval \'14 minutes\' '
                      'from "twoFactor" where "userId" = %s', u.id)[0]
    assert locked == (10, True)
    # the lock passes: the count starts again
    sql(svc, 'update "twoFactor" set "lockedUntil" = now() - interval \'1 second\' where "userId" = %s', u.id)
    r = c.post("two-factor/verify-totp", {"code": app.fresh_code()}, cookie=challenge(c, u))
    assert r.status_code == 200, r.text
    assert sql(svc, 'select "failedVerificationCount", "lockedUntil" from "twoFactor" '
                    'where "userId" = %s', u.id)[0] == (0, None)


def test_backup_codes_are_single_use(tf):
    svc, c = tf()
    u = c.sign_up()
    app, codes, cookie = enable(c, u)
    r = c.post("two-factor/verify-backup-code", {"code": codes[3]}, cookie=challenge(c, u))
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == u.id and cookies_of(r)[S]
    assert c.session_of(bearer=r.json()["token"])["user"]["id"] == u.id
    assert_error(c.post("two-factor/verify-backup-code", {"code": codes[3]}, cookie=challenge(c, u)),
                 401, "INVALID_BACKUP_CODE")
    # new codes replace the old ones
    assert_error(c.post("two-factor/generate-backup-codes", {"password": "wrong-password"},
                        cookie=cookie), 400, "INVALID_PASSWORD")
    r = c.post("two-factor/generate-backup-codes", {"password": u.password}, cookie=cookie)
    assert r.status_code == 200, r.text
    assert r.json()["status"] is True and len(r.json()["backupCodes"]) == 10
    fresh = [sensitive(x) for x in r.json()["backupCodes"]]
    assert_error(c.post("two-factor/verify-backup-code", {"code": codes[4]}, cookie=challenge(c, u)),
                 401, "INVALID_BACKUP_CODE")
    r = c.post("two-factor/verify-backup-code", {"code": fresh[0]}, cookie=challenge(c, u))
    assert r.status_code == 200, r.text


def test_trusted_device_skips_the_second_factor(tf):
    svc, c = tf()
    u = c.sign_up()
    app, _codes, _cookie = enable(c, u)
    r = c.post("two-factor/verify-totp", {"code": app.fresh_code(), "trustDevice": True},
               cookie=challenge(c, u))
    assert r.status_code == 200, r.text
    trust = cookies_of(r)[TRUST]
    assert trust
    max_age = H.set_cookies(r)[TRUST][1]
    assert str(max_age.get("max-age", max_age.get("Max-Age"))) == "2592000"
    value = urllib.parse.unquote(trust).rsplit(".", 1)[0]
    assert value.split("!")[1].startswith("trust-device-")
    # the trusted device signs in at once, and its cookie is renewed
    r = c.post("sign-in/email", {"email": u.email, "password": u.password}, cookie=f"{TRUST}={trust}")
    assert r.status_code == 200, r.text
    assert r.json()["token"] and r.json()["user"]["id"] == u.id
    assert r.json()["user"]["twoFactorEnabled"] is True
    renewed = cookies_of(r)[TRUST]
    assert renewed and renewed != trust
    # the old cookie's row is gone: a second factor again (and the dead cookie expired)
    r = c.post("sign-in/email", {"email": u.email, "password": u.password}, cookie=f"{TRUST}={trust}")
    assert r.json().get("twoFactorRedirect") is True, r.text
    assert cookies_of(r).get(TRUST) == ""
    # another user's trust cookie does not count
    v = c.sign_up()
    enable(c, v)
    r = c.post("sign-in/email", {"email": v.email, "password": v.password}, cookie=f"{TRUST}={renewed}")
    assert r.json().get("twoFactorRedirect") is True, r.text


def test_remember_me_false_is_kept_through_the_second_step(tf):
    svc, c = tf()
    u = c.sign_up()
    app, _codes, _cookie = enable(c, u)
    r = c.post("sign-in/email", {"email": u.email, "password": u.password, "rememberMe": False})
    got = cookies_of(r)
    dr = got["better-auth.dont_remember"]
    assert dr and got[TF]
    r = c.post("two-factor/verify-totp", {"code": app.fresh_code()},
               cookie=f"{TF}={got[TF]}; better-auth.dont_remember={dr}")
    assert r.status_code == 200, r.text
    attrs = H.set_cookies(r)[S][1]
    assert "max-age" not in {k.lower() for k in attrs}, attrs     # a browser-session cookie
    row = sql(svc, 'select "expiresAt" < now() + interval \'2 days\' from "session" where "token" = %s',
              r.json()["token"])
    assert row == [(True,)]


def test_disable(tf):
    svc, c = tf()
    u = c.sign_up()
    app, _codes, cookie = enable(c, u)
    assert_error(c.post("two-factor/disable", {"password": "wrong-password"}, cookie=cookie), 400,
                 "INVALID_PASSWORD")
    assert_error(c.post("two-factor/disable", {"password": u.password}), 401, "UNAUTHORIZED")
    r = c.post("two-factor/disable", {"password": u.password}, cookie=cookie)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    assert cookies_of(r)[S]
    assert sql(svc, 'select count(*) from "twoFactor" where "userId" = %s', u.id)[0][0] == 0
    assert sql(svc, 'select "twoFactorEnabled" from "user" where "id" = %s', u.id)[0][0] is False
    signed = c.sign_in(u.email, u.password)
    assert signed.token


def test_refusals(tf):
    svc, c = tf()
    u = c.sign_up()
    assert_error(c.post("two-factor/get-totp-uri", {"password": u.password}, cookie=u.cookie), 400,
                 "TOTP_NOT_ENABLED")
    assert_error(c.post("two-factor/generate-backup-codes", {"password": u.password}, cookie=u.cookie),
                 400, "TWO_FACTOR_NOT_ENABLED")
    assert_error(c.post("two-factor/enable", {"password": "wrong-password"}, cookie=u.cookie), 400,
                 "INVALID_PASSWORD")
    assert_error(c.post("two-factor/enable", {"password": u.password, "method": "otp"}, cookie=u.cookie),
                 400, "OTP_NOT_CONFIGURED")
    assert_error(c.post("two-factor/enable", {"password": u.password, "method": "sms"}, cookie=u.cookie),
                 400, "VALIDATION_ERROR")
    assert_error(c.post("two-factor/enable", {}, cookie=u.cookie), 400, "VALIDATION_ERROR")
    assert_error(c.post("two-factor/enable", {"password": u.password}), 401, "UNAUTHORIZED")
    assert_error(c.post("two-factor/verify-totp", {"code": "123456"}), 401, "INVALID_TWO_FACTOR_COOKIE")
    assert_error(c.post("two-factor/verify-totp", {"code": "123456"}, cookie=f"{TF}=2fa-forged.x"), 401,
                 "INVALID_TWO_FACTOR_COOKIE")
    assert_error(c.post("two-factor/verify-totp", {"code": "123456"}, cookie=u.cookie), 400,
                 "TOTP_NOT_ENABLED")
    assert_error(c.post("two-factor/verify-backup-code", {"code": "x"}, cookie=u.cookie), 400,
                 "BACKUP_CODES_NOT_ENABLED")
    app, _codes, cookie = enable(c, u)
    assert_error(c.post("two-factor/enable", {"password": u.password}, cookie=cookie), 400,
                 "TOTP_ALREADY_ENABLED")
    # a custom issuer in the URI
    v = c.sign_up()
    r = c.post("two-factor/enable", {"password": v.password, "issuer": "Other"}, cookie=v.cookie)
    assert urllib.parse.unquote(urllib.parse.urlsplit(sensitive(r.json()["totpURI"])).path) == \
        f"/Other:{v.email}"


def test_plugin_off(authsvc_factory):
    svc = authsvc_factory({}, fresh_db=True, name="authsvc-no2fa")
    c = H.ApiClient(svc, origin=APP)
    u = c.sign_up()
    assert "twoFactorEnabled" not in u.body["user"]
    assert "twoFactorEnabled" not in c.session_of(u)["user"]
    assert_error(c.post("two-factor/enable", {"password": u.password}, cookie=u.cookie), 404)
    # twoFactorEnabled set by someone else changes nothing while the plugin is off
    sql(svc, 'update "user" set "twoFactorEnabled" = true where "id" = %s', u.id)
    assert c.sign_in(u.email, u.password).token


def test_rate_limit_per_ip(tf):
    svc, c = tf(RATE_LIMIT_ENABLED="true")
    u = c.sign_up()
    for _ in range(3):
        assert_error(c.post("two-factor/verify-totp", {"code": "1"}), 401, "INVALID_TWO_FACTOR_COOKIE")
    r = c.post("two-factor/verify-totp", {"code": "1"})
    assert r.status_code == 429 and r.headers.get("X-Retry-After"), r.text
    assert r.json() == {"message": "Too many requests. Please try again later."}
    assert u


# ---- the mailed one-time code (TWO_FACTOR_OTP_ENABLED, through the outbox) ----

@pytest.fixture
def otp_tf(tf, smtp_sink):
    def make(**env):
        e = {"TWO_FACTOR_OTP_ENABLED": "true", "SMTP_URL": smtp_sink.url,
             "MAIL_FROM": "Test <no-reply@portcullis.test>", "MAIL_RETRY_MAX_SECONDS": "1"}
        e.update(env)
        return tf(**e)
    return make


def mailed_code(sink, to, count):
    m = sink.wait_for(to, count=count)[count - 1]
    found = re.search(r"sign-in code is (\d{6})", m.text)
    assert found, m.text
    return sensitive(found.group(1))


def test_otp_enable_and_sign_in(otp_tf, smtp_sink):
    svc, c = otp_tf()
    u = c.sign_up()
    r = c.post("two-factor/enable", {"password": u.password, "method": "otp"}, cookie=u.cookie)
    assert r.status_code == 200 and r.json() == {"method": "otp"}, r.text
    assert sql(svc, 'select "twoFactorEnabled" from "user" where "id" = %s', u.id)[0][0] is True
    assert sql(svc, 'select count(*) from "twoFactor" where "userId" = %s', u.id)[0][0] == 0
    # no TOTP row: the sign-in offers the mailed code only
    r = c.post("sign-in/email", {"email": u.email, "password": u.password})
    assert r.json() == {"twoFactorRedirect": True, "twoFactorMethods": ["otp"]}, r.text
    tfc = f"{TF}={cookies_of(r)[TF]}"
    assert_error(c.post("two-factor/verify-otp", {"code": "123456"}, cookie=tfc), 400, "OTP_HAS_EXPIRED")
    r = c.post("two-factor/send-otp", cookie=tfc)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    code = mailed_code(smtp_sink, u.email, 1)
    rows = sql(svc, 'select "value", "expiresAt" - now() < interval \'181 seconds\' from "verification" '
                    'where "identifier" like %s', "2fa-otp-2fa-%")
    assert rows == [(f"{code}:0", True)]
    wrong = "000000" if code != "000000" else "111111"
    assert_error(c.post("two-factor/verify-otp", {"code": wrong}, cookie=tfc), 401, "INVALID_CODE")
    r = c.post("two-factor/verify-otp", {"code": code}, cookie=tfc)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == u.id and cookies_of(r)[S] and cookies_of(r)[TF] == ""
    # spent
    assert_error(c.post("two-factor/verify-otp", {"code": code}, cookie=tfc), 401,
                 "INVALID_TWO_FACTOR_COOKIE")


def test_otp_tries_are_limited(otp_tf, smtp_sink):
    svc, c = otp_tf()
    u = c.sign_up()
    enable(c, u)
    r = c.post("sign-in/email", {"email": u.email, "password": u.password})
    assert r.json() == {"twoFactorRedirect": True, "twoFactorMethods": ["totp", "otp"]}, r.text
    tfc = f"{TF}={cookies_of(r)[TF]}"
    assert c.post("two-factor/send-otp", cookie=tfc).status_code == 200
    code = mailed_code(smtp_sink, u.email, 1)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        assert_error(c.post("two-factor/verify-otp", {"code": wrong}, cookie=tfc), 401, "INVALID_CODE")
    assert_error(c.post("two-factor/verify-otp", {"code": code}, cookie=tfc), 400,
                 "TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE")
    # failures count toward the account's lock too
    assert sql(svc, 'select "failedVerificationCount" from "twoFactor" where "userId" = %s', u.id)[0][0] == 5


def test_otp_off_by_default(tf):
    svc, c = tf()
    u = c.sign_up()
    assert_error(c.post("two-factor/send-otp", cookie=u.cookie), 400, "OTP_NOT_CONFIGURED")
