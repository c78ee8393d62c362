"""POST /api/auth/update-user and /change-password (compat doc §3, §5)."""

import re
import time
import urllib.parse

import pytest

import pcsupport as H
from pcsupport import assert_4xx_json, assert_error

HASH_RE = re.compile(r"^[0-9a-f]{32}:[0-9a-f]{128}$")


@pytest.fixture
def user(client):
    return client.sign_up(name="Original Name")


def test_update_user_name_and_image(client, user, db):
    before = db.user_row(id=user.id)
    time.sleep(0.01)
    r = client.post("update-user", {"name": "New Name", "image": "https://img.example.test/n.png"},
                    bearer=user.signed)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True}
    after = db.user_row(id=user.id)
    assert after["name"] == "New Name" and after["image"] == "https://img.example.test/n.png"
    assert after["updatedAt"] > before["updatedAt"]
    assert after["email"] == before["email"] and after["emailVerified"] == before["emailVerified"]
    # get-session sees the new values (no stale cache)
    s = client.session_of(user)
    assert s["user"]["name"] == "New Name"
    assert s["user"]["image"] == "https://img.example.test/n.png"


def test_update_user_with_cookie_and_origin(client, user, db):
    r = client.post("update-user", {"name": "Cookie Name"}, cookie=user.cookie)
    assert r.status_code == 200, r.text
    assert db.user_row(id=user.id)["name"] == "Cookie Name"
    assert client.session_of(bearer=user.token)["user"]["name"] == "Cookie Name"


def test_update_user_cannot_change_email(client, user, db):
    before = db.snapshot()
    r = client.post("update-user", {"email": "new-" + user.email}, bearer=user.token)
    assert_error(r, 400, "EMAIL_CAN_NOT_BE_UPDATED")
    assert db.snapshot() == before


def test_update_user_with_nothing_to_update(client, user, db):
    before = db.snapshot()
    assert_4xx_json(client.post("update-user", {}, bearer=user.token), 400)
    assert db.snapshot() == before


def test_update_user_needs_a_session(client, db):
    before = db.snapshot()
    assert_4xx_json(client.post("update-user", {"name": "Nobody"}), 401)
    assert db.snapshot() == before


def test_change_password_wrong_current(client, user, db):
    before = db.snapshot()
    r = client.post("change-password", {"currentPassword": H.sensitive("Not-the-password-1"),
                                         "newPassword": H.new_password()}, bearer=user.token)
    assert_error(r, 400, "INVALID_PASSWORD")
    assert db.snapshot() == before
    client.sign_in(user.email, user.password)


def test_change_password_keeps_sessions(client, user, db, revocations):
    other = client.sign_in(user.email, user.password)
    old_hash = db.credential(user.id)["password"]
    new = H.new_password("New")
    r = client.post("change-password", {"currentPassword": user.password, "newPassword": new},
                    cookie=user.cookie)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] is None
    assert body["user"]["id"] == user.id and "password" not in r.text
    stored = db.credential(user.id)["password"]
    assert stored != old_hash and HASH_RE.match(stored)
    assert H.scrypt_verify(new, stored)
    assert_error(client.post("sign-in/email", {"email": user.email, "password": user.password}),
                 401, "INVALID_EMAIL_OR_PASSWORD")
    client.sign_in(user.email, new)
    assert client.session_of(user) is not None
    assert client.session_of(other) is not None
    seen = set(revocations.drain(0.3))
    assert H.token_hash(user.token) not in seen and H.token_hash(other.token) not in seen


def test_change_password_revoke_other_sessions(client, user, db, redis_client, revocations, secret):
    other = client.sign_in(user.email, user.password)
    bystander = client.sign_up(name="Bystander")
    new = H.new_password("New")
    r = client.post("change-password", {"currentPassword": user.password, "newPassword": new,
                                         "revokeOtherSessions": True}, bearer=user.token)
    assert r.status_code == 200, r.text
    body = r.json()
    token = body["token"]
    assert isinstance(token, str) and re.match(r"^[A-Za-z0-9]{32}$", token), body
    assert token not in (user.token, other.token)
    assert body["user"]["id"] == user.id
    value, attrs = H.set_cookies(r)[H.SESSION_COOKIE]
    assert urllib.parse.unquote(value) == H.signed_value(secret, token)
    assert attrs.get("max-age") == "604800"
    assert r.headers.get("set-auth-token") == H.signed_value(secret, token)
    # every old session is gone, the new one works
    for old in (user, other):
        assert db.session_row(old.token) is None
        key = H.session_key(old.token)
        H.wait_until(lambda: not redis_client.exists(key), 2, what="Redis DEL")
        assert client.session_of(bearer=old.token) is None
    assert [row[0] for row in db.all('select token from "session" where "userId" = %s', (user.id,))] == [token]
    assert client.session_of(bearer=token)["user"]["id"] == user.id
    want = {H.token_hash(user.token), H.token_hash(other.token)}
    assert want <= revocations.wait_for(want, 5)
    assert client.session_of(bystander) is not None
    client.sign_in(user.email, new)


@pytest.mark.parametrize("new_password,code", [
    ("Sh0rt-7", "PASSWORD_TOO_SHORT"),
    ("L" * 129, "PASSWORD_TOO_LONG"),
], ids=["7-chars", "129-chars"])
def test_change_password_length_limits(client, user, db, new_password, code):
    H.sensitive(new_password)
    before = db.snapshot()
    r = client.post("change-password", {"currentPassword": user.password, "newPassword": new_password},
                    bearer=user.token)
    assert_error(r, 400, code)
    assert db.snapshot() == before


def test_change_password_needs_a_session(client, user, db):
    before = db.snapshot()
    r = client.post("change-password", {"currentPassword": user.password, "newPassword": H.new_password()})
    assert_4xx_json(r, 401)
    assert db.snapshot() == before
