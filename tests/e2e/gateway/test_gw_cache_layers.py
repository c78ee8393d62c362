"""The cache layers can be switched off (issue 7, for the bench's Redis-only and
PostgreSQL-path rows): L1_MAX_ENTRIES=0 turns the in-process cache off (every lookup
goes to Redis, then PostgreSQL; nothing is stored, negative entries included) and
L2_ENABLED=false stops the gateway reading credentials from Redis and writing its
PostgreSQL fills there (Redis still carries revocations, rate limits and quotas).
Each gateway here is a process of its own, so its /_stats counters are the test's."""

import json
import threading
import time

import pytest

import pcsupport as H
import pcsupport as G

N = 10                  # sequential requests per check
REFUSE_WITHIN = 0.5     # seconds, as test_gw_revocation.py
L1_OFF = {"L1_MAX_ENTRIES": "0"}
NO_CACHE = {"L1_MAX_ENTRIES": "0", "L2_ENABLED": "false"}
CACHE_STATS = ("l1_hits", "l1_negative_hits", "l2_hits", "pg_queries")


def _key_entry(k):
    """The Redis key the gateway fills for an API key (l2redis.c: <prefix>k:<hash>)."""
    return f"{H.DEFAULT_REDIS_PREFIX}k:{k.hash}"


def _delta(g, fn):
    """Runs fn() and returns how much each cache counter of g moved meanwhile."""
    s0 = g.stats()
    out = fn()
    s1 = g.stats()
    return {k: s1[k] - s0[k] for k in CACHE_STATS}, out, s1


def _served(g, path, headers, n=N, header="x-user-id", want=None):
    """n sequential requests, each 200 with the identity header `header` == want."""
    for _ in range(n):
        body = G.echo(g.get(path, headers=headers))
        assert body["headers"].get(header) == want, body["headers"]


def _refused_quickly(g, path, headers):
    took, seen = G.poll_until_status(lambda: g.get(path, headers=headers), 401, 5.0)
    assert took < REFUSE_WITHIN, f"refused only after {took * 1000:.0f} ms ({len(seen)} polls)"
    return took


# ---------------------------------------------------------------------------
# configuration


def test_help_names_both_switches():
    r = H.run_bounded([H.binary("gateway"), "--help"], env=G.gateway_env({}), timeout=10)
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    line = next((ln for ln in out.splitlines() if "L1_MAX_ENTRIES" in ln), "")
    assert "0: L1 off" in line, out
    assert "L2_ENABLED" in out and "true" in next(ln for ln in out.splitlines() if "L2_ENABLED" in ln)


@pytest.mark.parametrize("var,value,says", [
    ("L1_MAX_ENTRIES", "1", "0 (L1 off) or at least 16"),
    ("L1_MAX_ENTRIES", "15", "0 (L1 off) or at least 16"),
    ("L1_MAX_ENTRIES", "-1", "from 0"),
    ("L2_ENABLED", "maybe", "true or false"),
])
def test_bad_switch_is_refused(tmp_path, var, value, says):
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "c" * 40,
           "REDIS_URL": "redis://127.0.0.1:1", "UPSTREAM_URL": "http://127.0.0.1:9",
           "GATEWAY_LISTEN": f"127.0.0.1:{H.free_port()}", var: value}
    r = H.run_bounded([H.binary("gateway")], env=G.gateway_env(env), timeout=10)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, f"exit {r.returncode}: {err}"
    assert var in err and says in err, err


# ---------------------------------------------------------------------------
# L1 off: Redis, then PostgreSQL, on every request


def test_l1_off_api_key_every_request_is_a_lookup(gateway_factory, keys, redis_client, mod_user):
    g = gateway_factory(L1_OFF, name="gateway-l1off")
    k = keys.create(mod_user.id)
    d, _, _ = _delta(g, lambda: _served(g, "/k/x", {"x-api-key": k.key}, 1, "x-api-key-id", k.id))
    assert d == {"l1_hits": 0, "l1_negative_hits": 0, "l2_hits": 0, "pg_queries": 1}, d
    H.wait_until(lambda: redis_client.exists(_key_entry(k)), 2, what="the PostgreSQL fill in Redis")
    d, _, s = _delta(g, lambda: _served(g, "/k/x", {"x-api-key": k.key}, N, "x-api-key-id", k.id))
    assert d == {"l1_hits": 0, "l1_negative_hits": 0, "l2_hits": N, "pg_queries": 0}, d
    assert s["l1_entries"] == 0, s


