"""GET /api/auth/get-session and /list-sessions: cookie and bearer, tampering, expiry,
sliding refresh, rememberMe:false, the __Secure- prefix (compat doc §2, §5, §6)."""

import base64
import datetime as dt
import time
import urllib.parse

import pytest

import pcsupport as H
from pcsupport import assert_4xx_json, assert_error

DAY = 86400


@pytest.fixture
def user(client):
    return client.sign_up(name="Session User")


def _iso(s):
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def _forget_cache(redis_client, token):
    """Redis is only a cache and may be flushed at any time (design.md): drop the entry
    so that the server reads the row we just edited in SQL."""
    redis_client.delete(H.session_key(token))


def test_get_session_with_cookie(client, user):
    r = client.get_session(user)
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers.get("Cache-Control", ""), r.headers
    body = r.json()
    s, u = body["session"], body["user"]
    assert s["token"] == user.token and s["userId"] == user.id
    for k in ("id", "expiresAt", "createdAt", "updatedAt", "ipAddress", "userAgent"):
        assert k in s, (k, s)
    for k in ("id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt"):
        assert k in u, (k, u)
    assert u["id"] == user.id and u["name"] == "Session User"
    assert abs((_iso(s["expiresAt"]) - dt.datetime.now(dt.timezone.utc)).total_seconds() - 7 * DAY) < 300


def test_get_session_without_credentials_is_null(client):
    r = client.get("get-session")
    assert r.status_code == 200
    assert r.json() is None and r.text.strip() == "null"


def _bearer_forms(secret, token):
    signed = H.signed_value(secret, token)
    tok, sig = signed.rsplit(".", 1)
    urlsafe_nopad = sig.replace("+", "-").replace("/", "_").rstrip("=")
    return {
        "signed": f"Bearer {signed}",
        "raw": f"Bearer {token}",
        "urlencoded": f"Bearer {urllib.parse.quote(signed, safe='')}",
        "lowercase-scheme": f"bearer {signed}",
        # Better Auth's bearer hook verifies a base64url/unpadded signature too, but then
        # hands the value to the cookie reader, which wants 44 chars ending in '=': so
        # Better Auth 1.7.25 answers null for this form (checked against the real server).
        "base64url-nopad-sig": f"Bearer {tok}.{urlsafe_nopad}",
    }


@pytest.mark.parametrize("form", ["signed", "raw", "urlencoded", "lowercase-scheme"])
def test_get_session_with_bearer(client, user, secret, form):
    auth = _bearer_forms(secret, user.token)[form]
    r = client.get("get-session", headers={"Authorization": auth})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body is not None, f"bearer form {form!r} was not accepted"
    assert body["session"]["token"] == user.token


def test_cookie_among_other_cookies(client, user):
    r = client.get("get-session", cookie=f"theme=dark; {user.cookie}; other=1")
    assert r.status_code == 200 and r.json()["session"]["token"] == user.token


def _tampered_cookies(secret, token):
    signed = H.signed_value(secret, token)
    tok, sig = signed.rsplit(".", 1)
    # flip a character in the middle: the last data character of a 32-byte MAC carries
    # 2 unused bits, and a lenient decoder may ignore a change there
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    other_tok = ("a" if tok[0] != "a" else "b") + tok[1:]
    wrong_secret = H.signed_value("not-the-secret-" + "x" * 32, token)
    return {
        "flipped-signature": f"{tok}.{flipped}",
        "other-token-same-signature": f"{other_tok}.{sig}",
        "signature-without-padding": f"{tok}.{sig.rstrip('=')}",
        "wrong-secret": wrong_secret,
        "token-only": tok,
        "empty": "",
        "garbage": "%%%...%%%",
        "two-dots": f"{tok}.{sig}.{sig}",
    }


@pytest.mark.parametrize("kind", ["flipped-signature", "other-token-same-signature",
                                  "signature-without-padding", "wrong-secret", "token-only",
                                  "empty", "garbage", "two-dots"])
def test_tampered_cookie_gives_no_session(client, user, secret, db, kind):
    value = _tampered_cookies(secret, user.token)[kind]
    enc = urllib.parse.quote(value, safe="-_.!~*'()%")
    r = client.get("get-session", cookie=f"{H.SESSION_COOKIE}={enc}")
    assert r.status_code == 200, r.text
    assert r.json() is None, f"tampered cookie ({kind}) was accepted"
    # the real session is untouched
    assert db.session_row(user.token) is not None
    assert client.session_of(user) is not None


