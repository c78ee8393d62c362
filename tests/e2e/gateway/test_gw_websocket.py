"""WebSocket tunnels through the gateway (issue 15), with real processes: a WebSocket
upstream and client from Debian's python3-websockets, authsvc, Redis, PostgreSQL.

The handshake is authenticated as any request (cookie, x-api-key, the :apiKey path
segment) and refused with the same JSON; the upstream's 101 turns the connection into a
byte pump both ways (identity headers went with the handshake), any other answer is
relayed as it is. The tunnel is cut with close code 4001 the moment its credential is
revoked (sign-out, a key deleted and published, on every replica) or expires, with 1001
at the route's idle timeout, its lifetime and at shutdown; a client that vanishes closes
the upstream side; a client that does not read stops the upstream's reads (the gateway's
memory stays bounded); the caps answer 429 JSON. A streamed answer (SSE) is cut by a
revocation the same way."""

import asyncio
import json
import os
import signal
import socket
import time

import pytest
import requests
import websockets

import pcsupport as G
from pcsupport.wsupstream import WsUpstream


@pytest.fixture
def wsup():
    made = []

    def make(**kw):
        made.append(WsUpstream(**kw))
        return made[-1]

    yield make
    for u in made:
        u.stop()


def _routes(up, **kw):
    return {"routes": [
        dict({"prefix": "/ws/", "upstream": up.url, "auth": ["none"]}, **kw),
        dict({"prefix": "/wss/", "upstream": up.url, "auth": ["session", "api_key"]}, **kw),
        dict({"prefix": "/wsk/:apiKey/", "upstream": up.url, "auth": ["api_key"]}, **kw),
    ]}


def _ws_url(g, path):
    return f"ws://127.0.0.1:{g.port}{path}"


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _echo(url, headers=None, msgs=("hello", b"\x00\x01binary")):
    async with websockets.connect(url, extra_headers=headers or {}, max_size=None,
                                  ping_interval=None) as ws:
        got = []
        for m in msgs:
            await ws.send(m)
            got.append(await ws.recv())
        return got


async def _open_and_wait_close(url, headers=None, wait=10.0, ready=None):
    """Opens a tunnel, checks one echo, then waits for the gateway to close it; returns
    (close code, reason, seconds from the echo to the close)."""
    async with websockets.connect(url, extra_headers=headers or {}, ping_interval=None) as ws:
        await ws.send("ping")
        assert await ws.recv() == "ping"
        t0 = time.monotonic()
        if ready:
            await asyncio.get_running_loop().run_in_executor(None, ready)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), wait)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, time.monotonic() - t0


def _cookie_header(user):
    return G.cookie(user)


# ---- the tunnel ----

def test_messages_both_ways_on_an_anonymous_route(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws")
    got = run(_echo(_ws_url(g, "/ws/echo"), msgs=["a", b"b" * 70000, "c" * 200000]))
    assert got == ["a", b"b" * 70000, "c" * 200000]
    hs = up.handshakes[-1]
    assert hs["upgrade"].lower() == "websocket" and "upgrade" in hs["connection"].lower()
    assert hs["x-request-id"] and hs["x-forwarded-for"] == "127.0.0.1"
    assert "sec-websocket-key" in hs


@pytest.mark.parametrize("how", ["cookie", "x-api-key", "path"])
def test_each_credential_kind_opens_a_tunnel_with_identity(gateway_factory, wsup, mod_user,
                                                           mod_key, how):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name=f"gateway-ws-{how}")
    if how == "cookie":
        url, headers = _ws_url(g, "/wss/echo"), _cookie_header(mod_user)
    elif how == "x-api-key":
        url, headers = _ws_url(g, "/wss/echo"), {"x-api-key": mod_key.key}
    else:
        url, headers = _ws_url(g, f"/wsk/{mod_key.key}/echo"), {}
    assert run(_echo(url, headers)) == ["hello", b"\x00\x01binary"]
    hs = up.handshakes[-1]
    assert hs["x-user-id"] == mod_user.id
    assert hs["x-auth-method"] == ("session" if how == "cookie" else "api_key")
    assert "cookie" not in hs or "session_token" not in hs["cookie"]
    assert mod_key.key not in json.dumps(hs), "the key reached the upstream"


def _raw_handshake(g, path, extra=""):
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{g.port}\r\nConnection: Upgrade\r\n"
           "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n")
    return G.raw_http(g.port, req.encode())[:3]


