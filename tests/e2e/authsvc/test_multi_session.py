"""Better Auth's multiSession plugin: several accounts in one browser.

A small cookie jar stands in for the browser: it keeps what Set-Cookie gives
(an empty value or Max-Age=0 removes a cookie) and sends it back."""

from __future__ import annotations

import pytest

import pcsupport as H
from pcsupport import assert_error
from pcsupport.checks import sensitive

APP = "http://app.example.test"
S = "better-auth.session_token"


class Jar:
    def __init__(self):
        self.c = {}

    def take(self, r):
        for name, (value, attrs) in H.set_cookies(r).items():
            if value == "" or str(attrs.get("max-age", attrs.get("Max-Age", ""))) == "0":
                self.c.pop(name, None)
            else:
                sensitive(value)
                self.c[name] = value
        return r

    def header(self):
        return "; ".join(f"{k}={v}" for k, v in self.c.items())

    def multi(self):
        return sorted(k for k in self.c if "_multi-" in k)


@pytest.fixture
def ms(authsvc_factory):
    def make(**env):
        e = {"MULTI_SESSION_ENABLED": "true"}
        e.update(env)
        svc = authsvc_factory(e, fresh_db=True, name="authsvc-multi")
        return svc, H.ApiClient(svc, origin=APP)
    return make


def _sign_in(c, jar, user):
    r = c.post("sign-in/email", {"email": user.email, "password": user.password},
               cookie=jar.header() or None)
    assert r.status_code == 200, r.text
    jar.take(r)
    return r.json()["token"]


def test_two_accounts_in_one_browser(ms):
    svc, c = ms()
    a, b = c.sign_up(name="A"), c.sign_up(name="B")
    jar = Jar()
    ta = _sign_in(c, jar, a)
    assert jar.multi() == [f"{S}_multi-{ta.lower()}"]
    tb = _sign_in(c, jar, b)
    assert jar.multi() == sorted([f"{S}_multi-{ta.lower()}", f"{S}_multi-{tb.lower()}"])
    assert c.session_of(cookie=jar.header())["user"]["id"] == b.id      # the last is active
    r = c.get("multi-session/list-device-sessions", cookie=jar.header())
    assert r.status_code == 200, r.text
    assert sorted(x["user"]["id"] for x in r.json()) == sorted([a.id, b.id])
    assert {x["session"]["token"] for x in r.json()} == {ta, tb}
    # switch to A
    r = jar.take(c.post("multi-session/set-active", {"sessionToken": ta}, cookie=jar.header()))
    assert r.status_code == 200 and r.json()["user"]["id"] == a.id, r.text
    assert c.session_of(cookie=jar.header())["user"]["id"] == a.id
    # revoke B (not active): B's session ends, A stays
    r = jar.take(c.post("multi-session/revoke", {"sessionToken": tb}, cookie=jar.header()))
    assert r.status_code == 200 and r.json() == {"status": True}, r.text
    assert c.session_of(bearer=tb) is None
    assert jar.multi() == [f"{S}_multi-{ta.lower()}"]
    assert c.session_of(cookie=jar.header())["user"]["id"] == a.id
    # a token the browser holds no cookie for
    assert_error(c.post("multi-session/set-active", {"sessionToken": tb}, cookie=jar.header()), 401,
                 "INVALID_SESSION_TOKEN")


def test_revoking_the_active_one_switches_to_the_next(ms):
    svc, c = ms()
    a, b = c.sign_up(), c.sign_up()
    jar = Jar()
    ta = _sign_in(c, jar, a)
    tb = _sign_in(c, jar, b)
    r = jar.take(c.post("multi-session/revoke", {"sessionToken": tb}, cookie=jar.header()))
    assert r.status_code == 200, r.text
    assert c.session_of(cookie=jar.header())["user"]["id"] == a.id
    jar.take(c.post("multi-session/revoke", {"sessionToken": ta}, cookie=jar.header()))
    assert S not in jar.c and not jar.multi()
    assert c.session_of(bearer=ta) is None


def test_same_user_again_replaces_its_session_and_sign_out_ends_all(ms):
    svc, c = ms()
    a, b = c.sign_up(), c.sign_up()
    jar = Jar()
    t1 = _sign_in(c, jar, a)
    t2 = _sign_in(c, jar, a)
    assert jar.multi() == [f"{S}_multi-{t2.lower()}"]
    assert c.session_of(bearer=t1) is None
    tb = _sign_in(c, jar, b)
    r = jar.take(c.post("sign-out", cookie=jar.header()))
    assert r.status_code == 200, r.text
    assert not jar.multi() and S not in jar.c
    assert c.session_of(bearer=t2) is None and c.session_of(bearer=tb) is None


def test_maximum_sessions_and_forged_cookies(ms):
    svc, c = ms(MULTI_SESSION_MAXIMUM="2")
    users = [c.sign_up() for _ in range(3)]
    jar = Jar()
    toks = [_sign_in(c, jar, u) for u in users]
    assert jar.multi() == sorted(f"{S}_multi-{t.lower()}" for t in toks[:2])
    # a multi cookie with a bad signature does not count
    forged = f"{S}_multi-{'x' * 32}={'x' * 32}.{'A' * 43}="
    r = c.get("multi-session/list-device-sessions", cookie=jar.header() + "; " + forged)
    assert sorted(x["user"]["id"] for x in r.json()) == sorted(u.id for u in users[:2])
    assert c.get("multi-session/list-device-sessions").json() == []


def test_off_by_default(authsvc_factory):
    svc = authsvc_factory({}, fresh_db=True, name="authsvc-nomulti")
    c = H.ApiClient(svc, origin=APP)
    u = c.sign_up()
    assert "_multi-" not in str(u.response.headers.get("set-cookie"))
    assert c.get("multi-session/list-device-sessions").status_code == 404
