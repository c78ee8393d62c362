"""API-key usage at the gateway (issue 4): the per-key rate limit and the quota
(`remaining` with refill) hold exactly across three gateway processes sharing one
Redis; the counters are written back to the apikey row (every second, and on
SIGTERM); a key changed through authsvc's routes is refused or let in again at once;
keys made by authsvc's API - and by a Better Auth server with @better-auth/api-key -
pass the gateway.

Keys are made through a module authsvc with INTERNAL_SERVICE_SECRET (the internal
routes set the server-only fields: remaining, refill, rate limit), on the main
database and Redis, so its revocations reach the gateways.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
import types

import pytest

import pcsupport as H
import pcsupport as G
from pcsupport import limits as L

SLACK = dt.timedelta(milliseconds=50)


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def ksvc(pg, redis_srv, live_authsvc, main_db_url, secret, trusted_origins, gw_dir):
    env = {
        "BETTER_AUTH_SECRET": secret, "DATABASE_URL": main_db_url, "REDIS_URL": redis_srv.url,
        "RATE_LIMIT_ENABLED": "false", "TRUSTED_ORIGINS": ",".join(trusted_origins),
        "INTERNAL_SERVICE_SECRET": L.INTERNAL_SECRET,
    }
    s = H.Authsvc(env, workdir=str(gw_dir / "limits-authsvc"), name="authsvc-limits")
    try:
        yield s
    finally:
        H.check_stopped(s)


@pytest.fixture(scope="module")
def kapi(ksvc):
    c = L.KeyApi(ksvc)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def owner(kapi):
    return kapi.sign_up("Limits Owner")


@pytest.fixture(scope="module")
def trio(pg, redis_srv, live_authsvc, main_db_url, secret, routes, gw_dir):
    """Three gateway processes (two workers each) on one Redis and one database."""
    gws = []
    try:
        for i in range(3):
            gws.append(G.Gateway(G.gw_base_env(pg, redis_srv, secret), routes, workdir=gw_dir,
                                 name=f"gateway-limits{i}"))
        yield gws
    finally:
        H.check_stopped(*gws)


def warm(gws, key):
    """Puts the key into every gateway's L1 without spending anything: /perm/ needs a
    permission the key lacks, so the request is refused (403) before the limit stage."""
    for g in gws:
        G.assert_gw_error(g.get("/perm/warm", headers=L.key_headers(key)), 403,
                          "INSUFFICIENT_PERMISSIONS")


def sum_stat(gws, name):
    return sum(g.stats()[name] for g in gws)


def check_refusals(results, code, window_s=None):
    for r in results:
        if r.status == 200:
            continue
        G.assert_gw_error(r.resp, 429, code)
        if code == "RATE_LIMITED":
            ra = r.retry_after
            assert ra is not None and ra.isdigit(), f"Retry-After {ra!r} on {r}"
            assert 0 < int(ra) <= window_s, f"Retry-After {ra} outside (0, {window_s}]"


# ---------------------------------------------------------------------------
# 1. rate limit


def test_rate_limit_boundary_across_three_gateways(trio, kapi, owner):
    n = 20
    k = kapi.internal_create(owner, rateLimitEnabled=True, rateLimitTimeWindow=30000, rateLimitMax=n)
    warm(trio, k)
    rl0 = sum_stat(trio, "rate_limited")
    res = L.burst(trio, 3 * n, L.key_headers(k))
    t = L.tally(res)
    assert t == {(200, None): n, (429, "RATE_LIMITED"): 2 * n}, f"{t}: {res}"
    assert {r.gw for r in res} == {0, 1, 2}
    check_refusals(res, "RATE_LIMITED", 30)
    for r in res:
        if r.status == 200:
            assert G.echo(r.resp)["headers"]["x-api-key-id"] == k.id
    # still refused on every gateway inside the window
    for g in trio:
        check_refusals([L.Result(0, g.get("/k/again", headers=L.key_headers(k)))], "RATE_LIMITED", 30)
    assert sum_stat(trio, "rate_limited") - rl0 == 2 * n + 3


def test_rate_limit_window_reopens(trio, kapi, owner):
    n = 5
    k = kapi.internal_create(owner, rateLimitEnabled=True, rateLimitTimeWindow=2000, rateLimitMax=n)
    warm(trio, k)
    for round_ in range(2):
        res = L.burst(trio, 3 * n, L.key_headers(k))
        t = L.tally(res)
        assert t == {(200, None): n, (429, "RATE_LIMITED"): 2 * n}, f"round {round_}: {t}: {res}"
        check_refusals(res, "RATE_LIMITED", 2)
        # Retry-After is an upper bound (rounded up): after it, the window has closed
        time.sleep(max(int(r.retry_after) for r in res if r.status == 429) + 0.05)
    G.echo(trio[0].get("/k/after", headers=L.key_headers(k)))


# ---------------------------------------------------------------------------
# 2. quota


def test_quota_exact_across_three_gateways(trio, kapi, owner, sql):
    q = 12
    k = kapi.internal_create(owner, remaining=q, rateLimitEnabled=False)
    warm(trio, k)
    res = L.burst(trio, 3 * q, L.key_headers(k))
    t = L.tally(res)
    assert t == {(200, None): q, (429, "USAGE_EXCEEDED"): 2 * q}, f"{t}: {res}"
    check_refusals(res, "USAGE_EXCEEDED")
    for g in trio:
        G.assert_gw_error(g.get("/k/more", headers=L.key_headers(k)), 429, "USAGE_EXCEEDED")
    L.wait_row(sql, k.id, lambda r: r["remaining"] == 0, 3.0, "remaining written back as 0")


def test_rate_limited_requests_spend_no_quota(trio, kapi, owner, sql):
    k = kapi.internal_create(owner, remaining=6, rateLimitEnabled=True, rateLimitTimeWindow=1500,
                             rateLimitMax=4)
    warm(trio, k)
    res = L.burst(trio, 12, L.key_headers(k))
    t = L.tally(res)
    assert t == {(200, None): 4, (429, "RATE_LIMITED"): 8}, f"{t}: {res}"
    check_refusals(res, "RATE_LIMITED", 2)
    time.sleep(max(int(r.retry_after) for r in res if r.status == 429) + 0.05)
    # next window: 2 left of 6 (the 8 refused did not spend any); the quota refusals
    # do not count against the window either, so no RATE_LIMITED here
    res = L.burst(trio, 12, L.key_headers(k))
    t = L.tally(res)
    assert t == {(200, None): 2, (429, "USAGE_EXCEEDED"): 10}, f"{t}: {res}"
    L.wait_row(sql, k.id, lambda r: r["remaining"] == 0 and r["requestCount"] == 2, 3.0,
               "remaining 0, requestCount 2 (this window's)")


def test_refill_after_interval(trio, kapi, owner, sql):
    r_amount = 3
    k = kapi.internal_create(owner, remaining=r_amount, refillAmount=r_amount, refillInterval=1000,
                             rateLimitEnabled=False)
    created = L.row(sql, k.id)["createdAt"]
    res = L.burst(trio, 3 * r_amount, L.key_headers(k))
    t = L.tally(res)
    assert t == {(200, None): r_amount, (429, "USAGE_EXCEEDED"): 2 * r_amount}, f"{t}: {res}"
    time.sleep(1.1)
    res = L.burst(trio, 3 * r_amount, L.key_headers(k))
    t = L.tally(res)
    assert t == {(200, None): r_amount, (429, "USAGE_EXCEEDED"): 2 * r_amount}, \
        f"after the refill interval: {t}: {res}"
    L.wait_row(sql, k.id, lambda r: r["remaining"] == 0 and r["lastRefillAt"] is not None
               and r["lastRefillAt"] > created + dt.timedelta(seconds=1), 3.0,
               "the refill (lastRefillAt > createdAt + 1 s) written back")


def test_remaining_set_through_authsvc_applies_at_the_gateway(trio, kapi, owner, sql):
    """An operator tops up a spent key (Better Auth: update with `remaining`, server
    side).  Better Auth reads `remaining` from the row on every verify, so the new
    value applies at once; the gateway must not keep counting from its old state."""
    k = kapi.internal_create(owner, remaining=2, rateLimitEnabled=False)
    res = L.sequential(trio[0], 3, L.key_headers(k))
    assert [r.status for r in res] == [200, 200, 429]
    u = kapi.internal_update(owner, k, remaining=5)
    assert u["remaining"] == 5
    time.sleep(0.2)
    res = L.burst(trio, 9, L.key_headers(k))
    t = L.tally(res)
    if t != {(200, None): 5, (429, "USAGE_EXCEEDED"): 4}:
        now = L.row(sql, k.id)["remaining"]
        time.sleep(1.3)         # one write-back round
        pytest.fail(f"after remaining=5 through authsvc the gateways answered {t} (want 5 x 200); "
                    f"the row said remaining={now}, one write-back later {L.row(sql, k.id)['remaining']}")


# ---------------------------------------------------------------------------
# 3. write-back


def test_counters_written_back_within_two_seconds(trio, kapi, owner, sql):
    k = kapi.internal_create(owner, remaining=50, rateLimitEnabled=True, rateLimitTimeWindow=60000,
                             rateLimitMax=1000)
    r0 = L.row(sql, k.id)
    assert (r0["remaining"], r0["requestCount"], r0["lastRequest"]) == (50, 0, None)
    before = L.db_now(sql)
    res = L.burst(trio, 9, L.key_headers(k))
    assert L.tally(res) == {(200, None): 9}
    after = L.db_now(sql)
    row, waited = L.wait_row(
        sql, k.id, lambda r: r["remaining"] == 41 and r["requestCount"] == 9 and r["lastRequest"],
        3.0, "remaining 41, requestCount 9, lastRequest set")
    assert waited <= 2.2, f"write-back took {waited:.2f}s"
    assert before - SLACK <= row["lastRequest"] <= after + SLACK, (before, row["lastRequest"], after)


def test_sigterm_flushes_the_last_counters(gateway_factory, kapi, owner, sql):
    g = gateway_factory(name="gateway-limits-term")
    k = kapi.internal_create(owner, remaining=100, rateLimitEnabled=True, rateLimitTimeWindow=60000,
                             rateLimitMax=1000)
    sent = 0
    for _ in range(5):
        res = L.sequential(g, 7, L.key_headers(k))
        assert all(r.status == 200 for r in res), res
        sent += 7
        r = L.row(sql, k.id)
        if r["requestCount"] != sent:
            break       # the last of these is not in PostgreSQL yet: only the shutdown can write it
    else:
        pytest.fail("every burst was written back before it could be interrupted")
    rc = g.stop(timeout=10)
    assert rc == 0 and not g.proc.forced, f"exit {rc}:\n{H.tail(g.stderr_path)}"
    r = L.row(sql, k.id)
    assert (r["remaining"], r["requestCount"]) == (100 - sent, sent), \
        f"after SIGTERM: remaining {r['remaining']}, requestCount {r['requestCount']}; sent {sent}"
    assert r["lastRequest"] is not None
    assert "could not be written back" not in g.stderr_text()


# ---------------------------------------------------------------------------
# 4. disabled / expired through authsvc


def test_disable_and_enable_through_authsvc(trio, kapi, owner):
    k = kapi.create(owner, {"name": "toggle"})
    h = L.key_headers(k)
    for g in trio:
        G.echo(g.get("/k/x", headers=h))
    kapi.update(owner, {"keyId": k.id, "enabled": False})
    for took, resp, seen in L.poll_each(trio, h, 401):
        G.assert_gw_error(resp, 401, "KEY_DISABLED")
        assert took < 0.2, f"refused {took * 1000:.0f} ms after the update (saw {seen})"
    kapi.update(owner, {"keyId": k.id, "enabled": True})
    for took, resp, seen in L.poll_each(trio, h, 200):
        assert G.echo(resp)["headers"]["x-api-key-id"] == k.id
        assert took < 0.2, f"let in {took * 1000:.0f} ms after re-enabling (saw {seen})"


def test_expiry_through_authsvc(trio, kapi, owner, sql):
    k = kapi.create(owner, {"name": "shortened"})
    assert k.body["expiresAt"] is None
    h = L.key_headers(k)
    for g in trio:
        G.echo(g.get("/k/x", headers=h))
    q0 = [g.stats()["pg_queries"] for g in trio]
    # a shorter life (the minimum, one day): every gateway reads the row again
    u = kapi.update(owner, {"keyId": k.id, "expiresIn": 86400})
    assert u["expiresAt"] is not None
    for took, resp, seen in L.poll_each(trio, h, 200):
        assert took < 0.2
    q1 = [g.stats()["pg_queries"] for g in trio]
    assert sum(q1) - sum(q0) >= 1, f"no gateway read the shortened key again: {q0} -> {q1}"
    # the day has passed (the row's expiry moves into the past; the trigger announces
    # it): refused at once
    sql.execute('update "apikey" set "expiresAt" = now() - interval \'1 second\' where id = %s', (k.id,))
    t0 = time.monotonic()
    for took, resp, seen in L.poll_each(trio, h, 401):
        G.assert_gw_error(resp, 401, "KEY_EXPIRED", "INVALID_API_KEY")
        assert took < 0.2, f"expired key refused {took * 1000:.0f} ms later (saw {seen})"
    assert time.monotonic() - t0 < 1


# ---------------------------------------------------------------------------
# 5. keys made by authsvc's API; malformed keys


def test_key_from_authsvc_passes_with_identity(trio, kapi, owner):
    k = kapi.create(owner, {"name": "api-made"})
    assert k.key.startswith("oc_") and len(k.key) == 67
    g = trio[1]
    for headers in (L.key_headers(k), G.bearer(k.key)):
        b = G.echo(g.get("/k/who?a=1", headers=headers))
        h = b["headers"]
        assert h["x-api-key-id"] == k.id and h["x-user-id"] == owner.id, h
        assert h["x-auth-method"] == "api_key"
        assert "x-api-key" not in h and "authorization" not in h, h
    b = G.echo(g.get(f"/oc/{k.key}/who"))
    assert b["path"] == "/oc/who" and b["headers"]["x-api-key-id"] == k.id, b["path"]
    assert k.key not in b["path"]


def test_malformed_keys_are_401_without_a_query(trio, kapi, owner):
    k = kapi.create(owner, {"name": "shape"})
    body = k.key[3:]
    bad = [
        k.key[:-1],                         # 63 letters
        "oc_" + body[:32],                  # far too short
        k.key + "1",                        # a digit at the end
        "oc_" + body[:-1] + "7",            # a digit in the 64
        "oc." + body,                       # a dot in the prefix
        "o$_" + body,                       # a $ in the prefix
        "p" * 33 + body,                    # a 33-character prefix
        "oc_" + body + "_" + body[:5],      # two keys glued
        "",
    ]
    g = trio[2]
    G.echo(g.get("/k/x", headers=L.key_headers(k)))      # the gateway works
    q0 = g.stats()["pg_queries"]
    for key in bad:
        G.assert_gw_error(g.get("/k/x", headers={"x-api-key": key}), 401, "INVALID_API_KEY")
        if key:
            G.assert_gw_error(g.get("/k/x", headers=G.bearer(key)), 401)
            G.assert_gw_error(g.get(f"/oc/{key}/x"), 401)
    assert g.stats()["pg_queries"] == q0, "a malformed key reached PostgreSQL"


# ---------------------------------------------------------------------------
# 6. a key made by Better Auth with @better-auth/api-key


@pytest.fixture(scope="module")
def ba(main_db_url, secret, trusted_origins, gw_dir, ksvc):
    """A Better Auth 1.7 server with the apiKey plugin on the main database
    (pcsupport.interop installs it)."""
    from pcsupport import interop as TA
    d = TA.install_ba_apikey()
    port = H.free_port()
    env = {"DATABASE_URL": main_db_url, "BETTER_AUTH_SECRET": secret,
           "BETTER_AUTH_URL": f"http://127.0.0.1:{port}", "TRUSTED_ORIGINS": ",".join(trusted_origins),
           "PORT": str(port)}
    proc = H.Proc(["node", "server-apikey.mjs"], env=TA.node_env(env), cwd=str(d),
                  stdout=gw_dir / f"ba-apikey-{port}.stdout", stderr=gw_dir / f"ba-apikey-{port}.stderr",
                  name="better-auth-apikey")
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}: {H.tail(proc.stderr_path)}")
            return f"ready {port}" in H.tail(proc.stdout_path, 2000)
        H.wait_until(ready, 30, what="Better Auth with the apiKey plugin")
        yield types.SimpleNamespace(base_url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port,
                                    env=env)
    finally:
        proc.stop(signal.SIGTERM, timeout=10)


def test_key_from_better_auth_passes_the_gateway(trio, ba, kapi, owner, sql):
    c = H.ApiClient(ba)
    try:
        r = c.post("api-key/create", {"name": "from-ba"}, cookie=c.cookie_header(owner.token))
        assert r.status_code == 200, r.text
    finally:
        c.close()
    k = L.Key(r.json())
    assert k.user_id == owner.id
    for g, headers in zip(trio, (L.key_headers(k), G.bearer(k.key), None)):
        resp = g.get(f"/oc/{k.key}/ba") if headers is None else g.get("/k/ba", headers=headers)
        h = G.echo(resp)["headers"]
        assert h["x-api-key-id"] == k.id and h["x-user-id"] == owner.id, h
    # its rate limit (the plugin's 10,000 a minute) is counted and written back too
    L.wait_row(sql, k.id, lambda r: r["requestCount"] == 3 and r["lastRequest"], 3.0,
               "usage of the Better Auth key written back")
