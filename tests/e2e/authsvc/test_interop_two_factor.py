"""Interop: Better Auth 1.7.25's twoFactor plugin (server.mjs BA_TWO_FACTOR=1) and
authsvc (TWO_FACTOR_ENABLED) on ONE database with ONE secret and the same issuer.

2FA set up on one side, sign-in finished on the other, both ways; a sign-in started
on one side finished on the other; the TOTP URI and the backup codes are the same
rows to both (a backup code used on one side is refused on the other); a trusted
device of one side is trusted by the other; disable on one side is seen by the other."""

from __future__ import annotations

import os
import re

import pytest

import pcsupport as H
from pcsupport import assert_error
from pcsupport.checks import sensitive
from pcsupport.interop import better_auth, node_env, read_mail_log
from pcsupport.interop import install as install_dir
from pcsupport.two_factor import S, TF, TRUST, Totp, cookies_of, enable
from pcsupport.two_factor import challenge as _challenge

APP = "http://app.example.test"   # trusted by both (the suite's TRUSTED_ORIGINS)
ISSUER = "Portcullis Interop"


def challenge(c, user, cookie=None, **extra):
    # both sides mail codes (otpOptions.sendOTP / TWO_FACTOR_OTP_ENABLED): both offer otp
    return _challenge(c, user, cookie, methods=("totp", "otp"), **extra)


@pytest.fixture
def pair(authsvc_factory, secret, trusted_origins, tmp_path, smtp_sink):
    """(authsvc's client, Better Auth's client) on a fresh database; Better Auth's mailed
    codes go to tmp_path/ba-mail.jsonl, authsvc's to smtp_sink."""
    # MAIL_APP_NAME is Better Auth's default appName: get-totp-uri names the app, not
    # the issuer, on both sides
    svc = authsvc_factory({"TWO_FACTOR_ENABLED": "true", "TWO_FACTOR_ISSUER": ISSUER,
                           "MAIL_APP_NAME": "Better Auth", "TWO_FACTOR_OTP_ENABLED": "true",
                           "SMTP_URL": smtp_sink.url, "MAIL_FROM": "Test <no-reply@portcullis.test>",
                           "MAIL_RETRY_MAX_SECONDS": "1"},
                          fresh_db=True, name="authsvc-interop-2fa")
    with better_auth(svc.env["DATABASE_URL"], secret, trusted_origins, tmp_path,
                     BA_TWO_FACTOR="1", BA_TWO_FACTOR_ISSUER=ISSUER,
                     BA_MAIL_LOG=str(tmp_path / "ba-mail.jsonl")) as ba:
        ac, bc = H.ApiClient(svc, origin=APP), H.ApiClient(ba, origin=APP)
        assert bc.get("ok").status_code == 200, ba.logs()
        yield ac, bc
        ac.close()
        bc.close()


# each cross-side test runs both ways: `first` is the side that goes first
both_ways = pytest.mark.parametrize("first", ["better-auth", "authsvc"])


def two_sides(pair, first, sign_up_on, enable_on):
    """(first side's client, the other's, a user signed up on sign_up_on with 2FA set up
    on enable_on, its Totp, backup codes, session cookie); a side is "first",
    "second", "authsvc" or "better-auth"."""
    ac, bc = pair
    one, two = (bc, ac) if first == "better-auth" else (ac, bc)
    side = {"first": one, "second": two, "authsvc": ac, "better-auth": bc}
    u = side[sign_up_on].sign_up()
    return (one, two, u) + enable(side[enable_on], u)


def finish(c, tfc, code, route="verify-totp", **extra):
    body = {"code": code}
    body.update(extra)
    r = c.post(f"two-factor/{route}", body, cookie=tfc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"token", "user"}, body
    assert cookies_of(r)[S] and cookies_of(r)[TF] == ""
    return r