def test_l1_off_session_from_redis(gateway_factory, user):
    g = gateway_factory(L1_OFF, name="gateway-l1off")
    d, _, s = _delta(g, lambda: _served(g, "/s/x", G.cookie(user), N, "x-user-id", user.id))
    assert d["l1_hits"] == 0 and d["l2_hits"] == N and d["pg_queries"] == 0, d
    assert s["l1_entries"] == 0, s


def test_l1_off_forward_auth(gateway_factory, keys, mod_user):
    g = gateway_factory(L1_OFF, name="gateway-l1off")
    k = keys.create(mod_user.id)

    def check():
        for _ in range(N):
            r = g.get("/_auth", headers={"X-Original-URI": "/k/x", "x-api-key": k.key})
            assert r.status_code == 200 and r.headers.get("x-api-key-id") == k.id, r.text
    d, _, _ = _delta(g, check)
    assert d["l1_hits"] == 0 and d["l2_hits"] + d["pg_queries"] == N, d


def test_l1_off_unknown_key_is_never_cached(gateway_factory):
    g = gateway_factory(L1_OFF, name="gateway-l1off")
    unknown = G.new_api_key()

    def check():
        for _ in range(N):
            G.assert_gw_error(g.get("/k/x", headers={"x-api-key": unknown}), 401)
    d, _, s = _delta(g, check)
    # no negative entry: every request asks Redis (no entry) and then PostgreSQL
    assert d == {"l1_hits": 0, "l1_negative_hits": 0, "l2_hits": 0, "pg_queries": N}, d
    assert s["l1_entries"] == 0, s


def test_l1_off_revocations_refuse_at_once(gateway_factory, aclient, keys, sql, redis_client, user,
                                           mod_user):
    g = gateway_factory(L1_OFF, name="gateway-l1off")
    k = keys.create(mod_user.id)
    _served(g, "/k/x", {"x-api-key": k.key}, 2, "x-api-key-id", k.id)
    H.wait_until(lambda: redis_client.exists(_key_entry(k)), 2, what="the PostgreSQL fill in Redis")
    # the row goes and its hash is published; nobody DELs the gateway-written entry but
    # the gateways themselves (revocation.c)
    assert sql.execute('delete from "apikey" where id = %s', (k.id,)) == 1
    redis_client.command("PUBLISH", H.DEFAULT_REVOCATION_CHANNEL, k.hash)
    _refused_quickly(g, "/k/x", {"x-api-key": k.key})
    _served(g, "/s/x", G.cookie(user), 2, "x-user-id", user.id)
    assert aclient.post("sign-out", cookie=user.cookie).status_code == 200
    _refused_quickly(g, "/s/x", G.cookie(user))
    assert g.stats()["l1_entries"] == 0


# ---------------------------------------------------------------------------
# both off: PostgreSQL on every request


def test_both_off_every_request_queries_postgres(gateway_factory, keys, redis_client, mod_user):
    g = gateway_factory(NO_CACHE, name="gateway-nocache")
    k = keys.create(mod_user.id)
    d, _, s = _delta(g, lambda: _served(g, "/k/x", {"x-api-key": k.key}, N, "x-api-key-id", k.id))
    assert d == {"l1_hits": 0, "l1_negative_hits": 0, "l2_hits": 0, "pg_queries": N}, d
    assert s["l1_entries"] == 0, s
    time.sleep(0.3)     # a fill would be written right after its query
    assert not redis_client.exists(_key_entry(k)), "the gateway wrote the key to Redis"


def test_both_off_session_queries_postgres(gateway_factory, redis_client, user):
    g = gateway_factory(NO_CACHE, name="gateway-nocache")
    assert redis_client.exists(H.session_key(user.token)), "authsvc did not write the session"
    d, _, _ = _delta(g, lambda: _served(g, "/s/x", G.cookie(user), N, "x-user-id", user.id))
    assert d == {"l1_hits": 0, "l1_negative_hits": 0, "l2_hits": 0, "pg_queries": N}, d