def test_refused_handshakes_get_the_same_json(gateway_factory, wsup, keys, mod_user):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-refused")
    for extra in ("", "x-api-key: pc_nosuchkey_abcdefghijklmnopqrstuvwxyz\r\n",
                  "Cookie: better-auth.session_token=nope.nope\r\n"):
        status, headers, body = _raw_handshake(g, "/wss/echo", extra)
        assert status == 401, (status, body)
        err = json.loads(body)
        assert err["code"] and err["requestId"], err
    assert not up.handshakes, "a refused handshake reached the upstream"


def test_a_non_101_answer_is_relayed(gateway_factory, wsup):
    up = wsup(refuse_status=403)
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-403")
    status, headers, body = _raw_handshake(g, "/ws/echo")
    assert status == 403 and b"refused" in body


def test_websocket_false_forwards_no_upgrade(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table=_routes(up, websocket=False), name="gateway-ws-off")
    status, _, _ = _raw_handshake(g, "/ws/echo")
    assert status != 101


# ---- cut on revocation and expiry ----

def test_sign_out_closes_the_socket_with_4001(gateway_factory, wsup, aclient, user):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-signout")

    def sign_out():
        assert aclient.post("sign-out", cookie=user.cookie).status_code == 200

    code, reason, took = run(_open_and_wait_close(_ws_url(g, "/wss/echo"), _cookie_header(user),
                                                  ready=sign_out))
    assert code == 4001 and "revoked" in reason, (code, reason)
    assert took < 2.0, took
    assert g.stats()["streams_cut_revoked"] >= 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not up.closed:
        time.sleep(0.05)
    assert up.closed, "the upstream side of the tunnel stayed open"


def test_revoked_key_closes_tunnels_on_three_replicas(gateway_factory, wsup, keys, sql,
                                                      redis_client, mod_user):
    up = wsup()
    gws = [gateway_factory(route_table=_routes(up), name=f"gateway-ws-r{i}") for i in range(3)]
    k = keys.create(mod_user.id)

    def revoke():
        assert sql.execute('delete from "apikey" where id = %s', (k.id,)) == 1
        redis_client.delete(f"{G.DEFAULT_REDIS_PREFIX}k:{k.hash}")
        redis_client.command("PUBLISH", G.DEFAULT_REVOCATION_CHANNEL, k.hash)

    async def all_three():
        conns = []
        for g in gws:
            ws = await websockets.connect(_ws_url(g, "/wss/echo"),
                                          extra_headers={"x-api-key": k.key}, ping_interval=None)
            await ws.send("x")
            assert await ws.recv() == "x"
            conns.append(ws)
        t0 = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, revoke)
        out = []
        for ws in conns:
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            out.append((ws.close_code, time.monotonic() - t0))
        return out

    for code, took in run(all_three()):
        assert code == 4001 and took < 2.0, (code, took)


def test_key_expiry_while_open_closes_with_4001(gateway_factory, wsup, keys, mod_user):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-expiry")
    k = keys.create(mod_user.id, expires_sql="now() + interval '2 seconds'")
    t0 = time.monotonic()
    code, reason, _ = run(_open_and_wait_close(_ws_url(g, "/wss/echo"), {"x-api-key": k.key}))
    took = time.monotonic() - t0
    assert code == 4001 and "expired" in reason, (code, reason)
    assert took < 4.0, took
    assert g.stats()["streams_cut_expired"] >= 1


def _session_expires_in(sql, redis_client, u, seconds):
    """Moves u's session expiry in PostgreSQL (and drops authsvc's Redis copy, so the
    gateway reads the row)."""
    sql.execute('update "session" set "expiresAt" = now() + make_interval(secs => %s) '
                'where token = %s', (seconds, u.token))
    redis_client.delete(G.session_key(u.token))


def test_session_expiry_while_open_closes_with_4001(gateway_factory, wsup, sql, redis_client,
                                                    user):
    """No refresh at the handshake (SESSION_UPDATE_AGE_SECONDS=0): the row's expiresAt is read
    again when the timer comes, and is still past."""
    up = wsup()
    g = gateway_factory({"SESSION_UPDATE_AGE_SECONDS": "0"}, route_table=_routes(up),
                        name="gateway-ws-sexpiry")
    _session_expires_in(sql, redis_client, user, 2)
    code, reason, took = run(_open_and_wait_close(_ws_url(g, "/wss/echo"), _cookie_header(user)))
    assert code == 4001 and "expired" in reason, (code, reason)
    assert took < 4.0, took


