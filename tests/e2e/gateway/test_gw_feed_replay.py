"""Revocations a gateway missed while its feed was down reach the tunnels already open
(issue 15): when the subscription is back, the gateway reads PostgreSQL's revocation
log (migration 0005) since the loss and ends every tunnel whose credential is in it
(4001); when the log cannot be read, it ends every tunnel with a credential that
began before (1012), and leaves anonymous ones alone.

A gateway on a Redis of its own never hears the sign-outs authsvc publishes on the
suite's Redis: that is a missed revocation, with nothing stopped. CLIENT KILL TYPE
pubsub on its Redis is the feed's loss; it subscribes again within a second."""

import asyncio
import time

import pytest
import requests
import websockets

import pcsupport as H
import pcsupport as G
from pcsupport.wsupstream import WsUpstream


@pytest.fixture
def rd(tmp_root):
    r = H.Redis(basedir=str(tmp_root / f"redis-replay-{H.free_port()}"))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def wsup():
    u = WsUpstream()
    try:
        yield u
    finally:
        u.stop()


def _routes(up):
    return {"routes": [
        {"prefix": "/wss/", "upstream": up.url, "auth": ["session", "jwt"]},
        {"prefix": "/ws/", "upstream": up.url, "auth": ["none"]},
    ]}


def _kill_feed(rd):
    c = rd.client()
    try:
        killed = c.command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        c.close()
    assert killed >= 1, "the gateway had no subscription to drop"


async def _tunnels(g, opens, action, wait=8.0):
    """Opens each (path, headers) tunnel, checks an echo, runs action (in a thread),
    then waits for each to close; returns [(code, reason)] (None: still open)."""
    socks = []
    for path, headers in opens:
        ws = await websockets.connect(f"ws://127.0.0.1:{g.port}{path}", extra_headers=headers,
                                      ping_interval=None)
        await ws.send("ping")
        assert await ws.recv() == "ping"
        socks.append(ws)
    await asyncio.get_running_loop().run_in_executor(None, action)
    out = []
    deadline = time.monotonic() + wait
    for ws in socks:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
        except websockets.ConnectionClosed:
            out.append((ws.close_code, ws.close_reason))
        except asyncio.TimeoutError:
            out.append(None)
            await ws.close()
    return out


def _cookie(u):
    return {"Cookie": u.cookie}


def test_a_missed_sign_out_ends_its_tunnel_when_the_feed_is_back(rd, gateway_factory, wsup,
                                                                 aclient):
    g = gateway_factory(route_table=_routes(wsup), redis=rd, name="gateway-replay")
    gone, kept = aclient.sign_up(name="Signed out unheard"), aclient.sign_up(name="Still in")

    def sign_out_then_lose_the_feed():
        assert aclient.post("sign-out", cookie=gone.cookie).status_code == 200
        time.sleep(1.0)    # the gateway heard nothing: its Redis is not authsvc's
        _kill_feed(rd)

    s0 = g.stats()
    res = asyncio.run(asyncio.wait_for(_tunnels(
        g, [("/wss/echo", _cookie(gone)), ("/wss/echo", _cookie(kept)), ("/ws/echo", {})],
        sign_out_then_lose_the_feed, wait=6.0), 30))
    assert res[0] is not None and res[0][0] == 4001 and "revoked" in res[0][1], res
    assert res[1] is None and res[2] is None, f"tunnels of live credentials were cut: {res}"
    s1 = g.stats()
    assert s1["revocations_replayed"] > s0["revocations_replayed"]
    assert s1["streams_cut_revoked"] >= s0["streams_cut_revoked"] + 1
    assert s1["streams_cut_unverified"] == s0["streams_cut_unverified"]
    # HTTP was never in doubt: L1 was flushed when the feed came back
    assert g.get("/wss/x", headers=_cookie(gone)).status_code == 401


def test_an_unreadable_log_closes_credentialed_tunnels(rd, pg, gateway_factory, wsup, aclient,
                                                       live_authsvc):
    # a database without the log: JWTs need no table, the read-back fails
    url = pg.create_database(f"nolog{H.free_port()}")
    g = gateway_factory({"DATABASE_URL": url, "BETTER_AUTH_URL": live_authsvc.base_url},
                        route_table=_routes(wsup), redis=rd,
                        name="gateway-replay-nolog")
    u = aclient.sign_up(name="JWT tunnel")
    r = aclient.get("token", cookie=u.cookie)
    assert r.status_code == 200, r.text
    jwt = H.sensitive(r.json()["token"])
    s0 = g.stats()
    res = asyncio.run(asyncio.wait_for(_tunnels(
        g, [("/wss/echo", {"Authorization": f"Bearer {jwt}"}), ("/ws/echo", {})],
        lambda: _kill_feed(rd), wait=6.0), 30))
    assert res[0] is not None and res[0][0] == 1012, res
    assert "reconnect" in res[0][1], res
    assert res[1] is None, f"an anonymous tunnel was cut: {res}"
    s1 = g.stats()
    assert s1["streams_cut_unverified"] == s0["streams_cut_unverified"] + 1
    lines = [ln for ln in g.log_path.read_text().splitlines()
             if "cannot be read" in ln and "revocations" in ln]
    assert lines, "no warning about the unread log"
    # a tunnel opened after the feed came back is not touched by it
    time.sleep(0.5)
    res = asyncio.run(asyncio.wait_for(_tunnels(
        g, [("/wss/echo", {"Authorization": f"Bearer {jwt}"})], lambda: time.sleep(1.0),
        wait=1.5), 30))
    assert res == [None], res
