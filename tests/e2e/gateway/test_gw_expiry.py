"""Expiry and state of credentials: expired sessions, disabled and expired API keys,
API keys expiring while cached, Better Auth's sliding refresh (an async UPDATE at most
once per updateAge)."""

import json
import time

import pcsupport as H
import pcsupport as G


def _expire_session(sql, redis_client, u, *, keep_redis=False):
    sql.execute('update "session" set "expiresAt" = now() - interval \'1 minute\' where token = %s',
                (u.token,))
    if not keep_redis:
        redis_client.delete(H.session_key(u.token))


def _session_creds(u):
    return [G.cookie(u), G.bearer(u.signed), G.bearer(u.token)]


def test_expired_session_is_401(gw, sql, redis_client, user):
    """Expired in PostgreSQL, gone from Redis, never seen by this gateway."""
    _expire_session(sql, redis_client, user)
    for h in _session_creds(user):
        G.assert_gw_error(gw.get("/s/x", headers=h), 401)
    r = gw.get("/_auth", headers={"X-Original-URI": "/s/x", **G.cookie(user)})
    assert r.status_code == 401


def test_expired_session_still_in_redis_is_401(gw, sql, redis_client, user):
    """Redis still holds the entry, with its (past) expiresAt: the gateway honours it."""
    key = H.session_key(user.token)
    entry = json.loads(redis_client.get(key))
    entry["expiresAt"] = int(time.time() * 1000) - 60_000
    if isinstance(entry.get("session"), dict):
        entry["session"]["expiresAt"] = entry["expiresAt"]
    redis_client.command("SET", key, json.dumps(entry), "EX", 600)
    _expire_session(sql, redis_client, user, keep_redis=True)
    for h in _session_creds(user):
        G.assert_gw_error(gw.get("/m/x", headers=h), 401)


def test_expired_session_refused_once_l1_entry_is_gone(gateway_factory, sql, redis_client, user):
    g = gateway_factory({"L1_TTL_SECONDS": "1"}, name="gateway-l1ttl1")
    assert g.get("/s/x", headers=G.cookie(user)).status_code == 200
    _expire_session(sql, redis_client, user)
    time.sleep(1.2)
    for h in _session_creds(user):
        G.assert_gw_error(g.get("/s/x", headers=h), 401)


def test_expired_session_refused_by_a_fresh_gateway(gw, gateway_factory, sql, redis_client, user):
    assert gw.get("/s/x", headers=G.cookie(user)).status_code == 200
    _expire_session(sql, redis_client, user)
    g = gateway_factory(name="gateway-fresh")
    for h in _session_creds(user):
        G.assert_gw_error(g.get("/s/x", headers=h), 401)


def test_deleted_user_session_row_is_401(gw, sql, redis_client, user):
    sql.execute('delete from "session" where token = %s', (user.token,))
    redis_client.delete(H.session_key(user.token))
    G.assert_gw_error(gw.get("/s/x", headers=G.cookie(user)), 401)


def test_disabled_api_key_is_401(gw, keys, mod_user):
    k = keys.create(mod_user.id, enabled=False)
    for h in ({"x-api-key": k.key}, G.bearer(k.key)):
        G.assert_gw_error(gw.get("/k/x", headers=h), 401)
    G.assert_gw_error(gw.get(f"/oc/{k.key}/x"), 401)
    assert gw.get("/_auth", headers={"X-Original-URI": "/k/x", "x-api-key": k.key}).status_code == 401


def test_expired_api_key_is_401(gw, keys, mod_user):
    k = keys.create(mod_user.id, expires_sql="now() - interval '1 second'")
    for h in ({"x-api-key": k.key}, G.bearer(k.key)):
        G.assert_gw_error(gw.get("/k/x", headers=h), 401)
    G.assert_gw_error(gw.get(f"/oc/{k.key}/x"), 401)


def test_api_key_with_future_expiry_passes(gw, keys, mod_user):
    k = keys.create(mod_user.id, expires_sql="now() + interval '1 day'")
    assert G.echo(gw.get("/k/x", headers={"x-api-key": k.key}))["headers"]["x-api-key-id"] == k.id


def test_api_key_expiring_while_cached_is_refused(gw, keys, mod_user):
    """L1 keeps an entry no longer than the credential's own expiry."""
    t0 = time.monotonic()
    k = keys.create(mod_user.id, expires_sql="now() + interval '2 seconds'")
    assert gw.get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    assert gw.get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    time.sleep(max(0.0, 2.3 - (time.monotonic() - t0)))
    G.assert_gw_error(gw.get("/k/x", headers={"x-api-key": k.key}), 401)


def test_disabling_a_cached_key_with_publish_is_seen(gw, keys, sql, redis_client, mod_user):
    k = keys.create(mod_user.id)
    assert gw.get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    sql.execute('update "apikey" set enabled = false where id = %s', (k.id,))
    redis_client.delete(f"{H.DEFAULT_REDIS_PREFIX}k:{k.hash}")
    redis_client.command("PUBLISH", H.DEFAULT_REVOCATION_CHANNEL, k.hash)
    took, _ = G.poll_until_status(lambda: gw.get("/k/x", headers={"x-api-key": k.key}), 401, 2.0)
    assert took < 0.5


# ---- sliding refresh


def _exp_seconds_left(sql, token):
    return sql.scalar('select extract(epoch from "expiresAt" - now()) from "session" where token = %s',
                      (token,))


def test_sliding_refresh_once_per_update_age(gateway_factory, sql, redis_client, user):
    """A session older than updateAge (1 day) gets expiresAt moved to now + expiresIn
    (7 days) by one async UPDATE; later requests don't repeat it."""
    sql.execute('update "session" set "expiresAt" = now() + interval \'2 days\', '
                '"updatedAt" = now() - interval \'5 days\' where token = %s', (user.token,))
    redis_client.delete(H.session_key(user.token))
    g = gateway_factory(name="gateway-refresh")
    s0 = g.stats()
    assert g.get("/s/x", headers=G.cookie(user)).status_code == 200
    H.wait_until(lambda: _exp_seconds_left(sql, user.token) > 6.9 * 86400, 3,
                 what="sliding refresh UPDATE of expiresAt")
    for h in _session_creds(user) * 3:
        assert g.get("/s/x", headers=h).status_code == 200
    s1 = g.stats()
    # one lookup + one UPDATE, nothing more
    assert s1["pg_queries"] - s0["pg_queries"] == 2, (s0, s1)
    assert s1["pg_errors"] == s0["pg_errors"]


def test_fresh_session_is_not_refreshed(gateway_factory, sql, user):
    before = _exp_seconds_left(sql, user.token)
    g = gateway_factory(name="gateway-norefresh")
    s0 = g.stats()
    for h in _session_creds(user) * 2:
        assert g.get("/s/x", headers=h).status_code == 200
    s1 = g.stats()
    assert s1["pg_queries"] == s0["pg_queries"], "authsvc's Redis entry should have answered"
    assert s1["l2_hits"] - s0["l2_hits"] == 1, (s0, s1)
    assert abs(_exp_seconds_left(sql, user.token) - before) < 5
