"""Revocations that nobody relayed at the time (issue 13, items 1 and 8).

Each test has a stack of its own: a fresh database, its own Redis, one authsvc and one
gateway on both, so no other authsvc can relay what this one missed (a second listener
would hide the bug).  L1_TTL_SECONDS is 1 s, so after a second the gateway answers from the
Redis copy: a revocation that never reached Redis shows as a credential that lives on.

- writers while authsvc is stopped: SQL deletes a session and an API key, disables a
  key, deletes a user; authsvc starts, and each is refused within a second, by this
  gateway and by one started afterwards;
- authsvc's own sign-out while Redis refuses it, then authsvc stopped before Redis takes
  it: the revocation it could not write is relayed by the next authsvc;
- a rolled-back change logs nothing; the log is pruned after REVOCATION_LOG_KEEP_SECONDS;
- a hung Redis (SIGSTOP): /ready says the feed is lost, L1 is capped, a key revoked
  meanwhile is refused, and after SIGCONT the feed is back;
- a message numbered out of turn flushes L1.
"""

from __future__ import annotations

import signal
import time

import pytest

import pcsupport as H
import pcsupport as G

REFUSE_WITHIN = 1.0         # seconds after the listener is back (the bound)
PREFIX = "rlog:"


@pytest.fixture
def rd(tmp_root):
    r = H.Redis(basedir=str(tmp_root / f"redis-rlog-{H.free_port()}"))
    try:
        yield r
    finally:
        if r.proc is not None and r.proc.running:
            r.proc.send_signal(signal.SIGCONT)
        r.stop()


class Stack:
    def __init__(self, svc, gw, sql, keys, dbname, make_gw):
        self.svc, self.gw, self.sql, self.keys, self.dbname = svc, gw, sql, keys, dbname
        self._make_gw = make_gw

    def client(self):
        return H.ApiClient(self.svc)

    def another_gateway(self, name):
        return self._make_gw(name)


@pytest.fixture
def stack(pg, rd, authsvc_factory, gateway_factory):
    svc = authsvc_factory({"REDIS_PREFIX": PREFIX, "REVOCATION_CHANNEL": PREFIX + "revoked"},
                          fresh_db=True, redis=rd, name="authsvc-rlog")
    dbname = svc.env["DATABASE_URL"].rsplit("/", 1)[1]

    def make_gw(name):
        return gateway_factory({"L1_TTL_SECONDS": "1", "L1_DEGRADED_TTL_SECONDS": "1", "REDIS_PREFIX": PREFIX,
                                "REVOCATION_CHANNEL": PREFIX + "revoked",
                                "GATEWAY_REDIS_DEADLINE_MS": "600"},
                               redis=rd, database_url=pg.url(dbname), name=name)

    g = make_gw("gateway-rlog")
    sql = G.SQL(pg.connect(dbname))
    try:
        yield Stack(svc, g, sql, G.ApiKeys(sql), dbname, make_gw)
    finally:
        sql.close()


