"""Failures survived, under continuous traffic through haproxy (issue 6).

A background load (pcsupport.cluster.Load: four threads, about 300 requests/s in all, half
with a session cookie, half with an API key, every answer recorded) runs through
haproxy while the test breaks one piece of the cluster:

- Redis killed: cached credentials keep working, no 5xx; a sign-out and an API key
  DELETE made during the outage are refused by every replica once Redis is back
  (the gateways flush L1 when they subscribe again; L1 entries are otherwise
  trusted for 30 s while the feed is down, so nothing else can explain it).
- PostgreSQL killed: cached credentials keep working; credentials cached nowhere
  and sign-ups answer 503; everything works again by itself once PostgreSQL is back.
  A clean PostgreSQL restart is invisible a second after it is back.
- One gateway killed (SIGKILL): haproxy routes around it; at most the requests it
  had in flight fail.  One gateway stopped (SIGTERM): nothing fails at all.
- authsvc restarted (SIGTERM, then SIGKILL) under sign-up load: every sign-up that
  answered 200 is in the database, and its session works through the gateways.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport import cluster as C

RATE = 300          # requests/s through haproxy, in all
THREADS = 4


def _load(cluster, user, key, **kw):
    targets = [("session", C.SESSION_PATH, G.cookie(user)),
               ("apikey", C.APIKEY_PATH, {"x-api-key": key.key})]
    return C.Load(cluster.haproxy.port, targets, rate=kw.pop("rate", RATE),
                  threads=kw.pop("threads", THREADS), max_seconds=kw.pop("max_seconds", 60), **kw)


def _assert_clean(load, what, allowed=0):
    fails = load.failures()
    assert len(fails) <= allowed, (f"{what}: {len(fails)} request(s) did not answer 200 "
                                   f"({load.summary()}); first: {fails[:10]}")
    return fails


def _haproxy_down_events(cluster) -> list:
    text = H.tail(cluster.haproxy.log_path, 200000)
    return [ln for ln in text.splitlines() if " is DOWN" in ln]


# ---------------------------------------------------------------------------


def test_redis_killed(cluster, c):
    u = c.sign_up(name="Load user")
    k = cluster.keys.create(u.id)
    doomed = c.sign_up(name="Signed out while Redis is down")
    doomed_key = cluster.keys.create(u.id)
    for g in cluster.gateways:
        C.warm(g, doomed, doomed_key)
    down_before = len(_haproxy_down_events(cluster))

    with _load(cluster, u, k) as load:
        load.wait_count(300)
        t_kill = load.now()
        cluster.redis.kill()
        for g in cluster.gateways:
            g.wait_ready(timeout=10, postgres="ok", redis="down", revocations="down", streak=2)

        # two revocations the feed cannot carry now: through authsvc and through SQL
        r = c.post("sign-out", cookie=doomed.cookie)
        assert r.status_code == 200, f"sign-out while Redis is down: {r.status_code} {r.text[:300]}"
        assert cluster.sql.execute('delete from "apikey" where id = %s', (doomed_key.id,)) == 1
        # (L1 may still trust them for up to 30 s: the degraded window)
        during = {g.name: (g.get("/s/x", headers=G.cookie(doomed)).status_code,
                           g.get("/k/x", headers={"x-api-key": doomed_key.key}).status_code)
                  for g in cluster.gateways}
        assert all(s in (200, 401) for pair in during.values() for s in pair), during
        load.wait_count(600)                      # about two seconds of traffic without Redis

        t_back = load.now()
        cluster.redis.start()
        for g in cluster.gateways:
            g.wait_ready(timeout=15)              # redis ok, revocations subscribed
        took_s = C.every_replica_refuses(cluster, "/s/x", G.cookie(doomed), "sign-out during outage")
        took_k = C.every_replica_refuses(cluster, "/k/x", {"x-api-key": doomed_key.key},
                                        "key deleted during outage")
        load.wait_count(300)

    print(f"\nRedis down {t_back - t_kill:.1f}s; {load.summary()}")
    print(f"during the outage (session, key) on each replica: {during}")
    print(f"refused after Redis came back: session {took_s}, key {took_k}")
    _assert_clean(load, "Redis killed and restarted")
    assert len(_haproxy_down_events(cluster)) == down_before, "haproxy took a replica out"
    assert {r.replica for r in load.between(t_kill, t_back)} == {"gateway1", "gateway2", "gateway3"}
    # the valid ones still work everywhere, with a Redis that came back empty
    for g in cluster.gateways:
        C.warm(g, u, k)


def test_postgres_killed(cluster, c, secret):
    u = c.sign_up(name="Load user")
    k = cluster.keys.create(u.id)
    never_used_key = cluster.keys.create(u.id)              # in PostgreSQL only
    b = c.sign_up(name="Never seen by a gateway")
    with cluster.redis.client() as rc:                      # ... and not in Redis either
        assert rc.delete(H.session_key(b.token)) == 1
    uncached = {
        "api key cached nowhere": {"x-api-key": never_used_key.key},
        "session cached nowhere": G.cookie(b),
        "unknown api key": {"x-api-key": G.new_api_key()},
        "unknown session": {"Cookie": G.unsigned_cookie(secret, H.generate_id(32))},
    }
    down_before = len(_haproxy_down_events(cluster))

    with _load(cluster, u, k) as load:
        load.wait_count(300)
        t_kill = load.now()
        cluster.pg.kill()

        # misses and writes: 503, on every replica and through haproxy; never 200, never 401
        for g in cluster.gateways:
            for label, h in uncached.items():
                path = "/k/x" if "x-api-key" in h else "/s/x"
                G.assert_gw_error(g.get(path, headers=h), 503, "AUTH_UNAVAILABLE")
        for label, h in uncached.items():
            path = "/k/x" if "x-api-key" in h else "/s/x"
            r = requests.get(cluster.haproxy.url + path, headers=h, timeout=10)
            assert r.status_code == 503, f"{label} through haproxy: {r.status_code} {r.text[:200]}"
        r = c.post("sign-up/email", {"name": "x", "email": H.unique_email(), "password": H.new_password()})
        assert r.status_code == 503, f"sign-up while PostgreSQL is down: {r.status_code} {r.text[:300]}"
        load.wait_count(600)

        t_back = load.now()
        cluster.pg.start()
        # back by itself: nothing restarted but PostgreSQL
        t0 = time.monotonic()
        cluster.sql_connect()
        _until_postgres_answers_everywhere(cluster, c)
        for g in cluster.gateways:
            assert g.get("/s/x", headers=G.cookie(b)).status_code == 200, g.name
            assert g.get("/k/x", headers={"x-api-key": never_used_key.key}).status_code == 200, g.name
        r = c.post("sign-up/email", {"name": "after", "email": H.unique_email(), "password": H.new_password()})
        assert r.status_code == 200, r.text[:300]
        back_after = time.monotonic() - t0
        load.wait_count(300)

    print(f"\nPostgreSQL down {t_back - t_kill:.1f}s, all back {back_after:.1f}s after restart; "
          f"{load.summary()}")
    _assert_clean(load, "PostgreSQL killed and restarted")
    assert len(_haproxy_down_events(cluster)) == down_before, "haproxy took a replica out"


def _until_postgres_answers_everywhere(cluster, c, timeout=20.0):
    """Until every gateway worker and every authsvc worker reaches PostgreSQL again:
    16 lookups in a row on new connections (spread over the workers) for unknown API
    keys answer 401 on each replica, and 16 sign-ups in a row for a taken email answer
    422.  Returns the 503s seen on the way."""
    seen_503 = {}
    taken = H.unique_email("taken")
    deadline = time.monotonic() + timeout

    def streak(fn, good, label):
        n = 0
        while n < 16:
            st = fn()
            if st == good:
                n += 1
            else:
                assert st == 503, f"{label}: {st}"
                seen_503[label] = seen_503.get(label, 0) + 1
                n = 0
                time.sleep(0.05)
            assert time.monotonic() < deadline, f"{label}: PostgreSQL not back after {timeout}s"

    while True:
        r = c.post("sign-up/email", {"name": "t", "email": taken, "password": H.new_password()})
        if r.status_code == 200:
            break
        assert r.status_code == 503 and time.monotonic() < deadline, r.text[:200]
        time.sleep(0.1)
    streak(lambda: c.post("sign-up/email", {"name": "t", "email": taken,
                                            "password": H.new_password()}).status_code, 422, "authsvc")
    for g in cluster.gateways:
        streak(lambda: requests.get(g.url("/k/x"), headers={"x-api-key": G.new_api_key(),
                                                            "Connection": "close"},
                                    timeout=10).status_code, 401, g.name)
    return seen_503


def test_postgres_restart_is_invisible_once_it_is_back(cluster, c):
    """A clean PostgreSQL restart while the cluster is idle: once PostgreSQL answers
    again, the next cache misses and writes must not fail."""
    _until_postgres_answers_everywhere(cluster, c)
    cluster.conn.close()
    cluster.pg.stop()
    cluster.pg.start()
    cluster.sql_connect()
    time.sleep(1.0)                          # PostgreSQL has been up for a second
    try:
        gw = {g.name: [requests.get(g.url("/k/x"), headers={"x-api-key": G.new_api_key(),
                                                            "Connection": "close"}, timeout=10).status_code
                       for _ in range(8)] for g in cluster.gateways}
        taken = H.unique_email("taken2")
        signups = [c.post("sign-up/email", {"name": "t", "email": taken, "password": H.new_password()})
                   .status_code for _ in range(10)]
        print(f"\nfirst answers after a PostgreSQL restart: gateways {gw}, authsvc sign-ups {signups}")
        assert all(s == 401 for v in gw.values() for s in v), gw
        assert signups[0] == 200 and all(s == 422 for s in signups[1:]), signups
    finally:
        _until_postgres_answers_everywhere(cluster, c)


def test_one_gateway_killed(cluster, c):
    u = c.sign_up(name="Load user")
    k = cluster.keys.create(u.id)
    g2 = cluster.gateway("gateway2")
    with _load(cluster, u, k) as load:
        load.wait_count(300)
        t_kill = load.now()
        g2.kill()                                   # SIGKILL: whatever it had in flight is lost
        cluster.haproxy.wait_servers({"gateway2": "DOWN"}, timeout=5)
        t_down = load.now()
        load.wait_count(450)
        t_restart = load.now()
        g2.start()
        cluster.haproxy.wait_servers("UP", timeout=10)
        t_up = load.now()
        load.wait_count(450)

    fails = load.failures()
    print(f"\nkilled at +{t_kill:.2f}s, out of haproxy after {t_down - t_kill:.2f}s, back at "
          f"+{t_up:.2f}s; {load.summary()}; failures: {fails}")
    # at most what was in flight on the killed replica: one request per load thread
    assert len(fails) <= THREADS, fails
    assert all(t_kill - 0.1 <= r.t0 <= t_kill + 1.0 for r in fails), fails
    after = load.between(t_down + 0.2, t_restart)
    assert after and {r.replica for r in after} == {"gateway1", "gateway3"}, load.summary(after)
    assert any(r.replica == "gateway2" for r in load.between(t_up)), "gateway2 not used again"


def test_one_gateway_stopped_gracefully(cluster, c):
    u = c.sign_up(name="Load user")
    k = cluster.keys.create(u.id)
    g3 = cluster.gateway("gateway3")
    with _load(cluster, u, k) as load:
        load.wait_count(300)
        t_stop = load.now()
        rc = g3.stop(timeout=12)                    # SIGTERM: stop accepting, finish what it has
        t_exit = load.now()
        assert rc == 0 and not g3.proc.forced, f"gateway3 exit {rc}:\n{g3.stderr_text()[-1500:]}"
        cluster.haproxy.wait_servers({"gateway3": "DOWN"}, timeout=5)
        load.wait_count(300)
        g3.start()
        cluster.haproxy.wait_servers("UP", timeout=10)
        load.wait_count(300)
    print(f"\nSIGTERM at +{t_stop:.2f}s, exited after {t_exit - t_stop:.2f}s; {load.summary()}")
    _assert_clean(load, "one gateway stopped with SIGTERM")


def test_authsvc_restarted_under_signup_load(cluster):
    u = H.ApiClient(cluster.authsvc).sign_up(name="Load user")
    k = cluster.keys.create(u.id)
    results = []                                    # (email, status, body or error)
    lock = threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + 40

    def signer():
        cl = H.ApiClient(cluster.authsvc, timeout=15)
        try:
            while not stop.is_set() and time.monotonic() < deadline and len(results) < 600:
                email, pw = H.unique_email("restart"), H.new_password()
                try:
                    r = cl.post("sign-up/email", {"name": "Restart", "email": email, "password": pw})
                    rec = (email, r.status_code, r.json() if r.status_code == 200 else r.text[:200])
                    if r.status_code != 200:
                        time.sleep(0.02)
                except Exception as e:  # noqa: BLE001 - connection refused/reset while down
                    rec = (email, 0, f"{type(e).__name__}")
                    time.sleep(0.02)
                with lock:
                    results.append(rec)
        finally:
            cl.close()

    def ok_count():
        with lock:
            return sum(1 for _, s, _ in results if s == 200)

    def wait_more_ok(n, timeout=20):
        start = ok_count()
        H.wait_until(lambda: ok_count() >= start + n, timeout, interval=0.02, what=f"{n} more sign-ups")

    threads = [threading.Thread(target=signer, daemon=True) for _ in range(4)]
    with _load(cluster, u, k, rate=150) as load:
        for t in threads:
            t.start()
        try:
            wait_more_ok(8)
            cluster.authsvc.stop(timeout=10)        # SIGTERM while sign-ups are in flight
            assert not cluster.authsvc.proc.forced, "authsvc did not drain within 10 s"
            cluster.authsvc.start()
            wait_more_ok(8)
            cluster.authsvc.kill()                  # SIGKILL: in-flight sign-ups are cut off
            cluster.authsvc.start()
            wait_more_ok(8)
        finally:
            stop.set()
            for t in threads:
                t.join(20)

    by_status, by_answer = {}, {}
    for _, s, b in results:
        by_status[s] = by_status.get(s, 0) + 1
        a = (s, b if s != 200 else "")
        by_answer[a] = by_answer.get(a, 0) + 1
    print(f"\nsign-ups by status {by_status}; gateway load {load.summary()}")
    print(f"non-200 answers: { {a: n for a, n in by_answer.items() if a[0] != 200} }")
    assert set(by_status) <= {0, 200, 503}, [r for r in results if r[1] not in (0, 200, 503)][:5]

    ok = [(e, b) for e, s, b in results if s == 200]
    missing = []
    for email, body in ok:
        row = cluster.sql.one('select u.id, '
                              '(select count(*) from "account" a where a."userId" = u.id '
                              ' and a."providerId" = %s), '
                              '(select count(*) from "session" s where s."userId" = u.id and s.token = %s) '
                              'from "user" u where u.email = %s', ("credential", body["token"], email))
        if row is None or row[0] != body["user"]["id"] or row[1] != 1 or row[2] != 1:
            missing.append((email, row))
    assert not missing, f"{len(missing)} of {len(ok)} answered sign-ups are not (whole) in the database: " \
                        f"{missing[:5]}"
    # and their sessions work through the cluster (a sample, on every replica)
    for i, (email, body) in enumerate(ok[:9]):
        g = cluster.gateways[i % 3]
        r = g.get("/s/x", headers={"Cookie": f"{H.SESSION_COOKIE}={H.cookie_value(cluster.secret, body['token'])}"})
        assert r.status_code == 200 and G.echo(r)["headers"]["x-user-id"] == body["user"]["id"], r.text[:200]
    _assert_clean(load, "gateway traffic while authsvc restarted")
