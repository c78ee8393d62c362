"""POST /api/auth/sign-in/email (compat doc §2, §3, §5, §6) and the password worker pool."""

import re
import statistics
import threading
import time
import urllib.parse

import pytest
import requests

import pcsupport as H
from pcsupport import assert_error

ID_RE = re.compile(r"^[A-Za-z0-9]{32}$")


@pytest.fixture
def user(client):
    return client.sign_up(name="Sign In")


def test_sign_in_creates_a_new_session(client, user, db, secret, redis_client):
    r = client.post("sign-in/email", {"email": user.email, "password": user.password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["redirect"] is False
    assert ID_RE.match(body["token"]) and body["token"] != user.token
    assert body["user"]["id"] == user.id and body["user"]["email"] == user.email.lower()
    assert "password" not in r.text
    value, attrs = H.set_cookies(r)[H.SESSION_COOKIE]
    assert urllib.parse.unquote(value) == H.signed_value(secret, body["token"])
    assert attrs.get("max-age") == "604800" and attrs.get("httponly") is True
    assert str(attrs.get("samesite", "")).lower() == "lax" and attrs.get("path") == "/"
    assert r.headers.get("set-auth-token") == H.signed_value(secret, body["token"])
    assert db.scalar('select count(*) from "session" where "userId" = %s', (user.id,)) == 2
    assert redis_client.exists(H.session_key(body["token"]))
    # both sessions work
    assert client.session_of(bearer=body["token"])["session"]["token"] == body["token"]
    assert client.session_of(user)["session"]["token"] == user.token


def test_sign_in_email_is_case_insensitive(client, user):
    u2 = client.sign_in(user.email.upper(), user.password)
    assert u2.id == user.id


def test_wrong_password_and_unknown_email_get_the_same_401(client, user, db):
    before = db.snapshot()
    r1 = client.post("sign-in/email", {"email": user.email, "password": H.sensitive("Wrong-password-1")})
    r2 = client.post("sign-in/email", {"email": H.unique_email("nobody"), "password": user.password})
    b1 = assert_error(r1, 401, "INVALID_EMAIL_OR_PASSWORD")
    b2 = assert_error(r2, 401, "INVALID_EMAIL_OR_PASSWORD")
    assert b1 == b2, "unknown email and wrong password must be indistinguishable"
    for r in (r1, r2):
        assert H.SESSION_COOKIE not in H.set_cookies(r)
        assert "set-auth-token" not in r.headers
    assert db.snapshot() == before


def test_unknown_email_costs_as_much_as_a_wrong_password(client, user):
    def timed(email):
        t = time.monotonic()
        r = client.post("sign-in/email", {"email": email, "password": "Wrong-password-2"})
        assert r.status_code == 401, r.text
        return time.monotonic() - t

    wrong, unknown = [], []
    timed(user.email)                           # warm up the connection
    for _ in range(4):
        wrong.append(timed(user.email))
        unknown.append(timed(H.unique_email("ghost")))
    mw, mu = statistics.median(wrong), statistics.median(unknown)
    # a scrypt hash costs tens of ms; an early return for unknown emails would be ~1 ms
    assert mu >= 0.5 * mw, f"unknown email {mu * 1000:.1f} ms vs wrong password {mw * 1000:.1f} ms"


def test_sign_in_with_callback_url_redirects_in_json(client, user):
    r = client.post("sign-in/email", {"email": user.email, "password": user.password,
                                      "callbackURL": "/dashboard"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["redirect"] is True and body["url"] == "/dashboard"
    assert r.headers.get("Location") == "/dashboard"
    assert ID_RE.match(body["token"])


def test_sign_in_records_user_agent_and_peer_ip(client, user, db):
    # no TRUSTED_PROXIES: X-Forwarded-For is the client's claim, the peer is recorded
    # (the trusted-proxy case: test_ratelimit.py::test_session_ip_comes_from_a_trusted_proxy_only)
    r = client.post("sign-in/email", {"email": user.email, "password": user.password},
                    headers={"User-Agent": "e2e-agent/2.0"}, xff="203.0.113.7")
    assert r.status_code == 200, r.text
    s = db.session_row(r.json()["token"])
    assert s["userAgent"] == "e2e-agent/2.0"
    assert s["ipAddress"] == "127.0.0.1"


def test_sign_in_accepts_form_urlencoded(client, user):
    r = client.request("POST", "sign-in/email", data={"email": user.email, "password": user.password},
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert ID_RE.match(r.json()["token"])


def test_sign_in_remember_me_true_is_the_default(client, user, db):
    u = client.sign_in(user.email, user.password, rememberMe=True)
    assert H.set_cookies(u.response)[H.SESSION_COOKIE][1].get("max-age") == "604800"
    assert db.seconds_left(u.token) > 604800 - 120


def _concurrent_sign_ins(svc, email, password, n):
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        s = requests.Session()
        s.trust_env = False
        try:
            barrier.wait(timeout=10)
            r = s.post(svc.api("sign-in/email"), json={"email": email, "password": password}, timeout=60)
            results[i] = (r.status_code, r.headers.get("content-type", ""), r.text)
            if r.status_code == 200:
                H.sensitive(r.json().get("token"))
                H.sensitive(r.headers.get("set-auth-token"))
        except Exception as e:  # noqa: BLE001
            results[i] = (None, "", repr(e))
        finally:
            s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "sign-in requests hung"
    return results


def test_full_password_queue_answers_503(client, user, authsvc_factory):
    svc = authsvc_factory({"PASSWORD_WORKERS": "1", "PASSWORD_QUEUE": "1"}, name="authsvc-queue")
    results = _concurrent_sign_ins(svc, user.email, user.password, 16)
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 503}, results
    assert 503 in statuses, f"16 concurrent sign-ins with 1 worker and a queue of 1: {statuses}"
    assert 200 in statuses, statuses
    for st, ctype, text in results:
        if st == 503:
            assert "application/json" in ctype, text
    # the pool drains and the server keeps working
    c = H.ApiClient(svc)
    try:
        c.sign_in(user.email, user.password)
        assert c.get("/health").status_code == 200
    finally:
        c.close()


def test_hashing_does_not_block_the_event_loop(user, authsvc_factory):
    svc = authsvc_factory({"PASSWORD_WORKERS": "1", "PASSWORD_QUEUE": "64"}, name="authsvc-loop")
    done = threading.Event()
    out = {}

    def storm():
        out["results"] = _concurrent_sign_ins(svc, user.email, user.password, 8)
        done.set()

    t = threading.Thread(target=storm)
    t.start()
    lat = []
    s = requests.Session()
    s.trust_env = False
    try:
        time.sleep(0.15)                       # let the queue fill
        end = time.monotonic() + 1.5
        while time.monotonic() < end and not done.is_set():
            t0 = time.monotonic()
            r = s.get(svc.url("/health"), timeout=10)
            lat.append(time.monotonic() - t0)
            assert r.status_code == 200
            time.sleep(0.03)
    finally:
        s.close()
        t.join(timeout=90)
    assert not t.is_alive()
    assert {r[0] for r in out["results"]} == {200}, out["results"]
    assert lat, "the sign-in storm ended before /health could be measured"
    assert max(lat) < 0.5, f"/health took up to {max(lat) * 1000:.0f} ms while hashing"
