"""One truth for every replica (issue 6): a credential revoked by any writer is refused
by each of the three gateways, asked directly, within moments.

Writers: authsvc (sign-out, API-key delete and disable), plain SQL (DELETE, an UPDATE
that shortens a session or disables a key, deleting the user) and a real Better Auth
1.7.25 server on the same database (sign-out of its own session and of one authsvc
issued).  The SQL and Better Auth paths reach the gateways only through migration
0003's NOTIFY, authsvc's LISTEN and the Redis channel.

Every credential is first cached in the L1 of all three replicas (L1_TTL_SECONDS is 300 s), so
a refusal can only come from the revocation feed.
"""

from __future__ import annotations

import pytest
import requests

import pcsupport as H
import pcsupport as G

REFUSE_WITHIN = 1.0       # seconds; measured values are a few ms (bench/revocation_bench.py)


def _cached_everywhere(cluster, path, headers):
    for g in cluster.gateways:
        for _ in range(2):
            r = g.get(path, headers=headers)
            assert r.status_code == 200, f"{g.name}: {r.status_code} {r.text[:200]}"


def _refused_everywhere(cluster, path, headers, label):
    took = {}
    for g in cluster.gateways:
        t, seen = G.poll_until_status(lambda: g.get(path, headers=headers), 401, 5.0, interval=0.002)
        assert set(seen) <= {200, 401}, f"{label} on {g.name}: {seen}"
        took[g.name] = round(t * 1000, 1)
    print(f"\n{label}: refused after (ms) {took}")
    assert max(took.values()) < REFUSE_WITHIN * 1000, f"{label}: {took} ms"
    # and through haproxy
    r = requests.get(f"{cluster.haproxy.url}{path}", headers=headers, timeout=10)
    assert r.status_code == 401, f"{label} through haproxy: {r.status_code}"
    return took


# ---------------------------------------------------------------------------
# authsvc


def test_sign_out_through_authsvc(cluster, c):
    u = c.sign_up(name="Signs out")
    _cached_everywhere(cluster, "/s/x", G.cookie(u))
    assert c.post("sign-out", cookie=u.cookie).status_code == 200
    _refused_everywhere(cluster, "/s/x", G.cookie(u), "authsvc sign-out")
    for h in (G.bearer(u.token), G.bearer(u.signed)):
        for g in cluster.gateways:
            G.assert_gw_error(g.get("/m/x", headers=h), 401)


def test_revoke_sessions_through_authsvc(cluster, c):
    u = c.sign_up(name="Many sessions")
    others = [c.sign_in(u.email, u.password) for _ in range(2)]
    for x in [u] + others:
        _cached_everywhere(cluster, "/s/x", G.cookie(x))
    assert c.post("revoke-sessions", {}, cookie=u.cookie).status_code == 200
    for x in [u] + others:
        _refused_everywhere(cluster, "/s/x", G.cookie(x), "authsvc revoke-sessions")


@pytest.mark.parametrize("how", ["delete", "disable"])
def test_api_key_revoked_through_authsvc(cluster, c, how):
    u = c.sign_up(name="Key owner")
    r = c.post("api-key/create", {"name": "cluster"}, bearer=u.token)
    assert r.status_code == 200, r.text[:300]
    key, kid = H.sensitive(r.json()["key"]), r.json()["id"]
    h = {"x-api-key": key}
    _cached_everywhere(cluster, "/k/x", h)
    if how == "delete":
        r = c.post("api-key/delete", {"keyId": kid}, bearer=u.token)
    else:
        r = c.post("api-key/update", {"keyId": kid, "enabled": False}, bearer=u.token)
    assert r.status_code == 200, r.text[:300]
    _refused_everywhere(cluster, "/k/x", h, f"authsvc api-key/{how}")


# ---------------------------------------------------------------------------
# plain SQL (an operator in psql): only the trigger's NOTIFY carries these


SQL_SESSION = {
    "delete": 'delete from "session" where token = %s',
    "shorten": 'update "session" set "expiresAt" = now() - interval \'1 second\' where token = %s',
    "delete user": 'delete from "user" where id = (select "userId" from "session" where token = %s)',
}


@pytest.mark.parametrize("how", list(SQL_SESSION))
def test_session_revoked_with_sql(cluster, c, how):
    u = c.sign_up(name="Operator target")
    _cached_everywhere(cluster, "/s/x", G.cookie(u))
    assert cluster.sql.execute(SQL_SESSION[how], (u.token,)) == 1
    _refused_everywhere(cluster, "/s/x", G.cookie(u), f"SQL session {how}")


SQL_KEY = {
    "delete": 'delete from "apikey" where id = %s',
    "disable": 'update "apikey" set enabled = false where id = %s',
    "expire": 'update "apikey" set "expiresAt" = now() - interval \'1 second\' where id = %s',
}


@pytest.mark.parametrize("how", list(SQL_KEY))
def test_api_key_revoked_with_sql(cluster, c, how):
    u = c.sign_up(name="Key owner")
    k = cluster.keys.create(u.id)
    h = {"x-api-key": k.key}
    _cached_everywhere(cluster, "/k/x", h)
    assert cluster.sql.execute(SQL_KEY[how], (k.id,)) == 1
    _refused_everywhere(cluster, "/k/x", h, f"SQL api key {how}")


def test_rolled_back_delete_revokes_nothing(cluster, c):
    u = c.sign_up(name="Rolled back")
    _cached_everywhere(cluster, "/s/x", G.cookie(u))
    conn = cluster.pg.connect("authsvc")
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute('delete from "session" where token = %s', (u.token,))
        conn.rollback()
    finally:
        conn.close()
    for g in cluster.gateways:
        for _ in range(20):
            assert g.get("/s/x", headers=G.cookie(u)).status_code == 200, g.name


# ---------------------------------------------------------------------------
# a Better Auth server on the same database


def test_sign_out_through_better_auth(cluster, bac):
    u = bac.sign_up(name="Better Auth user")        # issued and signed by Better Auth
    _cached_everywhere(cluster, "/s/x", G.cookie(u))
    assert bac.post("sign-out", cookie=u.cookie).status_code == 200
    _refused_everywhere(cluster, "/s/x", G.cookie(u), "Better Auth sign-out")


def test_authsvc_session_signed_out_through_better_auth(cluster, c, bac):
    u = c.sign_up(name="authsvc user, Better Auth sign-out")
    _cached_everywhere(cluster, "/s/x", G.cookie(u))
    assert bac.post("sign-out", cookie=u.cookie).status_code == 200
    _refused_everywhere(cluster, "/s/x", G.cookie(u), "Better Auth sign-out of an authsvc session")


def test_better_auth_sign_out_while_authsvc_is_stopped(cluster, bac):
    """Nobody listens when Better Auth signs out: the revocation waits in the log
    (migration 0005) and reaches every replica within a second of authsvc's return."""
    u = bac.sign_up(name="Signed out while authsvc is down")
    _cached_everywhere(cluster, "/s/x", G.cookie(u))
    cluster.authsvc.stop(timeout=10)
    try:
        assert bac.post("sign-out", cookie=u.cookie).status_code == 200
        for g in cluster.gateways:      # nobody relayed it: L1 still says yes
            assert g.get("/s/x", headers=G.cookie(u)).status_code == 200, g.name
    finally:
        cluster.authsvc.start()
    _refused_everywhere(cluster, "/s/x", G.cookie(u), "Better Auth sign-out, relayed at start")
