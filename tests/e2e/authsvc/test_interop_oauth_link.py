"""Interop: link-social and account-info between a real Better Auth 1.7.25 and
authsvc on ONE database with ONE secret, with Google played by the fake
provider (fake_idp.py; Better Auth reaches it through server.mjs's BA_GOOGLE).

A link started on one side is finished by the other side's callback: the
state row, its "link" and the session token sealed in it
(encryptedSessionToken, under derivePurposeKey) are each side's own, so each
test is the other side judging them. The browser is played here: the
authorization URL goes to the fake provider with the finishing side's
redirect_uri, as one BETTER_AUTH_URL behind a load balancer would have it.
"""

from __future__ import annotations

import secrets
import urllib.parse

import pytest
import requests

import pcsupport as H
from pcsupport.fake_idp import FakeIdP
from pcsupport.interop import better_auth

APP = "http://app.example.test"   # trusted by both (the suite's TRUSTED_ORIGINS)
STATE_COOKIE = "better-auth.state"


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as p:
        yield p


@pytest.fixture
def pair(authsvc_factory, idp, secret, trusted_origins, tmp_path):
    """(authsvc, its client, Better Auth, its client) on the main database."""
    svc = authsvc_factory(idp.google_env(), name="authsvc-interop-link")
    with better_auth(svc.env["DATABASE_URL"], secret, trusted_origins, tmp_path,
                     BA_GOOGLE=idp.base, BA_GOOGLE_CLIENT_ID=idp.client_id,
                     BA_GOOGLE_CLIENT_SECRET=idp.client_secret) as ba:
        ac, bc = H.ApiClient(svc, origin=APP), H.ApiClient(ba, origin=APP)
        yield svc, ac, ba, bc
        ac.close()
        bc.close()


def email():
    return f"il-{secrets.token_hex(5)}@interop.test"


def walk(idp, starter, user, finisher_base, before_callback=None):
    """link-social on `starter`, the provider, the callback on `finisher_base`.
    Returns the callback's response."""
    r = starter.post("link-social", json={"provider": "google", "callbackURL": "/settings",
                                          "errorCallbackURL": "/oops"}, cookie=user.cookie)
    assert r.status_code == 200, r.text
    assert r.json()["redirect"] is True
    sc = H.set_cookies(r)[STATE_COOKIE][0]
    H.sensitive(sc)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.json()["url"]).query))
    H.sensitive(q["state"])
    q["redirect_uri"] = f"{finisher_base}/api/auth/callback/google"
    a = requests.get(idp.url("authorize") + "?" + urllib.parse.urlencode(q), allow_redirects=False,
                     timeout=20)
    assert a.status_code == 302, a.text
    if before_callback:
        before_callback()
    return requests.get(a.headers["Location"], allow_redirects=False, timeout=30,
                        headers={"Cookie": f"{STATE_COOKIE}={sc}; {user.cookie}"})


def google_account(db, user_id):
    return db.dicts('select id, "accountId" from account where "userId" = %s and '
                    '"providerId" = %s', (user_id, "google"))


@pytest.mark.parametrize("direction", ["ba_to_authsvc", "authsvc_to_ba"])
def test_link_started_on_one_side_finished_on_the_other(pair, idp, db, direction):
    svc, ac, ba, bc = pair
    u = ac.sign_up(email())
    claims = idp.login(email=u.email)
    starter, finisher = (bc, svc) if direction == "ba_to_authsvc" else (ac, ba)
    cb = walk(idp, starter, u, finisher.base_url)
    assert cb.status_code == 302 and cb.headers["Location"] == "/settings", \
        (cb.headers.get("Location"), ba.logs())
    assert [a["accountId"] for a in google_account(db, u.id)] == [claims["sub"]]
    # both list it, and a second link of the same account adds no row
    for c in (ac, bc):
        listed = c.get("list-accounts", cookie=u.cookie).json()
        assert sorted(a["providerId"] for a in listed) == ["credential", "google"]
    # ... and the other way round, the account now being there
    back, back_base = (ac, ba.base_url) if direction == "ba_to_authsvc" else (bc, svc.base_url)
    cb = walk(idp, back, u, back_base)
    assert cb.headers["Location"] == "/settings"
    assert len(google_account(db, u.id)) == 1


@pytest.mark.parametrize("direction", ["ba_to_authsvc", "authsvc_to_ba"])
def test_link_of_a_revoked_session_is_refused_by_the_other_side(pair, idp, db, direction):
    """The sealed session token is really opened and checked: the session that
    started the link is revoked before the callback."""
    svc, ac, ba, bc = pair
    u = ac.sign_up(email())
    idp.login(email=u.email)
    starter, finisher = (bc, svc) if direction == "ba_to_authsvc" else (ac, ba)

    def revoke():
        r = ac.post("revoke-sessions", json={}, cookie=u.cookie)
        assert r.status_code == 200, r.text
    cb = walk(idp, starter, u, finisher.base_url, before_callback=revoke)
    assert cb.status_code == 302
    assert cb.headers["Location"] == "/oops?error=unable_to_link_account", cb.headers["Location"]
    assert google_account(db, u.id) == []


def test_account_info_is_the_same_on_both(pair, idp, db):
    svc, ac, ba, bc = pair
    u = ac.sign_up(email())
    idp.login(email=u.email, name="Both Sides", locale="en")
    assert walk(idp, ac, u, svc.base_url).headers["Location"] == "/settings"
    row = google_account(db, u.id)[0]["id"]
    ours = ac.get("account-info", params={"accountId": row}, cookie=u.cookie)
    theirs = bc.get("account-info", params={"accountId": row}, cookie=u.cookie)
    assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
    assert ours.json() == theirs.json()
    assert list(ours.json()) == list(theirs.json())
    assert list(ours.json()["user"]) == list(theirs.json()["user"])
    # an account that is not the caller's: the same refusal
    v = ac.sign_up(email())
    for c in (ac, bc):
        H.assert_error(c.get("account-info", params={"accountId": row}, cookie=v.cookie), 400,
                       "ACCOUNT_NOT_FOUND")
