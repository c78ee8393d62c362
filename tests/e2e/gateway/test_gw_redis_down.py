"""Redis stopped mid-test and started again, with a Redis of the test's own (authsvc and
gateway both on it, main PostgreSQL):

- down: cached credentials keep working, new sessions resolve from PostgreSQL,
  nothing unknown gets in, /ready stays 200 and says redis/revocations "down"; a
  revocation the feed cannot carry is honoured within L1_DEGRADED_TTL_SECONDS;
- back: /ready shows revocations "subscribed" again, L1 is flushed, and a revocation
  after that is honoured at once.
"""

import time

import pytest

import pcsupport as H
import pcsupport as G

DEGRADED_TTL = 2


@pytest.fixture
def rd(tmp_root):
    r = H.Redis(basedir=str(tmp_root / f"redis-down-{H.free_port()}"))
    try:
        yield r
    finally:
        r.stop()


def test_redis_stopped_and_started(rd, authsvc_factory, gateway_factory, keys, sql, secret):
    svc = authsvc_factory(redis=rd, migrate=False, name="authsvc-redisdown")
    c = H.ApiClient(svc)
    g = gateway_factory({"L1_DEGRADED_TTL_SECONDS": str(DEGRADED_TTL)}, redis=rd, name="gateway-redisdown")

    a = c.sign_up(name="Cached")
    ka = keys.create(a.id)
    b = c.sign_up(name="New while Redis is down")          # in Redis and PG, never seen by g
    doomed = c.sign_up(name="Revoked while Redis is down")
    for u in (a, doomed):
        assert g.get("/s/x", headers=G.cookie(u)).status_code == 200
    assert g.get("/k/x", headers={"x-api-key": ka.key}).status_code == 200

    # ---- Redis goes away
    rd.stop()
    t_down = time.monotonic()
    g.wait_ready(timeout=10, postgres="ok", redis="down", revocations="down", streak=3)
    r = g.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready", r.text

    # cached credentials keep working (from L1, later from PostgreSQL)
    assert G.echo(g.get("/s/x", headers=G.cookie(a)))["headers"]["x-user-id"] == a.id
    assert G.echo(g.get("/k/x", headers={"x-api-key": ka.key}))["headers"]["x-api-key-id"] == ka.id

    # a session the gateway never saw resolves from PostgreSQL
    s0 = g.stats()
    for h in (G.cookie(b), G.bearer(b.signed), G.bearer(b.token)):
        assert G.echo(g.get("/s/x", headers=h))["headers"]["x-user-id"] == b.id
    assert g.stats()["pg_queries"] > s0["pg_queries"]

    # nothing unknown gets in
    for h in ({"Cookie": G.unsigned_cookie(secret, H.generate_id(32))}, G.bearer(H.generate_id(32)),
              {"x-api-key": G.new_api_key()}):
        G.assert_gw_error(g.get("/m/x", headers=h), 401)

    # a revocation the feed cannot carry: PostgreSQL row gone, no message.  L1 trusts
    # entries at most L1_DEGRADED_TTL_SECONDS while the feed is down.
    sql.execute('delete from "session" where token = %s', (doomed.token,))
    took, seen = G.poll_until_status(lambda: g.get("/s/x", headers=G.cookie(doomed)), 401,
                                     DEGRADED_TTL + 2.0, interval=0.05)
    assert set(seen) <= {200, 401}, seen
    assert time.monotonic() - t_down < DEGRADED_TTL + 3.0

    # ---- Redis comes back
    flushes = g.stats()["l1_flushes"]
    rd.start()
    g.wait_ready(timeout=15, postgres="ok", redis="ok", revocations="subscribed")
    assert g.stats()["l1_flushes"] > flushes, "L1 not flushed after subscribing again"

    # a revocation after that is honoured at once (API key: row deleted, DEL + PUBLISH)
    kb = keys.create(a.id)
    assert g.get("/k/x", headers={"x-api-key": kb.key}).status_code == 200
    assert g.get("/k/x", headers={"x-api-key": kb.key}).status_code == 200
    sql.execute('delete from "apikey" where id = %s', (kb.id,))
    with rd.client() as rc:
        rc.command("DEL", f"{H.DEFAULT_REDIS_PREFIX}k:{kb.hash}")
        rc.command("PUBLISH", H.DEFAULT_REVOCATION_CHANNEL, kb.hash)
    took, _ = G.poll_until_status(lambda: g.get("/k/x", headers={"x-api-key": kb.key}), 401, 3.0)
    assert took < 0.5, f"revocation after Redis restart seen after {took:.2f}s"

    # and through authsvc (sign-out: DEL + PUBLISH on the restarted Redis)
    cuser = c.sign_up(name="After restart")
    assert g.get("/s/x", headers=G.cookie(cuser)).status_code == 200
    assert g.get("/s/x", headers=G.cookie(cuser)).status_code == 200
    assert c.post("sign-out", cookie=cuser.cookie).status_code == 200
    took, _ = G.poll_until_status(lambda: g.get("/s/x", headers=G.cookie(cuser)), 401, 3.0)
    assert took < 0.5, f"sign-out after Redis restart seen after {took:.2f}s"
    c.close()


def test_gateway_starts_without_redis(gateway_factory, live_authsvc, tmp_root):
    """Redis unreachable at start: the gateway still serves from PostgreSQL, /ready 200
    with redis "down", and picks Redis up when it appears."""
    port = H.free_port()
    g = gateway_factory({"REDIS_URL": f"redis://127.0.0.1:{port}"}, name="gateway-noredis",
                        wait_ready=False)
    g.wait_ready(timeout=10, postgres="ok", redis="down", revocations="down", streak=3)
    u = H.ApiClient(live_authsvc).sign_up(name="No Redis")
    assert G.echo(g.get("/s/x", headers=G.cookie(u)))["headers"]["x-user-id"] == u.id
    late = H.Redis(port=port, basedir=str(tmp_root / f"redis-late-{port}"))
    try:
        g.wait_ready(timeout=15)
    finally:
        late.stop()
