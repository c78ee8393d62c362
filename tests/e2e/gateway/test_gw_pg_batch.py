"""Misses that queue together share one PostgreSQL round trip (issue 24, cold keys).

A gateway with one worker, one PostgreSQL connection and no Redis lookups
(L2_ENABLED=false). The test holds a lock on the table the lookups read, so the
first lookup blocks on the only connection and every later one waits in the
pool's queue; once all are parked it lets go. The first query answers alone;
the queued ones leave in "= ANY($1)" round trips of at most GATEWAY_PG_BATCH_MAX.
Each request must still get the answer of its own row: valid, disabled, expired
and unknown credentials mixed in one batch. (The quoting of the array literal
is tests/unit/test_gw_pg_array.c's: tokens and key hashes that reach PostgreSQL
are letters, digits, '-' and '_'.)"""

import threading

import pytest
import requests

import pcsupport as H
import pcsupport as G

BASE = {"GATEWAY_WORKERS": "1", "GATEWAY_PG_POOL": "1", "L2_ENABLED": "false",
        "GATEWAY_PG_TIMEOUT_MS": "20000"}


def _burst(g, pg, table, calls, parked_before=0):
    """Runs every call (path, headers) at once while `table` is locked, lets go when
    all are parked; returns the answers in call order and the counters' moves."""
    lock = pg.connect("authsvc", autocommit=False)
    out = [None] * len(calls)
    s0 = g.stats()
    try:
        with lock.cursor() as cur:
            cur.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')

        def one(i, path, headers):
            out[i] = requests.get(g.url(path), headers=headers, timeout=30)

        ts = [threading.Thread(target=one, args=(i, p, h)) for i, (p, h) in enumerate(calls)]
        for t in ts:
            t.start()
        H.wait_until(lambda: g.stats().get("parked", 0) >= parked_before + len(calls), 10,
                     what=f"{len(calls)} lookups parked behind the lock")
    finally:
        lock.rollback()
        lock.close()
    for t in ts:
        t.join(30)
    s1 = g.stats()
    return out, {k: s1[k] - s0[k] for k in ("pg_queries", "pg_batched", "pg_errors")}


def _keys(keys, sql, user, n):
    """n valid keys, one disabled, one expired, two that do not exist: (key, want id) pairs."""
    made = [(k.key, k.id) for k in (keys.create(user.id) for _ in range(n))]
    made.append((keys.create(user.id, enabled=False).key, None))
    made.append((keys.create(user.id, expires_sql="now() - interval '1 minute'").key, None))
    made += [(G.new_api_key(), None), (G.new_api_key(), None)]
    return made


def _check_keys(answers, made, user):
    for r, (key, want) in zip(answers, made):
        if want is None:
            assert r.status_code == 401, (key[:8], r.status_code, r.text[:200])
        else:
            h = G.echo(r)["headers"]
            assert h.get("x-api-key-id") == want and h.get("x-user-id") == user.id, h


@pytest.fixture
def batch_gw(gateway_factory):
    return lambda env=None: gateway_factory({**BASE, **(env or {})}, name="gateway-pg-batch")


def test_queued_key_misses_share_one_round_trip(batch_gw, pg, keys, sql, mod_user):
    g = batch_gw()
    made = _keys(keys, sql, mod_user, 20)
    answers, d = _burst(g, pg, "apikey", [("/k/x", {"x-api-key": k}) for k, _ in made])
    _check_keys(answers, made, mod_user)
    n = len(made)
    # the first alone (it met the lock), every other one in the batch behind it
    assert d["pg_errors"] == 0, d
    assert d["pg_queries"] == 2 and d["pg_batched"] == n - 2, d
    # and each answer went into L1 (the unknown ones as negative entries): the same
    # keys again ask PostgreSQL nothing, but for the expired one, which decide drops
    # from L1
    s0 = g.stats()["pg_queries"]
    for i, (k, want) in enumerate(made):
        r = g.get("/k/x", headers={"x-api-key": k})
        assert r.status_code == (200 if want else 401), r.status_code
    assert g.stats()["pg_queries"] == s0 + 1


def test_batches_are_bounded_and_can_be_turned_off(batch_gw, pg, keys, sql, mod_user):
    for limit, queries in (("4", 1 + 4), ("1", None)):   # 15 queued: 4+4+4+3; or one each
        g = batch_gw({"GATEWAY_PG_BATCH_MAX": limit})
        made = _keys(keys, sql, mod_user, 12)             # 16 lookups
        answers, d = _burst(g, pg, "apikey", [("/k/x", {"x-api-key": k}) for k, _ in made])
        _check_keys(answers, made, mod_user)
        want = queries if queries is not None else len(made)
        assert d["pg_queries"] == want and d["pg_batched"] == len(made) - want, (limit, d)
        g.stop()


def _session(sql, user_id, token, expires="now() + interval '7 days'"):
    sql.execute('insert into "session" (id, "expiresAt", token, "createdAt", "updatedAt", '
                '"ipAddress", "userAgent", "userId") values (%s, ' + expires + ', %s, now(), now(), '
                "'', '', %s)", (H.generate_id(32), token, user_id))
    return token


def test_queued_session_misses_share_one_round_trip(batch_gw, pg, sql, secret, mod_user):
    g = batch_gw()
    uid = mod_user.id
    # Better Auth's token shape (32 letters and digits): the only one extract lets through
    valid = [_session(sql, uid, H.generate_id(32)) for _ in range(9)]
    expired = _session(sql, uid, H.generate_id(32), "now() - interval '1 minute'")
    unknown = [H.generate_id(32) for _ in range(3)]
    calls, want = [], []
    for tok, ok in [(t, True) for t in valid] + [(expired, False)] + [(t, False) for t in unknown]:
        calls.append(("/s/x", {"Cookie": f"better-auth.session_token={G.cookie_value(secret, tok)}"}))
        want.append(ok)
    answers, d = _burst(g, pg, "session", calls)
    for r, ok, (_, hdr) in zip(answers, want, calls):
        if ok:
            assert G.echo(r)["headers"].get("x-user-id") == uid, hdr
        else:
            assert r.status_code == 401, (hdr, r.status_code, r.text[:200])
    assert d["pg_errors"] == 0, d
    assert d["pg_queries"] == 2 and d["pg_batched"] == len(calls) - 2, d


def test_a_batch_that_gets_no_answer_is_503_for_each(batch_gw, pg, keys, sql, mod_user):
    """The batch's round trip times out: every lookup in it is 503, none 401."""
    g = batch_gw({"GATEWAY_PG_TIMEOUT_MS": "1500"})
    made = _keys(keys, sql, mod_user, 6)
    lock = pg.connect("authsvc", autocommit=False)
    out = [None] * len(made)
    try:
        with lock.cursor() as cur:
            cur.execute('LOCK TABLE "apikey" IN ACCESS EXCLUSIVE MODE')

        def one(i, k):
            out[i] = requests.get(g.url("/k/x"), headers={"x-api-key": k}, timeout=30)

        ts = [threading.Thread(target=one, args=(i, k)) for i, (k, _) in enumerate(made)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
    finally:
        lock.rollback()
        lock.close()
    assert [r.status_code for r in out] == [503] * len(made), [r.status_code for r in out]
