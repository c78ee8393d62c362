"""PostgreSQL failover (issue 25): authsvc and a gateway run on a libpq multi-host URL
(the primary, then its streaming replica; target_session_attrs=read-write), as a team
behind Patroni or a manual promotion would. The primary is killed and the replica
promoted; then a sign-out and an API key deleted by SQL on the new primary reach the
gateway (authsvc's relay LISTENs again on the new primary), credentials cached before
the failover are refused, and new ones work.
"""

from __future__ import annotations

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.checks import stop_all


@pytest.fixture(scope="module")
def rig(tmp_root, secret):
    d = tmp_root / "pg-failover"
    pg = H.Postgres()
    made = []
    try:
        redis = H.Redis(basedir=str(d / "redis"))
        made.append(redis)
        pg.create_database("authsvc")
        migrate = H.Authsvc({"BETTER_AUTH_SECRET": secret, "DATABASE_URL": pg.url("authsvc"),
                             "REDIS_URL": redis.url}, workdir=str(d / "migrate"), name="authsvc-migrate")
        H.check_stopped(migrate)
        replica = H.Replica(pg)
        made.append(replica)
        url = (f"postgresql://postgres@127.0.0.1:{pg.port},127.0.0.1:{replica.port}/authsvc"
               "?target_session_attrs=read-write&connect_timeout=2")
        svc = H.Authsvc({"BETTER_AUTH_SECRET": secret, "DATABASE_URL": url, "REDIS_URL": redis.url,
                         "RATE_LIMIT_ENABLED": "false"}, workdir=str(d / "authsvc"),
                        name="authsvc-failover")
        made.append(svc)
        up = G.Upstream(d)
        made.append(up)
        routes = {"routes": [{"prefix": "/k/", "upstream": up.url, "auth": ["api_key"]},
                             {"prefix": "/s/", "upstream": up.url, "auth": ["session"]}]}
        env = G.gw_base_env(pg, redis, secret)
        env["DATABASE_URL"] = url
        g = G.Gateway(env, routes, workdir=d, name="gateway-failover")
        made.append(g)
        yield {"pg": pg, "replica": replica, "gw": g, "client": H.ApiClient(svc)}
    finally:
        stop_all(made, pg)


def _retry(fn, ok, timeout=15.0):
    """fn() until ok(answer): the first tries after a failover may meet a dead connection."""
    last = {}

    def once():
        last["r"] = fn()
        return ok(last["r"])
    H.wait_until(once, timeout, interval=0.1, what="an answer after the failover")
    return last["r"]


def test_revocations_after_a_promotion(rig):
    c, g = rig["client"], rig["gw"]
    u = c.sign_up(name="Before the failover")
    doomed = c.sign_up(name="Signed out after the failover")
    r = c.post("api-key/create", json={"name": "deleted after the failover"}, cookie=u.cookie)
    assert r.status_code == 200, r.text
    key_id, key = r.json()["id"], H.sensitive(r.json()["key"])
    for _ in range(2):                           # cached in the gateway's L1 and Redis
        assert g.get("/s/x", headers=G.cookie(doomed)).status_code == 200
        assert g.get("/k/x", headers={"x-api-key": key}).status_code == 200
    H.wait_until(rig["replica"].caught_up, 15, what="the replica caught up")

    rig["pg"].kill()
    rig["replica"].promote()

    r = _retry(lambda: c.post("sign-out", cookie=doomed.cookie), lambda r: r.status_code == 200)
    conn = rig["replica"].connect("authsvc")
    try:
        with conn.cursor() as cur:
            cur.execute('select id from "apikey"')
            ids = [x[0] for x in cur.fetchall()]
            cur.execute('delete from "apikey" where id = %s', (key_id,))
            assert cur.rowcount == 1, (key_id, ids)
    finally:
        conn.close()
    for headers, what in ((G.cookie(doomed), "signed out"), ({"x-api-key": key}, "deleted key")):
        path = "/s/x" if "Cookie" in headers else "/k/x"
        t, seen = G.poll_until_status(lambda: g.get(path, headers=headers), 401, 15.0, interval=0.05)
        assert set(seen) <= {200, 401, 503}, (what, seen)
        print(f"\n{what}: refused {t:.2f}s after the SQL on the new primary")
    # what was made before still works, and so does what is made now
    assert _retry(lambda: g.get("/s/x", headers=G.cookie(u)), lambda r: r.status_code == 200)
    v = _retry(lambda: requests.post(c.base_url + "/api/auth/sign-up/email", timeout=10,
                                     json={"email": H.unique_email(), "password": H.new_password(),
                                           "name": "After"}),
               lambda r: r.status_code == 200)
    token = H.sensitive(v.json()["token"])
    assert g.get("/s/x", headers={"Authorization": f"Bearer {token}"}).status_code == 200