def test_session_slid_elsewhere_keeps_its_tunnel(gateway_factory, wsup, sql, redis_client, user):
    """A sliding refresh done by someone else (another replica, authsvc, Better Auth:
    here plain SQL) while the tunnel is open moves its cut: the tunnel outlives the
    expiry it was opened with, and is cut at the new one."""
    up = wsup()
    g = gateway_factory({"SESSION_UPDATE_AGE_SECONDS": "0"}, route_table=_routes(up),
                        name="gateway-ws-slid")
    _session_expires_in(sql, redis_client, user, 2)

    async def slide_then_expire():
        async with websockets.connect(_ws_url(g, "/wss/echo"), extra_headers=_cookie_header(user),
                                      ping_interval=None) as ws:
            t0 = time.monotonic()
            await ws.send("a")
            assert await ws.recv() == "a"
            sql.execute('update "session" set "expiresAt" = now() + interval \'4 seconds\' '
                        'where token = %s', (user.token,))
            await asyncio.sleep(3.0)              # past the first expiry
            await ws.send("b")
            assert await ws.recv() == "b", "cut at the expiry it was opened with"
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 6)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code, ws.close_reason, time.monotonic() - t0

    code, reason, took = run(slide_then_expire())
    assert code == 4001 and "expired" in reason, (code, reason)
    assert 3.5 < took < 6.5, took


def test_sse_stream_is_cut_by_revocation(gateway_factory, upstream, aclient, user):
    routes = {"routes": [{"prefix": "/authsse/", "upstream": upstream.url, "auth": ["session"],
                          "strip_prefix": True}]}
    g = gateway_factory(route_table=routes, name="gateway-sse-cut")
    s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    cookie = _cookie_header(user)["Cookie"]
    s.sendall(f"GET /authsse/sse?n=200&ms=50 HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\n"
              "Connection: close\r\n\r\n".encode())
    buf = b""
    while b"data: event" not in buf:
        buf += s.recv(65536)
    assert aclient.post("sign-out", cookie=user.cookie).status_code == 200
    t0 = time.monotonic()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    took = time.monotonic() - t0
    s.close()
    assert took < 2.0, f"the stream ran on {took:.1f} s after sign-out"
    assert not buf.endswith(b"0\r\n\r\n"), "a cut stream must not look complete"
    assert buf.count(b"data: event") < 200


# ---- limits ----

def test_idle_timeout_and_lifetime_close_with_1001(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table={"routes": [
        {"prefix": "/idle/", "upstream": up.url, "auth": ["none"], "tunnel_idle_timeout_ms": 500},
        {"prefix": "/life/", "upstream": up.url, "auth": ["none"], "tunnel_max_lifetime_s": 1},
    ]}, name="gateway-ws-timeouts")
    code, reason, took = run(_open_and_wait_close(_ws_url(g, "/idle/echo")))
    assert code == 1001 and "idle" in reason and 0.3 < took < 2.0, (code, reason, took)

    async def busy_then_cut():
        async with websockets.connect(_ws_url(g, "/life/echo"), ping_interval=None) as ws:
            t0 = time.monotonic()
            try:
                while True:   # traffic does not extend a lifetime
                    await ws.send("x")
                    await asyncio.wait_for(ws.recv(), 5)
                    await asyncio.sleep(0.1)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code, time.monotonic() - t0

    code, took = run(busy_then_cut())
    assert code == 1001 and 0.7 < took < 2.5, (code, took)

    async def traffic_keeps_it_then_silence_ends_it(upwards):
        # the idle window restarts with every byte, in either direction
        async with websockets.connect(_ws_url(g, "/idle/echo"), ping_interval=None) as ws:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 1.6:    # three windows and more
                if upwards:
                    await ws.send("x")
                    assert await asyncio.wait_for(ws.recv(), 5) == "x"
                else:
                    await ws.ping()
                await asyncio.sleep(0.15)
            quiet = time.monotonic()
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            return ws.close_code, time.monotonic() - quiet

    for upwards in (True, False):
        code, took = run(traffic_keeps_it_then_silence_ends_it(upwards))
        assert code == 1001 and 0.3 < took < 1.5, (upwards, code, took)


