"""PostgreSQL read replicas (issue 25): DATABASE_READ_URL names a real streaming replica
(pg_basebackup -R of the module's own primary, pcsupport.Replica) and the gateway's
lookups go there:

- a credential the replica has is answered by it (the replica lookup counters move);
- a credential made a moment ago, not yet replayed (replay paused), is found on the
  primary: never refused for replica lag;
- a lagging replica (replay paused while the primary writes, past READ_MAX_LAG_MS)
  takes no lookups until it catches up;
- a key deleted on the primary while the replica still has it (replay paused) is
  refused: the revocation sends its lookups to the primary;
- the replica stopped under load: lookups go to the primary, nothing fails;
- a replica that accepts connections and never answers (a silent host): lookups go
  to the primary at once, not after its connect timeout.
"""

from __future__ import annotations

import socket
import time

import pytest

import pcsupport as H
import pcsupport as G
from pcsupport.checks import stop_all
from pcsupport import cluster as C

MAX_LAG_MS = 400


@pytest.fixture(scope="module")
def rig(tmp_root, secret):
    d = tmp_root / "replica"
    pg = H.Postgres()
    made = []
    try:
        redis = H.Redis(basedir=str(d / "redis"))
        made.append(redis)
        db_url = pg.create_database("authsvc")
        svc = H.Authsvc({"BETTER_AUTH_SECRET": secret, "DATABASE_URL": db_url,
                         "REDIS_URL": redis.url, "RATE_LIMIT_ENABLED": "false"},
                        workdir=str(d / "authsvc"), name="authsvc-replica")
        made.append(svc)
        replica = H.Replica(pg)
        made.append(replica)
        up = G.Upstream(d)
        made.append(up)
        routes = {"routes": [{"prefix": "/k/", "upstream": up.url, "auth": ["api_key"]},
                             {"prefix": "/s/", "upstream": up.url, "auth": ["session"]}]}
        env = G.gw_base_env(pg, redis, secret, DATABASE_READ_URL=replica.url("authsvc"),
                            READ_MAX_LAG_MS=str(MAX_LAG_MS), L1_MAX_ENTRIES="0",
                            L2_ENABLED="false")
        g = G.Gateway(env, routes, workdir=d, name="gateway-replica")
        made.append(g)
        conn = pg.connect("authsvc")
        sql = G.SQL(conn)
        # after the feed subscribes, lookups stay on the primary for
        # READ_MAX_LAG_MS + 1.5 s (pgstore.c): let that pass
        time.sleep(MAX_LAG_MS / 1000 + 1.6)
        yield {"pg": pg, "redis": redis, "secret": secret, "dir": d, "up": up,
               "replica": replica, "gw": g, "svc": svc, "sql": sql,
               "keys": G.ApiKeys(sql), "client": H.ApiClient(svc)}
        conn.close()
    finally:
        stop_all(made, pg)


def _stats(g):
    s = g.stats()
    return {k: s.get(k, 0) for k in ("pg_read_queries", "pg_read_fallbacks", "pg_read_misses")}


def _caught_up(r):
    H.wait_until(r["replica"].caught_up, 15, what="the replica caught up")


def _replicated_key(r):
    """A new user's key, on the replica too."""
    u = r["client"].sign_up()
    k = r["keys"].create(u.id)
    _caught_up(r)
    return k


def test_a_replicated_key_is_answered_by_the_replica(rig):
    k = _replicated_key(rig)
    time.sleep(0.6)                 # one lag check after the writes
    before = _stats(rig["gw"])
    assert rig["gw"].get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    after = _stats(rig["gw"])
    assert after["pg_read_queries"] > before["pg_read_queries"], (before, after)
    assert after["pg_read_misses"] == before["pg_read_misses"], (before, after)
    assert after["pg_read_fallbacks"] == before["pg_read_fallbacks"], (before, after)


def test_a_new_key_not_yet_replayed_is_found_on_the_primary(rig):
    u = rig["client"].sign_up()
    _caught_up(rig)
    rig["replica"].pause_replay()
    try:
        k = rig["keys"].create(u.id)
        before = _stats(rig["gw"])
        r = rig["gw"].get("/k/x", headers={"x-api-key": k.key})
        assert r.status_code == 200, r.text
        after = _stats(rig["gw"])
        # asked of the replica (within lag so far) and then of the primary, or
        # straight to the primary once the replica counts as lagging
        assert (after["pg_read_misses"] > before["pg_read_misses"]
                or after["pg_read_fallbacks"] > before["pg_read_fallbacks"]), (before, after)
    finally:
        rig["replica"].resume_replay()