@both_ways
def test_enabled_on_one_side_sign_in_on_the_other(pair, first):
    ac, bc = pair
    setup, other, u, app, codes, cookie = two_sides(pair, first, "first", "first")
    # get-totp-uri is the same on both (the app name, the secret opened by either)
    uris = [sensitive(c.post("two-factor/get-totp-uri", {"password": u.password}, cookie=cookie)
                      .json()["totpURI"]) for c in (ac, bc)]
    assert uris[0] == uris[1] and uris[0].startswith("otpauth://totp/Better%20Auth:"), uris
    assert Totp(uris[0]).otp.secret == app.otp.secret
    # both ask for the second factor, with the same answer
    tf_other = challenge(other, u)
    challenge(setup, u)
    r = finish(other, tf_other, app.fresh_code())
    assert r.json()["user"]["id"] == u.id and r.json()["user"]["twoFactorEnabled"] is True
    assert set(r.json()["user"]) >= {"id", "email", "name", "emailVerified", "twoFactorEnabled"}
    tok = r.json()["token"]
    users = [c.session_of(bearer=tok)["user"] for c in (ac, bc)]
    assert users[0] == users[1] and users[0]["twoFactorEnabled"] is True, users
    assert list(users[0]) == list(users[1]), users
    # a backup code from the setup side works on the other
    r = finish(other, challenge(other, u), codes[0], route="verify-backup-code")
    assert r.json()["user"]["id"] == u.id


@both_ways
def test_backup_code_used_on_one_side_is_refused_on_the_other(pair, first):
    one, two, u, _app, codes, _cookie = two_sides(pair, first, "authsvc", "better-auth")
    assert u.body["user"]["twoFactorEnabled"] is False
    finish(one, challenge(one, u), codes[5], route="verify-backup-code")
    assert_error(two.post("two-factor/verify-backup-code", {"code": codes[5]}, cookie=challenge(two, u)),
                 401, "INVALID_BACKUP_CODE")
    # the other nine still work, on either side
    finish(two, challenge(two, u), codes[6], route="verify-backup-code")
    finish(one, challenge(one, u), codes[7], route="verify-backup-code")


@both_ways
def test_sign_in_started_on_one_side_finished_on_the_other(pair, first):
    start, end, u, app, _codes, _cookie = two_sides(pair, first, "better-auth", "authsvc")
    tfc = challenge(start, u)
    assert_error(end.post("two-factor/verify-totp", {"code": "000000"}, cookie=tfc), 401, "INVALID_CODE")
    r = finish(end, tfc, app.fresh_code(), trustDevice=True)
    trust = cookies_of(r)[TRUST]
    # the trusted device lets the sign-in through on the side that started it
    r = start.post("sign-in/email", {"email": u.email, "password": u.password}, cookie=f"{TRUST}={trust}")
    assert r.status_code == 200 and r.json().get("token"), r.text
    renewed = cookies_of(r)[TRUST]
    assert renewed and renewed != trust
    r = end.post("sign-in/email", {"email": u.email, "password": u.password}, cookie=f"{TRUST}={renewed}")
    assert r.status_code == 200 and r.json().get("token"), r.text


def test_attempt_limit_shared(pair):
    ac, bc = pair
    u = ac.sign_up()
    app, _codes, _cookie = enable(ac, u)
    tfc = challenge(bc, u)
    for c in (ac, bc, ac, bc, ac):
        assert_error(c.post("two-factor/verify-totp", {"code": "999999x"}, cookie=tfc), 401, "INVALID_CODE")
    for c in (bc, ac):
        r = c.post("two-factor/verify-totp", {"code": app.peek_code()}, cookie=tfc)
        assert r.status_code in (400, 401), r.text
    assert_error(bc.post("two-factor/verify-totp", {"code": app.peek_code()}, cookie=tfc), 401,
                 "INVALID_TWO_FACTOR_COOKIE")


@both_ways
def test_disable_on_one_side(pair, first):
    ac, bc = pair
    c, _other, u, _app, _codes, cookie = two_sides(pair, first, "first", "second")
    r = c.post("two-factor/disable", {"password": u.password}, cookie=cookie)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    for x in (ac, bc):
        r = x.post("sign-in/email", {"email": u.email, "password": u.password})
        assert r.status_code == 200 and r.json().get("token"), r.text


def _ba_otp(log, to, count):
    H.wait_until(lambda: len(read_mail_log(log, to=to, kind="two-factor-otp")) >= count, 10,
                 what=f"Better Auth's two-factor OTP to {to}")
    return sensitive(read_mail_log(log, to=to, kind="two-factor-otp")[count - 1]["otp"])


