"""Sign-out and session revocation: PostgreSQL row deleted, Redis entry deleted and the
token hash PUBLISHed on the revocation channel (design.md "Revocation", compat doc §5)."""

import pytest

import pcsupport as H
from pcsupport import assert_4xx_json


@pytest.fixture
def user(client):
    return client.sign_up(name="Revoke User")


def assert_revoked(client, db, redis_client, *users):
    for u in users:
        assert db.session_row(u.token) is None, f"session row of {u.token[:4]}... still there"
        key = H.session_key(u.token)
        H.wait_until(lambda: not redis_client.exists(key), 2, what=f"Redis DEL of {key}")
        assert client.session_of(bearer=u.token) is None


def assert_alive(client, db, redis_client, *users):
    for u in users:
        assert db.session_row(u.token) is not None
        assert client.session_of(bearer=u.token) is not None


def assert_published(revocations, *users):
    want = {H.token_hash(u.token) for u in users}
    seen = revocations.wait_for(want, timeout=5)
    missing = want - seen
    assert not missing, f"no PUBLISH on {H.DEFAULT_REVOCATION_CHANNEL} for {len(missing)} revoked session(s); saw {seen}"


def assert_not_published(revocations, *users):
    seen = set(revocations.drain(0.4))
    for u in users:
        assert H.token_hash(u.token) not in seen, "a live session was announced as revoked"


def test_sign_out_with_cookie(client, user, db, redis_client, revocations):
    assert redis_client.exists(H.session_key(user.token))
    r = client.post("sign-out", cookie=user.cookie)
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    value, attrs = H.set_cookies(r).get(H.SESSION_COOKIE, (None, {}))
    assert attrs.get("max-age") == "0" and value == "", f"cookie not cleared: {H.set_cookie_headers(r)}"
    assert_revoked(client, db, redis_client, user)
    assert_published(revocations, user)
    assert client.session_of(user) is None


def test_sign_out_with_bearer_needs_no_origin(client, user, db, redis_client, revocations):
    r = client.post("sign-out", bearer=user.signed, origin=None)
    assert r.status_code == 200, r.text
    assert_revoked(client, db, redis_client, user)
    assert_published(revocations, user)


def test_sign_out_only_ends_the_current_session(client, user, db, redis_client, revocations):
    other = client.sign_in(user.email, user.password)
    r = client.post("sign-out", cookie=user.cookie)
    assert r.status_code == 200, r.text
    assert_revoked(client, db, redis_client, user)
    assert_alive(client, db, redis_client, other)
    assert_not_published(revocations, other)


def test_sign_out_without_session_changes_nothing(client, user, db):
    before = db.snapshot()
    r = client.post("sign-out")
    assert r.status_code in (200, 400, 401), r.text
    assert "application/json" in r.headers.get("content-type", "")
    assert db.snapshot() == before


def test_revoke_session_of_another_own_session(client, user, db, redis_client, revocations):
    other = client.sign_in(user.email, user.password)
    r = client.post("revoke-session", {"token": other.token}, cookie=user.cookie)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True}
    assert_revoked(client, db, redis_client, other)
    assert_alive(client, db, redis_client, user)
    assert_published(revocations, other)
    assert_not_published(revocations, user)


def test_revoke_current_session(client, user, db, redis_client, revocations):
    r = client.post("revoke-session", {"token": user.token}, bearer=user.token)
    assert r.status_code == 200, r.text
    assert_revoked(client, db, redis_client, user)
    assert_published(revocations, user)


def test_revoke_session_of_another_user_is_a_noop(client, user, db, redis_client, revocations):
    victim = client.sign_up(name="Victim")
    r = client.post("revoke-session", {"token": victim.token}, cookie=user.cookie)
    assert r.status_code in (200, 403, 404), r.text
    if r.status_code == 200:
        assert r.json() == {"status": True}
    assert_alive(client, db, redis_client, victim, user)
    assert redis_client.exists(H.session_key(victim.token))
    assert_not_published(revocations, victim)


def test_revoke_session_unknown_token(client, user, db):
    before = db.snapshot()
    r = client.post("revoke-session", {"token": H.generate_id()}, bearer=user.token)
    assert r.status_code in (200, 404), r.text
    assert db.snapshot() == before


def test_revoke_sessions(client, user, db, redis_client, revocations):
    s2 = client.sign_in(user.email, user.password)
    s3 = client.sign_in(user.email, user.password)
    bystander = client.sign_up(name="Bystander")
    r = client.post("revoke-sessions", {}, cookie=s2.cookie)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True}
    assert db.scalar('select count(*) from "session" where "userId" = %s', (user.id,)) == 0
    assert_revoked(client, db, redis_client, user, s2, s3)
    assert_published(revocations, user, s2, s3)
    assert_alive(client, db, redis_client, bystander)
    assert_not_published(revocations, bystander)
    value, attrs = H.set_cookies(r).get(H.SESSION_COOKIE, (None, {}))
    assert attrs.get("max-age") == "0", f"cookie not cleared: {H.set_cookie_headers(r)}"


def test_revoke_other_sessions(client, user, db, redis_client, revocations):
    s2 = client.sign_in(user.email, user.password)
    s3 = client.sign_in(user.email, user.password)
    r = client.post("revoke-other-sessions", {}, bearer=s2.signed)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True}
    assert_revoked(client, db, redis_client, user, s3)
    assert_alive(client, db, redis_client, s2)
    assert_published(revocations, user, s3)
    assert_not_published(revocations, s2)


@pytest.mark.parametrize("path,body", [
    ("sign-out", {}),
    ("revoke-session", {"token": "x" * 32}),
    ("revoke-sessions", {}),
    ("revoke-other-sessions", {}),
])
def test_revocation_routes_need_a_valid_session(client, user, db, secret, path, body):
    before = db.snapshot()
    if path != "sign-out":
        assert_4xx_json(client.post(path, body), 401)
    forged = H.signed_value("forged-secret-" + "y" * 32, user.token)
    r = client.post(path, body, bearer=forged)
    if path == "sign-out":
        assert r.status_code in (200, 400, 401), r.text
    else:
        assert_4xx_json(r, 401)
    assert db.snapshot() == before
    assert client.session_of(user) is not None


def test_revoke_session_needs_a_token(client, user, db):
    before = db.snapshot()
    for body in ({}, {"token": 12345}, {"token": None}):
        r = client.post("revoke-session", body, bearer=user.token)
        assert_4xx_json(r, 400)
    assert db.snapshot() == before
