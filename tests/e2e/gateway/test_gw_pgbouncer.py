"""Through pgbouncer in transaction mode (issue 25): authsvc and the gateway reach
PostgreSQL through a real pgbouncer (Debian's, pcsupport.PgBouncer, transaction
pooling, 4 server connections); only authsvc's LISTEN connections and the
migration (an advisory lock) go direct, through DATABASE_DIRECT_URL.

Sign-up, sign-in, sessions and API keys work; the gateway's lookups (L1 and Redis
off, so every request asks PostgreSQL; cold keys sent together share one
"= ANY($1)" round trip) work; a sign-out and an API key deleted by SQL are refused
by the gateway within a second, so the revocation relay's LISTEN is live.
"""

from __future__ import annotations

import concurrent.futures

import pytest

import pcsupport as H
import pcsupport as G
from pcsupport.checks import stop_all
from pcsupport.pgbouncer import PgBouncer


@pytest.fixture(scope="module")
def rig(tmp_root, secret):
    d = tmp_root / "pgbouncer"
    pg = H.Postgres()
    made = []
    try:
        redis = H.Redis(basedir=str(d / "redis"))
        made.append(redis)
        direct = pg.create_database("authsvc")
        bouncer = PgBouncer(pg, "authsvc")
        made.append(bouncer)
        svc = H.Authsvc({"BETTER_AUTH_SECRET": secret, "DATABASE_URL": bouncer.url,
                         "DATABASE_DIRECT_URL": direct, "REDIS_URL": redis.url,
                         "RATE_LIMIT_ENABLED": "false"},
                        workdir=str(d / "authsvc"), name="authsvc-pgbouncer")
        made.append(svc)
        up = G.Upstream(d)
        made.append(up)
        routes = {"routes": [{"prefix": "/k/", "upstream": up.url, "auth": ["api_key"]},
                             {"prefix": "/s/", "upstream": up.url, "auth": ["session"]}]}
        env = G.gw_base_env(pg, redis, secret, L1_MAX_ENTRIES="0", L2_ENABLED="false")
        env["DATABASE_URL"] = bouncer.url
        g = G.Gateway(env, routes, workdir=d, name="gateway-pgbouncer")
        made.append(g)
        conn = pg.connect("authsvc")
        sql = G.SQL(conn)
        yield {"gw": g, "svc": svc, "sql": sql, "keys": G.ApiKeys(sql),
               "client": H.ApiClient(svc)}
        conn.close()
    finally:
        stop_all(made, pg)


def test_accounts_sessions_and_keys_through_pgbouncer(rig):
    c, g = rig["client"], rig["gw"]
    u = c.sign_up()
    v = c.sign_in(u.email, u.password)
    assert c.session_of(v)["user"]["id"] == u.id
    assert len(c.get("list-sessions", cookie=v.cookie).json()) == 2
    r = c.post("api-key/create", json={"name": "through pgbouncer"}, cookie=v.cookie)
    assert r.status_code == 200, r.text
    key = H.sensitive(r.json()["key"])
    assert g.get("/s/x", headers=G.cookie(v)).status_code == 200
    assert g.get("/k/x", headers={"x-api-key": key}).status_code == 200


def test_cold_keys_together_through_pgbouncer(rig):
    u = rig["client"].sign_up()
    keys = [rig["keys"].create(u.id) for _ in range(40)]

    def one(k):
        return rig["gw"].get("/k/x", headers={"x-api-key": k.key}).status_code
    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        assert list(ex.map(one, keys)) == [200] * len(keys)


def test_revocations_reach_the_gateway(rig):
    c, g = rig["client"], rig["gw"]
    u = c.sign_up()
    k = rig["keys"].create(u.id)
    assert g.get("/s/x", headers=G.cookie(u)).status_code == 200
    assert g.get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    assert c.post("sign-out", cookie=u.cookie).status_code == 200
    t, seen = G.poll_until_status(lambda: g.get("/s/x", headers=G.cookie(u)), 401, 1.0)
    assert set(seen) <= {200, 401}, seen
    assert rig["sql"].execute('delete from "apikey" where id = %s', (k.id,)) == 1
    t, seen = G.poll_until_status(lambda: g.get("/k/x", headers={"x-api-key": k.key}), 401, 1.0)
    assert set(seen) <= {200, 401}, seen