def _our_otp(sink, to, count):
    m = sink.wait_for(to, count=count)[count - 1]
    return sensitive(re.search(r"sign-in code is (\d{6})", m.text).group(1))


@both_ways
def test_mailed_code_sent_by_one_side_verified_by_the_other(pair, first, smtp_sink, tmp_path):
    one, two, u, _app, _codes, _cookie = two_sides(pair, first, "first", "second")
    ac, _bc = pair
    mail = (lambda n: _our_otp(smtp_sink, u.email, n)) if one is ac else \
        (lambda n: _ba_otp(tmp_path / "ba-mail.jsonl", u.email, n))
    tfc = challenge(two, u)
    r = one.post("two-factor/send-otp", cookie=tfc)
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    finish(two, tfc, mail(1), route="verify-otp")
    # and enable {method:"otp"} on one side is a second factor to the other
    v = one.sign_up()
    r = one.post("two-factor/enable", {"password": v.password, "method": "otp"}, cookie=v.cookie)
    assert r.status_code == 200 and r.json() == {"method": "otp"}, r.text
    r = two.post("sign-in/email", {"email": v.email, "password": v.password})
    assert r.json() == {"twoFactorRedirect": True, "twoFactorMethods": ["otp"]}, r.text
    tfc = f"{TF}={cookies_of(r)[TF]}"
    assert one.post("two-factor/send-otp", cookie=tfc).status_code == 200
    code = (_our_otp(smtp_sink, v.email, 1) if one is ac
            else _ba_otp(tmp_path / "ba-mail.jsonl", v.email, 1))
    finish(two, tfc, code, route="verify-otp")


SCHEMA_QUERIES = (
    "select table_name, column_name, data_type, is_nullable, coalesce(column_default, '') "
    "from information_schema.columns where table_schema = 'public' and "
    "(table_name = 'twoFactor' or column_name = 'twoFactorEnabled') order by 1, 2",
    "select indexname, indexdef from pg_indexes where tablename = 'twoFactor' order by 1",
    "select conname, pg_get_constraintdef(oid) from pg_constraint "
    "where conrelid = '\"twoFactor\"'::regclass order by 1",
)


def _schema(conn):
    """The plugin's columns, indexes and keys as the catalogs show them."""
    out = []
    with conn.cursor() as cur:
        for q in SCHEMA_QUERIES:
            cur.execute(q)
            out.append(cur.fetchall())
    return out


def test_migration_is_better_auths(pg, secret, redis_srv):
    """authsvc migrate leaves Better Auth's migrate (twoFactor on) nothing to do, and on a
    database Better Auth migrated it changes nothing: the same columns, indexes and keys."""
    d = install_dir()
    ours, theirs = "tf_ours_" + os.urandom(3).hex(), "tf_ba_" + os.urandom(3).hex()
    env = {"BETTER_AUTH_SECRET": secret, "REDIS_URL": redis_srv.url}
    url = pg.create_database(ours)
    r = H.run_authsvc(["migrate"], env={**env, "DATABASE_URL": url}, timeout=60)
    assert r.returncode == 0, r.stderr
    r = H.run_bounded(["node", "server.mjs", "--print-ddl"], cwd=d, timeout=60,
                      env=node_env({"DATABASE_URL": url, "BA_TWO_FACTOR": "1"}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == ";", r.stdout.decode()
    url2 = pg.create_database(theirs)
    r = H.run_bounded(["node", "server.mjs", "--migrate"], cwd=d, timeout=60,
                      env=node_env({"DATABASE_URL": url2, "BA_TWO_FACTOR": "1"}))
    assert r.returncode == 0, r.stderr
    c1, c2 = pg.connect(ours), pg.connect(theirs)
    try:
        before = _schema(c2)
        r = H.run_authsvc(["migrate"], env={**env, "DATABASE_URL": url2}, timeout=60)
        assert r.returncode == 0, r.stderr
        assert _schema(c2) == before
        assert _schema(c1) == before
    finally:
        c1.close()
        c2.close()
