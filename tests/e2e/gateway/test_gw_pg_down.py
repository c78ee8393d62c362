"""PostgreSQL stopped mid-test (a cluster of the test's own): cached credentials still
work, a credential not cached anywhere answers 503 (never 200, never a guess), and after
a restart everything works again."""


import pytest

import pcsupport as H
import pcsupport as G

PREFIX = "pgdown:"
CHANNEL = "pgdown:revoked"


@pytest.fixture
def own_pg():
    p = H.Postgres()
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture
def own_authsvc(own_pg, redis_srv, secret, tmp_root):
    own_pg.create_database("authsvc")
    svc = H.Authsvc({"BETTER_AUTH_SECRET": secret, "DATABASE_URL": own_pg.url("authsvc"),
                     "REDIS_URL": redis_srv.url, "RATE_LIMIT_ENABLED": "false",
                     "REDIS_PREFIX": PREFIX, "REVOCATION_CHANNEL": CHANNEL},
                    workdir=str(tmp_root / "authsvc-pgdown"), name="authsvc-pgdown")
    try:
        yield svc
    finally:
        H.check_stopped(svc)


def test_postgres_stopped_and_started(own_pg, own_authsvc, gateway_factory, redis_client, secret):
    g = gateway_factory({"REDIS_PREFIX": PREFIX, "REVOCATION_CHANNEL": CHANNEL,
                         "GATEWAY_PG_TIMEOUT_MS": "1000"},
                        database_url=own_pg.url("authsvc"), name="gateway-pgdown")
    conn = own_pg.connect("authsvc")
    keys = G.ApiKeys(G.SQL(conn))
    c = H.ApiClient(own_authsvc)
    a = c.sign_up(name="Cached")
    b = c.sign_up(name="Uncached")
    ka = keys.create(a.id)
    kb = keys.create(b.id)                      # never used before the outage
    redis_client.delete(f"{PREFIX}s:{H.token_hash(b.token)}")   # b: not in Redis either
    for h in (G.cookie(a), G.bearer(a.token)):
        assert g.get("/s/x", headers=h).status_code == 200
    assert g.get("/k/x", headers={"x-api-key": ka.key}).status_code == 200
    conn.close()

    # ---- PostgreSQL goes away
    own_pg.stop()
    assert not own_pg.running

    uncached = {
        "session cookie (not cached)": G.cookie(b),
        "raw bearer (not cached)": G.bearer(b.token),
        "api key (not cached)": {"x-api-key": kb.key},
        "unknown api key": {"x-api-key": G.new_api_key()},
        "unknown session": {"Cookie": G.unsigned_cookie(secret, H.generate_id(32))},
    }
    for _ in range(3):
        for label, h in uncached.items():
            r = g.get("/m/x", headers=h, timeout=10)
            assert r.status_code != 200, f"{label}: let in while PostgreSQL is down"
            G.assert_gw_error(r, 503)
        # cached ones still work
        assert G.echo(g.get("/s/x", headers=G.cookie(a)))["headers"]["x-user-id"] == a.id
        assert G.echo(g.get("/s/x", headers=G.bearer(a.token)))["headers"]["x-user-id"] == a.id
        assert G.echo(g.get("/k/x", headers={"x-api-key": ka.key}))["headers"]["x-api-key-id"] == ka.id
    # forward auth answers the same
    r = g.get("/_auth", headers={"X-Original-URI": "/k/x", "x-api-key": kb.key})
    assert r.status_code == 503, r.text
    r = g.get("/ready")
    assert r.status_code == 200 and r.json()["redis"] == "ok", r.text      # can still decide
    g.wait_ready(timeout=5, postgres="down", redis="ok", revocations="subscribed", streak=3)
    # 503 must not have been cached as "unknown"
    assert g.stats()["pg_errors"] >= 1

    # ---- PostgreSQL comes back
    own_pg.start()
    seen = []

    def back():
        r = g.get("/k/x", headers={"x-api-key": kb.key})
        seen.append(r.status_code)
        return r.status_code == 200
    H.wait_until(back, 15, interval=0.1, what="uncached API key accepted after PostgreSQL restart")
    assert set(seen) <= {200, 503}, seen
    assert G.echo(g.get("/s/x", headers=G.cookie(b)))["headers"]["x-user-id"] == b.id
    G.assert_gw_error(g.get("/m/x", headers={"x-api-key": G.new_api_key()}), 401)
    g.wait_ready(timeout=10)
    c.close()