def test_a_lagging_replica_takes_no_lookups(rig):
    k = _replicated_key(rig)
    rig["replica"].pause_replay()
    try:
        # the primary writes on: the replica falls behind past READ_MAX_LAG_MS
        for _ in range(10):
            rig["client"].sign_up()
            time.sleep(0.1)
        time.sleep(0.6)
        before = _stats(rig["gw"])
        for _ in range(5):
            assert rig["gw"].get("/k/x", headers={"x-api-key": k.key}).status_code == 200
        after = _stats(rig["gw"])
        assert after["pg_read_fallbacks"] - before["pg_read_fallbacks"] >= 5, (before, after)
    finally:
        rig["replica"].resume_replay()
    _caught_up(rig)
    time.sleep(0.6)
    before = _stats(rig["gw"])
    assert rig["gw"].get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    assert _stats(rig["gw"])["pg_read_fallbacks"] == before["pg_read_fallbacks"]


def test_a_key_deleted_on_the_primary_is_refused_while_the_replica_has_it(rig):
    k = _replicated_key(rig)
    time.sleep(0.6)
    assert rig["gw"].get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    rig["replica"].pause_replay()
    try:
        assert rig["sql"].execute('delete from "apikey" where id = %s', (k.id,)) == 1
        # the revocation reaches the gateway (NOTIFY -> authsvc -> Redis); the replica
        # still holds the row, and is within lag for the first few hundred ms
        t, seen = G.poll_until_status(lambda: rig["gw"].get("/k/x", headers={"x-api-key": k.key}),
                                      401, 2.0, interval=0.01)
        assert set(seen) <= {200, 401}, seen
        for _ in range(20):
            assert rig["gw"].get("/k/x", headers={"x-api-key": k.key}).status_code == 401
    finally:
        rig["replica"].resume_replay()


def test_replica_stopped_under_load(rig):
    k = _replicated_key(rig)
    g = rig["gw"]
    with C.Load(g.port, [("apikey", "/k/x", {"x-api-key": k.key})], rate=200, threads=2,
                max_seconds=30) as load:
        load.wait_count(200)
        rig["replica"].stop()
        load.wait_count(400)
        before = _stats(g)
        load.wait_count(200)
        after = _stats(g)
        rig["replica"].start()
        load.wait_count(200)
    fails = load.failures()
    assert fails == [], f"{len(fails)} failed: {fails[:10]}"
    assert after["pg_read_fallbacks"] > before["pg_read_fallbacks"], (before, after)


def test_a_silent_replica_sends_lookups_to_the_primary_at_once(rig):
    # a listener that accepts and never speaks: the replica's connects hang
    # until their 5 s timeout, and every lookup meanwhile must not wait for them
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    port = silent.getsockname()[1]
    routes = {"routes": [{"prefix": "/k/", "upstream": rig["up"].url, "auth": ["api_key"]}]}
    env = G.gw_base_env(rig["pg"], rig["redis"], rig["secret"],
                        DATABASE_READ_URL=f"postgresql://u@127.0.0.1:{port}/authsvc",
                        READ_MAX_LAG_MS=str(MAX_LAG_MS), L1_MAX_ENTRIES="0",
                        L2_ENABLED="false")
    g = G.Gateway(env, routes, workdir=rig["dir"] / "silent", name="gateway-silent-replica")
    try:
        # past the feed's primary-only window (as the rig), well within the
        # replica connects' 5 s
        time.sleep(MAX_LAG_MS / 1000 + 1.6)
        u = rig["client"].sign_up()
        k = rig["keys"].create(u.id)
        before = _stats(g)
        t0 = time.monotonic()
        r = g.get("/k/x", headers={"x-api-key": k.key})
        took = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert took < 3, f"the lookup waited {took:.1f} s for a replica that never answers"
        assert _stats(g)["pg_read_fallbacks"] > before["pg_read_fallbacks"]
    finally:
        stop_all([g], None)
        silent.close()