@pytest.mark.parametrize("auth", ["flipped-signature", "other-token-same-signature", "wrong-secret",
                                  "unknown-raw-token", "garbage", "empty-bearer", "basic-scheme"])
def test_tampered_bearer_gives_no_session(client, user, secret, db, auth):
    forms = _tampered_cookies(secret, user.token)
    value = {
        "flipped-signature": f"Bearer {forms['flipped-signature']}",
        "other-token-same-signature": f"Bearer {forms['other-token-same-signature']}",
        "wrong-secret": f"Bearer {forms['wrong-secret']}",
        "unknown-raw-token": f"Bearer {H.generate_id()}",
        "garbage": "Bearer !!not-a-token!!",
        "empty-bearer": "Bearer ",
        "basic-scheme": "Basic " + base64.b64encode(f"{user.email}:{user.password}".encode()).decode(),
    }[auth]
    r = client.get("get-session", headers={"Authorization": value})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json() is None, f"tampered bearer ({auth}) was accepted"
    assert db.session_row(user.token) is not None


def test_sliding_refresh_moves_expiry_and_resends_cookie(client, user, db, redis_client, secret):
    db.execute('update "session" set "expiresAt" = now() + interval \'5 days\', '
               '"updatedAt" = now() - interval \'2 days\' where token = %s', (user.token,))
    _forget_cache(redis_client, user.token)
    before_updated = db.session_row(user.token)["updatedAt"]
    r = client.get_session(user)
    assert r.status_code == 200 and r.json() is not None, r.text
    left = db.seconds_left(user.token)
    assert 7 * DAY - 120 < left <= 7 * DAY + 5, f"expiresAt not moved to now+7d: {left / DAY:.3f} d left"
    assert db.session_row(user.token)["updatedAt"] > before_updated
    cookies = H.set_cookies(r)
    assert H.SESSION_COOKIE in cookies, f"no Set-Cookie on refresh: {H.set_cookie_headers(r)}"
    value, attrs = cookies[H.SESSION_COOKIE]
    assert urllib.parse.unquote(value) == H.signed_value(secret, user.token)
    assert attrs.get("max-age") == "604800"
    got = _iso(r.json()["session"]["expiresAt"])
    assert abs((got - dt.datetime.now(dt.timezone.utc)).total_seconds() - 7 * DAY) < 300
    # the cache entry (if re-written) may not outlive the session
    key = H.session_key(user.token)
    if redis_client.exists(key):
        assert 0 < redis_client.ttl(key) <= left + 2


def test_no_refresh_within_update_age(client, user, db):
    before = db.session_row(user.token)["expiresAt"]
    r = client.get_session(user)
    assert r.status_code == 200 and r.json() is not None
    assert db.session_row(user.token)["expiresAt"] == before


def test_disable_refresh_query(client, user, db, redis_client):
    db.execute('update "session" set "expiresAt" = now() + interval \'5 days\' where token = %s', (user.token,))
    _forget_cache(redis_client, user.token)
    before = db.session_row(user.token)["expiresAt"]
    r = client.get_session(user, params={"disableRefresh": "true"})
    assert r.status_code == 200 and r.json() is not None, r.text
    assert db.session_row(user.token)["expiresAt"] == before


def test_expired_session_is_null_and_deleted(client, user, db, redis_client):
    db.execute('update "session" set "expiresAt" = now() - interval \'1 minute\' where token = %s',
               (user.token,))
    _forget_cache(redis_client, user.token)
    r = client.get_session(user)
    assert r.status_code == 200
    assert r.json() is None, "expired session was returned"
    H.wait_until(lambda: db.session_row(user.token) is None, 3, what="expired session row deleted")
    value, attrs = H.set_cookies(r).get(H.SESSION_COOKIE, (None, {}))
    assert attrs.get("max-age") == "0", f"session cookie not expired: {H.set_cookie_headers(r)}"
    # and through a bearer it is gone too
    assert client.session_of(bearer=user.token) is None


