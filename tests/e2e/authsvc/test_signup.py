"""POST /api/auth/sign-up/email (compat doc §1, §2, §3, §5, §6)."""

import re
import urllib.parse

import pcsupport as H
from pcsupport import assert_error

ID_RE = re.compile(r"^[A-Za-z0-9]{32}$")
ISO_MS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HASH_RE = re.compile(r"^[0-9a-f]{32}:[0-9a-f]{128}$")


def test_sign_up_returns_token_user_cookie_and_rows(client, db, secret, redis_client):
    email = H.unique_email("SignUp")            # mixed case on purpose
    password = H.new_password()
    r = client.post("sign-up/email", {"name": "Ada Lovelace", "email": email, "password": password},
                    headers={"User-Agent": "e2e-signup/1.0"})
    assert r.status_code == 200, r.text
    assert "application/json" in r.headers.get("content-type", "")
    body = r.json()
    token, user = body["token"], body["user"]
    assert ID_RE.match(token), token
    assert ID_RE.match(user["id"]), user
    assert user["email"] == email.lower()
    assert user["name"] == "Ada Lovelace"
    assert user["emailVerified"] is False
    assert user.get("image") is None
    assert ISO_MS_RE.match(user["createdAt"]) and ISO_MS_RE.match(user["updatedAt"]), user
    assert "password" not in user and "password" not in r.text

    # cookie: better-auth.session_token=urlencode(token.sig); Max-Age=604800; Path=/; HttpOnly; SameSite=Lax
    cookies = H.set_cookies(r)
    assert H.SESSION_COOKIE in cookies, H.set_cookie_headers(r)
    value, attrs = cookies[H.SESSION_COOKIE]
    assert value == H.cookie_value(secret, token)
    assert urllib.parse.unquote(value) == H.signed_value(secret, token)
    assert attrs.get("max-age") == "604800", attrs
    assert attrs.get("path") == "/", attrs
    assert attrs.get("httponly") is True, attrs
    assert str(attrs.get("samesite", "")).lower() == "lax", attrs
    assert "secure" not in attrs, "http BETTER_AUTH_URL must not give Secure cookies"
    assert r.headers.get("set-auth-token") == H.signed_value(secret, token)

    # rows
    u = db.user_row(email=email.lower())
    assert u is not None and u["id"] == user["id"]
    assert u["emailVerified"] is False and u["name"] == "Ada Lovelace" and u["image"] is None
    acct = db.credential(u["id"])
    assert acct is not None, "credential account row missing"
    assert acct["accountId"] == u["id"], "accountId must equal user.id (§3)"
    assert HASH_RE.match(acct["password"]), acct["password"]
    assert ID_RE.match(acct["id"])
    s = db.session_row(token)
    assert s is not None and s["userId"] == u["id"]
    assert ID_RE.match(s["id"])
    assert s["userAgent"] == "e2e-signup/1.0"
    left = db.seconds_left(token)
    assert 604800 - 120 < left <= 604800 + 5, left

    # Redis write-through under pc:s:<b64url(sha256(token))>, TTL <= remaining life
    key = H.session_key(token)
    assert redis_client.exists(key), f"{key} missing in Redis"
    ttl = redis_client.ttl(key)
    assert 0 < ttl <= left + 2, (ttl, left)
    assert not any(token.encode() in k for k in redis_client.keys("*")), "raw token in a Redis key"


def test_sign_up_session_is_usable(client, secret):
    u = client.sign_up()
    s = client.session_of(u)
    assert s is not None
    assert s["user"]["email"] == u.email.lower()
    assert s["session"]["token"] == u.token
    assert s["session"]["userId"] == u.id


def test_duplicate_email_is_422_even_with_other_case(client, db):
    u = client.sign_up(email=H.unique_email("dup"))
    before = db.snapshot()
    for email in (u.email, u.email.upper()):
        r = client.post("sign-up/email", {"name": "Again", "email": email, "password": H.new_password()})
        assert_error(r, 422, "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL")
        assert H.SESSION_COOKIE not in H.set_cookies(r)
    assert db.snapshot() == before
    # the original password still works
    client.sign_in(u.email, u.password)


def test_sign_up_with_image_and_relative_callback(client, db):
    email = H.unique_email()
    r = client.post("sign-up/email", {"name": "Img", "email": email, "password": H.new_password(),
                                      "image": "https://img.example.test/a.png", "callbackURL": "/welcome"})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["image"] == "https://img.example.test/a.png"
    assert db.user_row(email=email)["image"] == "https://img.example.test/a.png"


def test_password_length_boundaries_accepted(client):
    for n in (8, 128):
        pw = H.sensitive(("Ab1-" + "x" * 200)[:n])
        assert len(pw) == n
        u = client.sign_up(password=pw)
        client.sign_in(u.email, pw)


def test_password_length_limits_rejected(client, db):
    before = db.snapshot()
    r = client.post("sign-up/email", {"name": "S", "email": H.unique_email(),
                                      "password": H.sensitive("Sh0rt-7")})
    assert_error(r, 400, "PASSWORD_TOO_SHORT")
    r = client.post("sign-up/email", {"name": "L", "email": H.unique_email(),
                                      "password": H.sensitive("L" * 129)})
    assert_error(r, 400, "PASSWORD_TOO_LONG")
    assert db.snapshot() == before


def test_two_sign_ups_get_distinct_ids_and_tokens(client):
    a, b = client.sign_up(), client.sign_up()
    assert a.id != b.id and a.token != b.token