def test_both_off_does_not_read_redis(gateway_factory, keys, redis_client, mod_user):
    """An entry in Redis for a key PostgreSQL does not know: the Redis-reading gateway
    takes it (the control), the one with L2_ENABLED=false asks PostgreSQL and refuses."""
    l1off = gateway_factory(L1_OFF, name="gateway-l1off")
    nocache = gateway_factory(NO_CACHE, name="gateway-nocache")
    real = keys.create(mod_user.id)
    _served(l1off, "/k/x", {"x-api-key": real.key}, 1, "x-api-key-id", real.id)
    H.wait_until(lambda: redis_client.exists(_key_entry(real)), 2, what="the fill in Redis")
    entry = redis_client.get(_key_entry(real))
    assert json.loads(entry)["id"] == real.id
    ghost = G.ApiKey(G.new_api_key(), "ghost", mod_user.id)
    redis_client.command("SET", _key_entry(ghost), entry, "PX", 60000)
    try:
        _served(l1off, "/k/x", {"x-api-key": ghost.key}, 1, "x-api-key-id", real.id)
        d, _, _ = _delta(nocache, lambda: G.assert_gw_error(
            nocache.get("/k/x", headers={"x-api-key": ghost.key}), 401))
        assert d["l2_hits"] == 0 and d["pg_queries"] == 1, d
    finally:
        redis_client.delete(_key_entry(ghost))


def test_both_off_revocation_refuses_the_next_request(gateway_factory, aclient, keys, sql, user,
                                                      mod_user):
    g = gateway_factory(NO_CACHE, name="gateway-nocache")
    k = keys.create(mod_user.id)
    _served(g, "/k/x", {"x-api-key": k.key}, 2, "x-api-key-id", k.id)
    assert sql.execute('delete from "apikey" where id = %s', (k.id,)) == 1
    G.assert_gw_error(g.get("/k/x", headers={"x-api-key": k.key}), 401)
    _served(g, "/s/x", G.cookie(user), 2, "x-user-id", user.id)
    assert aclient.post("sign-out", cookie=user.cookie).status_code == 200
    G.assert_gw_error(g.get("/s/x", headers=G.cookie(user)), 401)


def test_both_off_rate_limit_still_in_redis(gateway_factory, keys, sql, redis_client, mod_user):
    g = gateway_factory(NO_CACHE, name="gateway-nocache")
    k = keys.create(mod_user.id)
    sql.execute('update "apikey" set "rateLimitEnabled" = true, "rateLimitTimeWindow" = 60000, '
                '"rateLimitMax" = 3 where id = %s', (k.id,))
    _served(g, "/k/x", {"x-api-key": k.key}, 3, "x-api-key-id", k.id)
    G.assert_gw_error(g.get("/k/x", headers={"x-api-key": k.key}), 429, "RATE_LIMITED")
    assert redis_client.exists(f"{H.DEFAULT_REDIS_PREFIX}u:{k.hash}"), "no counter in Redis"
    assert not redis_client.exists(_key_entry(k))


def test_both_off_concurrent_misses_share_one_query(gateway_factory, keys, pg, mod_user):
    """The apikey table is locked, so the first query waits; every request that comes
    meanwhile must join it instead of sending its own."""
    g = gateway_factory(dict(NO_CACHE, GATEWAY_PG_TIMEOUT_MS="10000"), name="gateway-nocache")
    k = keys.create(mod_user.id)
    n = 12
    lock = pg.connect("authsvc", autocommit=False)
    watch = pg.connect("authsvc")
    results = []
    try:
        with lock.cursor() as cur:
            cur.execute('lock table "apikey" in access exclusive mode')
        s0 = g.stats()

        def one():
            r = G.raw_http(g.port, (f"GET /k/x HTTP/1.1\r\nHost: x\r\nx-api-key: {k.key}\r\n"
                                    "Connection: close\r\n\r\n").encode())
            results.append(r[0])
        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()

        def waiting():
            with watch.cursor() as cur:
                cur.execute("select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                            "and query like '%apikey%'")
                return cur.fetchone()[0] >= 1
        H.wait_until(waiting, 1.5, what="the gateway's query waiting on the lock")
        time.sleep(0.3)     # the other requests arrive and join
        lock.commit()
        for t in threads:
            t.join(10)
    finally:
        lock.close()
        watch.close()
    assert results == [200] * n, results
    d = g.stats()["pg_queries"] - s0["pg_queries"]
    assert 1 <= d <= 2, f"{n} concurrent misses sent {d} PostgreSQL queries"
