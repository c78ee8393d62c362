"""Open WebSockets die with their credential on every replica (issue 15): one tunnel per
gateway of a three-replica cluster, all opened with the same credential, and each gets
close code 4001 when that credential is revoked by any writer: authsvc's sign-out, plain
SQL (only migration 0003's NOTIFY carries it), a real Better Auth 1.7.25 server's
sign-out on the same database; and a JWT's tunnels when its session is signed out.

Each tunnel first echoes a message, so it is open before the revocation; the close must
come from the revocation feed (L1_TTL_SECONDS is 300 s and nothing polls)."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

import pcsupport as G
from pcsupport import cluster as C
from pcsupport.wsupstream import WsUpstream

CLOSE_WITHIN = 2.0      # seconds; bench/ws_revocation_bench.py measures the real figure


@pytest.fixture(scope="module")
def ws_app():
    up = WsUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def cluster(tmp_root, secret, ws_app):
    yield from C.cluster_fixture(
        tmp_root / "test_cluster_websocket", secret, haproxy=False, jwt_issuer=True,
        extra_routes=[{"prefix": "/ws/", "upstream": ws_app.url,
                       "auth": ["session", "api_key", "jwt"]}])


def _closed_on_every_replica(cluster, headers, revoke):
    """Opens /ws/echo on each gateway with headers, runs revoke(), and returns each
    tunnel's (close code, reason, seconds from revoke's return to the close)."""

    async def go():
        conns = []
        for g in cluster.gateways:
            ws = await websockets.connect(f"ws://127.0.0.1:{g.port}/ws/echo",
                                          extra_headers=headers, ping_interval=None)
            await ws.send("before")
            assert await ws.recv() == "before"
            conns.append(ws)
        await asyncio.get_running_loop().run_in_executor(None, revoke)
        t0 = time.monotonic()
        out = []
        for ws in conns:
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            except (websockets.ConnectionClosed, asyncio.TimeoutError):
                pass
            out.append((ws.close_code, ws.close_reason, time.monotonic() - t0))
        return out

    got = asyncio.run(asyncio.wait_for(go(), 60))
    for code, reason, took in got:
        assert code == 4001 and "revoked" in reason and took < CLOSE_WITHIN, got
    return got


def test_authsvc_sign_out(cluster, c):
    u = c.sign_up(name="WebSocket sign-out")
    _closed_on_every_replica(
        cluster, G.cookie(u), lambda: c.post("sign-out", cookie=u.cookie).raise_for_status())


def test_session_deleted_with_plain_sql(cluster, c):
    u = c.sign_up(name="WebSocket, SQL delete")

    def revoke():
        assert cluster.sql.execute('delete from "session" where token = %s', (u.token,)) == 1

    _closed_on_every_replica(cluster, G.cookie(u), revoke)


def test_better_auth_sign_out(cluster, bac):
    u = bac.sign_up(name="WebSocket, Better Auth user")     # issued by Better Auth
    _closed_on_every_replica(
        cluster, G.cookie(u), lambda: bac.post("sign-out", cookie=u.cookie).raise_for_status())


def test_a_jwts_tunnels_die_with_its_session(cluster, c):
    u = c.sign_up(name="WebSocket JWT")
    r = c.get("token", cookie=u.cookie)
    assert r.status_code == 200, r.text[:300]
    jwt = r.json()["token"]
    _closed_on_every_replica(
        cluster, G.bearer(jwt), lambda: c.post("sign-out", cookie=u.cookie).raise_for_status())