def test_remember_me_false(client, user, db, redis_client, secret):
    r = client.post("sign-in/email", {"email": user.email, "password": user.password, "rememberMe": False})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    cookies = H.set_cookies(r)
    value, attrs = cookies[H.SESSION_COOKIE]
    assert urllib.parse.unquote(value) == H.signed_value(secret, token)
    assert "max-age" not in attrs and "expires" not in attrs, f"not a browser-session cookie: {attrs}"
    assert client.dont_remember_name in cookies, H.set_cookie_headers(r)
    dr_value, dr_attrs = cookies[client.dont_remember_name]
    assert urllib.parse.unquote(dr_value) == H.signed_value(secret, "true")
    assert dr_attrs.get("httponly") is True
    left = db.seconds_left(token)
    assert DAY - 120 < left <= DAY + 5, f"rememberMe:false session lives {left / DAY:.3f} d"
    key = H.session_key(token)
    if redis_client.exists(key):
        assert 0 < redis_client.ttl(key) <= left + 2

    # with the dont_remember cookie the session is never refreshed
    db.execute('update "session" set "expiresAt" = now() + interval \'12 hours\', '
               '"updatedAt" = now() - interval \'2 days\' where token = %s', (token,))
    _forget_cache(redis_client, token)
    before = db.session_row(token)["expiresAt"]
    both = f"{H.SESSION_COOKIE}={value}; {client.dont_remember_name}={dr_value}"
    r2 = client.get("get-session", cookie=both)
    assert r2.status_code == 200 and r2.json() is not None, r2.text
    assert db.session_row(token)["expiresAt"] == before


def test_list_sessions(client, user, db):
    s2 = client.sign_in(user.email, user.password)
    s3 = client.sign_in(user.email, user.password)
    other = client.sign_up()
    expired = client.sign_in(user.email, user.password)
    db.execute('update "session" set "expiresAt" = now() - interval \'1 minute\' where token = %s',
               (expired.token,))
    r = client.get("list-sessions", cookie=user.cookie)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert isinstance(rows, list)
    tokens = {row["token"] for row in rows}
    assert tokens == {user.token, s2.token, s3.token}, tokens
    assert other.token not in tokens
    for row in rows:
        assert row["userId"] == user.id
        for k in ("id", "expiresAt", "createdAt", "updatedAt"):
            assert k in row


def test_list_sessions_with_bearer(client, user):
    r = client.get("list-sessions", bearer=user.token)
    assert r.status_code == 200, r.text
    assert [row["token"] for row in r.json()] == [user.token]


def test_list_sessions_needs_a_session(client):
    assert_4xx_json(client.get("list-sessions"), 401)


def test_list_sessions_needs_a_fresh_session(client, user, db, redis_client):
    db.execute('update "session" set "createdAt" = now() - interval \'2 days\' where token = %s',
               (user.token,))
    _forget_cache(redis_client, user.token)
    r = client.get("list-sessions", cookie=user.cookie)
    assert_error(r, 403, "SESSION_NOT_FRESH")


def test_https_base_url_uses_secure_prefix(authsvc_factory, client_for, secret):
    svc = authsvc_factory({"BETTER_AUTH_URL": "https://auth.example.test"}, name="authsvc-https")
    c = client_for(svc)
    assert c.cookie_name == "__Secure-better-auth.session_token"
    u = c.sign_up()
    cookies = H.set_cookies(u.response)
    assert "__Secure-better-auth.session_token" in cookies, H.set_cookie_headers(u.response)
    assert H.SESSION_COOKIE not in cookies
    value, attrs = cookies["__Secure-better-auth.session_token"]
    assert attrs.get("secure") is True
    assert attrs.get("httponly") is True and attrs.get("max-age") == "604800"
    assert urllib.parse.unquote(value) == H.signed_value(secret, u.token)
    # the server reads only the exact (prefixed) name
    assert c.session_of(cookie=u.cookie)["session"]["token"] == u.token
    assert c.session_of(cookie=f"{H.SESSION_COOKIE}={value}") is None
    assert c.session_of(bearer=u.token) is not None
    # sign-out with a cookie needs the https origin
    r = c.post("sign-out", cookie=u.cookie, origin="https://auth.example.test")
    assert r.status_code == 200, r.text


def test_session_survives_cache_loss(client, user, redis_client):
    """Redis may be flushed at any time: the session then comes from PostgreSQL."""
    _forget_cache(redis_client, user.token)
    assert client.session_of(user)["session"]["token"] == user.token
    time.sleep(0.05)
    assert client.session_of(bearer=user.token) is not None