def test_tunnel_caps_answer_429_json(gateway_factory, wsup, mod_user, keys):
    up = wsup()
    g = gateway_factory({"GATEWAY_WORKERS": "1", "GATEWAY_MAX_TUNNELS": "2",
                         "GATEWAY_MAX_TUNNELS_PER_USER": "1"},
                        route_table=_routes(up), name="gateway-ws-caps")
    k2 = keys.create(mod_user.id)

    async def caps():
        a = await websockets.connect(_ws_url(g, "/ws/echo"), ping_interval=None)
        # the same user a second time: over the per-user cap
        b = await websockets.connect(_ws_url(g, "/wss/echo"), extra_headers={"x-api-key": k2.key},
                                     ping_interval=None)
        await b.send("x")
        await b.recv()
        status_user, _, body_user = _raw_handshake(g, "/wss/echo", f"x-api-key: {k2.key}\r\n")
        # anyone a third time: over the worker's cap
        status_any, _, body_any = _raw_handshake(g, "/ws/echo")
        await a.close()
        await b.close()
        return status_user, body_user, status_any, body_any

    su, bu, sa, ba = run(caps())
    assert su == 429 and json.loads(bu)["code"] == "TOO_MANY_TUNNELS", (su, bu)
    assert sa == 429 and json.loads(ba)["code"] == "TOO_MANY_TUNNELS", (sa, ba)
    assert g.stats()["tunnels_refused"] == 2
    # closed tunnels give their places back
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            assert run(_echo(_ws_url(g, "/ws/echo"), msgs=["again"])) == ["again"]
            break
        except websockets.InvalidStatusCode:
            time.sleep(0.1)
    else:
        pytest.fail("the cap stayed reached after the tunnels closed")


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_slow_reader_bounds_the_gateways_memory(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-slow")
    assert run(_echo(_ws_url(g, "/ws/echo"), msgs=["warm"])) == ["warm"]
    before = _rss_kib(g.proc.pid)

    async def slow():
        # the upstream sends 64 MiB; this client reads nothing for 3 s (websockets stops
        # reading its socket once max_queue messages wait), then everything
        async with websockets.connect(_ws_url(g, "/ws/flood?n=1024&size=65536"), max_size=None,
                                      max_queue=1, read_limit=65536, ping_interval=None) as ws:
            await asyncio.sleep(3)
            peak = _rss_kib(g.proc.pid)
            got = 0
            for _ in range(1024):
                got += len(await ws.recv())
            return peak, got

    peak, got = run(slow(), timeout=60)
    assert got == 1024 * 65536
    assert peak - before < 8 * 1024, f"the gateway grew by {peak - before} KiB for a slow reader"


def test_a_vanished_client_closes_the_upstream_side(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-vanish")
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    s.sendall((f"GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
               "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nUser-Agent: ws-vanish/1\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert up.handshakes
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()   # a reset, no close frame
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not up.closed:
        time.sleep(0.05)
    assert up.closed, "the upstream connection stayed open after the client vanished"
    deadline = time.monotonic() + 5     # the access log is written every 100 ms
    while True:
        lines = [json.loads(ln) for ln in g.log_path.read_text().splitlines()
                 if '"closed_by"' in ln]
        if any(ln.get("closed_by") == "client" and ln.get("tunnel") for ln in lines):
            break
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    line = next(ln for ln in lines if ln.get("closed_by") == "client")
    assert line["status"] == 101 and line["bytes_up"] == 0 and "latency_us" in line
    # the handshake's head is gone by now; the log kept what it needs of it
    assert line["user_agent"] == "ws-vanish/1" and line["method"] == "GET", line
    assert line["bytes_in"] > 150 and line["bytes_out"] >= len(head), line


def test_sigterm_sends_1001_and_exits(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-drain")

    def term():
        os.kill(g.proc.pid, signal.SIGTERM)

    code, reason, took = run(_open_and_wait_close(_ws_url(g, "/ws/echo"), ready=term))
    assert code == 1001 and took < 2.0, (code, reason, took)
    assert g.proc.popen.wait(timeout=10) == 0


def test_metrics_count_tunnels(gateway_factory, wsup):
    up = wsup()
    g = gateway_factory(route_table=_routes(up), name="gateway-ws-metrics")

    async def one_open():
        async with websockets.connect(_ws_url(g, "/ws/echo"), ping_interval=None) as ws:
            await ws.send("x")
            await ws.recv()
            return requests.get(g.admin_url("/metrics"), timeout=5).text

    text = run(one_open())
    assert "portcullis_gateway_tunnels_open 1" in text, text[-2000:]
    after = requests.get(g.admin_url("/metrics"), timeout=5).text
    assert "portcullis_gateway_tunnels_total 1" in after