def _ok_for_a_while(g, path, headers, seconds=1.5):
    """200 now and still 200 after L1 expired (so from the Redis copy)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = g.get(path, headers=headers)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:200]}"
        time.sleep(0.1)


def _refused_within(g, path, headers, bound, label):
    t, seen = G.poll_until_status(lambda: g.get(path, headers=headers), 401, bound + 4.0,
                                  interval=0.01)
    assert set(seen) <= {200, 401}, f"{label}: {seen}"
    assert t <= bound, f"{label}: refused after {t:.3f}s, bound {bound}s"
    return t


def _redis_has(rd, key):
    with rd.client() as c:
        return c.command("EXISTS", key) == 1


def test_writes_while_authsvc_is_stopped_are_relayed_at_start(stack, rd):
    c = stack.client()
    try:
        doomed = c.sign_up(name="Session deleted by SQL")
        gone = c.sign_up(name="User deleted by SQL")
        owner = c.sign_up(name="Key owner")
    finally:
        c.close()
    k_del, k_off = stack.keys.create(owner.id), stack.keys.create(owner.id)
    creds = {
        "session row deleted": ("/s/x", G.cookie(doomed), f"{PREFIX}s:{H.token_hash(doomed.token)}"),
        "user deleted": ("/s/x", G.cookie(gone), f"{PREFIX}s:{H.token_hash(gone.token)}"),
        "key row deleted": ("/k/x", {"x-api-key": k_del.key}, f"{PREFIX}k:{k_del.hash}"),
        "key disabled": ("/k/x", {"x-api-key": k_off.key}, f"{PREFIX}k:{k_off.hash}"),
    }
    for path, h, key in creds.values():
        _ok_for_a_while(stack.gw, path, h, seconds=0.3)
    time.sleep(1.2)                                   # L1 gone: the next answers come from Redis
    for label, (path, h, key) in creds.items():
        assert _redis_has(rd, key), f"{label}: no Redis copy to begin with"
        assert stack.gw.get(path, headers=h).status_code == 200

    doomed_sid = stack.sql.session_id(doomed.token)
    stack.svc.stop()
    stack.sql.execute('delete from "session" where token = %s', (doomed.token,))
    stack.sql.execute('delete from "user" where id = %s', (gone.id,))
    stack.keys.delete(k_del)
    stack.sql.execute('update "apikey" set enabled = false where id = %s', (k_off.id,))
    assert stack.sql.scalar("select count(*) from portcullis_revocation where not relayed") >= 4

    # nobody relays: the Redis copies keep every credential alive
    for label, (path, h, key) in creds.items():
        assert stack.gw.get(path, headers=h).status_code == 200, label

    stack.svc.start()
    t0 = time.monotonic()
    for label, (path, h, key) in creds.items():
        _refused_within(stack.gw, path, h, REFUSE_WITHIN - (time.monotonic() - t0), label)
        if label != "key disabled":         # that one the gateway caches again, disabled
            assert not _redis_has(rd, key), f"{label}: Redis copy still there"
    assert stack.sql.scalar("select count(*) from portcullis_revocation where not relayed") == 0

    # a gateway started now (empty L1) refuses them too
    g2 = stack.another_gateway("gateway-rlog-2")
    for label, (path, h, key) in creds.items():
        G.assert_gw_error(g2.get(path, headers=h), 401)
    # and the session's id is on the revoked list (its JWTs) for gateways that subscribe later
    assert _redis_has(rd, f"{PREFIX}rsid:{doomed_sid}")


def test_sign_out_redis_refused_survives_an_authsvc_restart(stack, rd):
    """authsvc signs a user out while Redis refuses its relay script (an ACL here; an
    out-of-memory Redis refuses the same way), then stops with that revocation unrelayed.
    The next authsvc relays it from the log.  (A SIGSTOPped Redis would not do: it runs
    the commands left in its socket buffer when it wakes.)"""
    c = stack.client()
    try:
        u = c.sign_up(name="Signs out while Redis refuses")
        _ok_for_a_while(stack.gw, "/s/x", G.cookie(u), seconds=1.3)
        with rd.client() as rc:
            assert rc.command("ACL", "SETUSER", "default", "-eval", "-evalsha") == "OK"
        try:
            r = c.post("sign-out", cookie=u.cookie)
            assert r.status_code == 200, r.text
            time.sleep(0.5)                 # the listener tries too, and is refused too
            assert stack.sql.scalar(
                "select count(*) from portcullis_revocation where not relayed and tag = %s",
                ("s:" + H.token_hash(u.token),)) == 1
            stack.svc.stop()                # with the revocation still unrelayed
        finally:
            with rd.client() as rc:
                rc.command("ACL", "SETUSER", "default", "+@all")
    finally:
        c.close()
    assert _redis_has(rd, f"{PREFIX}s:{H.token_hash(u.token)}"), "the Redis copy should still be there"
    assert stack.gw.get("/s/x", headers=G.cookie(u)).status_code == 200, "alive from the Redis copy"
    stack.svc.start()
    _refused_within(stack.gw, "/s/x", G.cookie(u), REFUSE_WITHIN, "sign-out relayed after restart")
    assert not _redis_has(rd, f"{PREFIX}s:{H.token_hash(u.token)}")


def test_rollback_logs_nothing_and_old_rows_are_pruned(stack, authsvc_factory, rd):
    c = stack.client()
    try:
        u = c.sign_up(name="Rolled back")
    finally:
        c.close()
    before = stack.sql.scalar("select count(*) from portcullis_revocation")
    conn = stack.sql.conn
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute('delete from "session" where token = %s', (u.token,))
        conn.rollback()
    finally:
        conn.autocommit = True
    assert stack.sql.scalar("select count(*) from portcullis_revocation") == before
    G.echo(stack.gw.get("/s/x", headers=G.cookie(u)))

    stack.svc.stop()
    stack.sql.execute("insert into portcullis_revocation (tag, \"createdAt\", relayed) values "
                      "('k:' || repeat('A', 43), now() - interval '3 hours', true), "
                      "('k:' || repeat('B', 43), now() - interval '3 hours', false), "
                      "('k:' || repeat('C', 43), now() - interval '10 minutes', true)")
    svc = authsvc_factory({"REDIS_PREFIX": PREFIX, "REVOCATION_CHANNEL": PREFIX + "revoked",
                           "REVOCATION_LOG_KEEP_SECONDS": "3600"},
                          database=stack.dbname, redis=rd, name="authsvc-rlog-prune")
    H.wait_until(lambda: stack.sql.scalar(
        "select count(*) from portcullis_revocation where \"createdAt\" < now() - interval '1 hour'") == 0,
        10, interval=0.1, what="old revocations pruned")
    assert stack.sql.scalar("select count(*) from portcullis_revocation where tag = %s",
                            ("k:" + "C" * 43,)) == 1
    svc.stop()


def test_hung_redis_is_noticed(stack, rd):
    g = stack.gw
    c = stack.client()
    try:
        u = c.sign_up(name="Hung Redis")
    finally:
        c.close()
    k = stack.keys.create(u.id)
    assert g.get("/k/x", headers={"x-api-key": k.key}).status_code == 200
    g.wait_ready(timeout=10, streak=2)
    rd.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        g.wait_ready(timeout=10, postgres="ok", redis=None, revocations="down", streak=2)
        noticed = time.monotonic() - t0
        assert noticed < 3.0, f"hung Redis noticed after {noticed:.1f}s"
        # revoked while the feed cannot say so: L1 is capped, PostgreSQL decides
        stack.keys.delete(k)
        _refused_within(g, "/k/x", {"x-api-key": k.key}, 4.0, "key deleted while Redis hangs")
    finally:
        rd.proc.send_signal(signal.SIGCONT)
    g.wait_ready(timeout=15, postgres="ok", redis="ok", revocations="subscribed")


def test_message_out_of_turn_flushes_l1(stack, rd):
    g = stack.gw
    channel = PREFIX + "revoked"
    other = "A" * 43
    with rd.client() as rc:
        f0 = g.stats()["l1_flushes"]
        for n in (100, 101):
            rc.command("PUBLISH", channel, f"#{n} {other}")
        time.sleep(0.3)
        assert g.stats()["l1_flushes"] == f0, "numbers in turn must not flush"
        rc.command("PUBLISH", channel, f"#103 {other}")          # 102 went missing
        H.wait_until(lambda: g.stats()["l1_flushes"] > f0, 5, interval=0.05, what="flush on a hole")
        f1 = g.stats()["l1_flushes"]
        rc.command("PUBLISH", channel, f"#1 {other}")            # Redis lost its counter
        H.wait_until(lambda: g.stats()["l1_flushes"] > f1, 5, interval=0.05, what="flush on a step back")
