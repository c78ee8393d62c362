"""/health, /live, /ready, GET /api/auth/ok, and behaviour with Redis or PostgreSQL down
(design.md "When things fail")."""

import time

import pytest

import pcsupport as H


def _ready(c):
    r = c.get("/ready", timeout=10)
    assert "application/json" in r.headers.get("content-type", ""), r.headers
    return r.status_code, r.json()


def test_health_live_ready(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert client.get("/live").status_code == 200
    status, body = _ready(client)
    assert status == 200, body
    assert body.get("postgres") == "ok" and body.get("redis") == "ok", body


def test_api_ok(client):
    r = client.get("ok")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_responses_carry_no_session_cookie(client):
    for path in ("/health", "/live", "/ready", "ok", "get-session"):
        r = client.get(path)
        assert H.SESSION_COOKIE not in H.set_cookies(r), path


@pytest.mark.slow
def test_redis_down_then_back(authsvc_factory, client_for, tmp_path):
    rd = H.Redis(basedir=str(tmp_path / "redis"))
    try:
        svc = authsvc_factory({"REDIS_URL": rd.url}, name="authsvc-redisdown")
        c = client_for(svc)
        u = c.sign_up()
        with rd.client() as rc:
            assert rc.exists(H.session_key(u.token))

        rd.stop()
        status, body = H.wait_until(lambda: (lambda s: s if s[0] == 503 else None)(_ready(c)), 10,
                                    what="/ready to answer 503 with Redis stopped")
        assert body.get("redis") == "down" and body.get("postgres") == "ok", body
        assert c.get("/health").status_code == 200
        assert c.get("/live").status_code == 200

        # everything keeps working from PostgreSQL, without long stalls
        t = time.monotonic()
        u2 = c.sign_in(u.email, u.password)
        assert time.monotonic() - t < 5, "sign-in stalled on the dead Redis"
        assert c.session_of(u2)["session"]["token"] == u2.token
        assert c.session_of(bearer=u.token)["user"]["id"] == u.id
        u3 = c.sign_up()
        r = c.post("sign-out", bearer=u3.token)
        assert r.status_code == 200, r.text
        assert c.session_of(bearer=u3.token) is None

        rd.start()
        H.wait_until(lambda: _ready(c)[0] == 200, 20, interval=0.2,
                     what="/ready to answer 200 after Redis restarted")
        body = _ready(c)[1]
        assert body.get("redis") == "ok" and body.get("postgres") == "ok", body
        # New sessions are written through again.  Workers may each lose one write on
        # their stale connection before reconnecting, so allow a few sign-ins.
        with rd.client() as rc:
            def written():
                u4 = c.sign_in(u.email, u.password)
                return rc.exists(H.session_key(u4.token))
            H.wait_until(written, 10, interval=0.2, what="write-through after Redis came back")
    finally:
        rd.cleanup()


def test_start_with_redis_unreachable(authsvc_factory, client_for):
    port = H.free_port()            # nothing listens there
    svc = authsvc_factory({"REDIS_URL": f"redis://127.0.0.1:{port}"}, name="authsvc-noredis")
    c = client_for(svc)
    status, body = _ready(c)
    assert status == 503 and body.get("redis") == "down", body
    u = c.sign_up()
    assert c.session_of(u) is not None


@pytest.mark.slow
def test_postgres_down_then_back(authsvc_factory, client_for):
    pg2 = H.Postgres()
    try:
        svc = authsvc_factory({"DATABASE_URL": pg2.url("postgres")}, name="authsvc-pgdown")
        c = client_for(svc)
        u = c.sign_up()

        pg2.stop()
        status, body = H.wait_until(lambda: (lambda s: s if s[0] == 503 else None)(_ready(c)), 15,
                                    what="/ready to answer 503 with PostgreSQL stopped")
        assert body.get("postgres") == "down" and body.get("redis") == "ok", body
        assert c.get("/live").status_code == 200
        r = c.post("sign-in/email", {"email": u.email, "password": u.password})
        assert r.status_code == 503, f"sign-in with PostgreSQL down: {r.status_code} {r.text[:200]}"
        assert "application/json" in r.headers.get("content-type", "")
        assert svc.running

        pg2.start()
        H.wait_until(lambda: _ready(c)[0] == 200, 20, interval=0.2,
                     what="/ready to answer 200 after PostgreSQL restarted")
        ok = None
        for _ in range(5):
            r = c.post("sign-in/email", {"email": u.email, "password": u.password})
            if r.status_code == 200:
                ok = r
                break
            time.sleep(0.5)
        assert ok is not None, f"sign-in after PostgreSQL came back: {r.status_code} {r.text[:200]}"
        assert c.session_of(bearer=ok.json()["token"]) is not None
    finally:
        pg2.cleanup()


def test_revocation_survives_killed_redis_connections(authsvc_factory, client_for, db, tmp_path):
    """Redis drops every authsvc connection (CLIENT KILL): a sign-out right after must still
    delete the cache entry and announce the revocation (at once, or when retried)."""
    rd = H.Redis(basedir=str(tmp_path / "redis"))
    try:
        svc = authsvc_factory({"REDIS_URL": rd.url}, name="authsvc-clientkill")
        c = client_for(svc)
        users = [c.sign_up() for _ in range(4)]
        with rd.client() as rc:
            for u in users:
                assert rc.exists(H.session_key(u.token))
            rc.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        with rd.subscribe(H.DEFAULT_REVOCATION_CHANNEL) as sub, rd.client() as rc:
            for u in users:
                r = c.post("sign-out", bearer=u.token)
                assert r.status_code == 200, r.text
                assert db.session_row(u.token) is None
            want = {H.token_hash(u.token) for u in users}
            for u in users:
                key = H.session_key(u.token)
                H.wait_until(lambda: not rc.exists(key), 5, what=f"DEL of {key} after CLIENT KILL")
            seen = sub.wait_for(want, 5)
            assert want <= seen, f"{len(want - seen)} revocation(s) never published after CLIENT KILL"
    finally:
        rd.cleanup()
