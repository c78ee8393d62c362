"""HTTP/2 on the gateway's TLS listener (issue 26), with real processes: the gateway with
a certificate made by the openssl CLI, the demo upstream, and clients from curl (--http2)
and python3-h2 (pcsupport/h2client.py), which also sends what attackers send, frame by
frame (hyperframe, hpack).

ALPN h2 (then http/1.1): every stream is a request through the same stages as over
HTTP/1.1 (authentication, identity headers, X-Forwarded-Proto https, refusals), many at
once on one connection, bodies streamed both ways under flow control; a stream the client
resets cancels its exchange upstream. Bounded: concurrent streams (a reset one counted
until its request ends: rapid reset), header lists (HPACK bomb), CONTINUATION floods,
SETTINGS floods; the gateway goes on serving others after each."""

import json
import shutil
import socket
import ssl
import subprocess
import time

import hpack
import hyperframe.frame as F
import pytest
import requests

import pcsupport as G
from pcsupport.h2client import H2Client, Response

from test_gw_tls_front import _cert, _tls_env


@pytest.fixture
def tls(tmp_path):
    return _cert(tmp_path / "certs", "gw-h2")


@pytest.fixture
def h2gw(gateway_factory, upstream, tls):
    cert, key = tls
    g = gateway_factory(dict(_tls_env(upstream, cert, key), GATEWAY_HTTP2_MAX_STREAMS="16"),
                        route_table=False, name="gateway-h2")
    g.cert = cert
    return g


def _echo(resp):
    assert resp.status == 200, (resp.status, bytes(resp.body[:300]))
    return json.loads(bytes(resp.body))


def _ok(g):
    """The gateway still serves: a fresh HTTP/2 connection gets /health."""
    with H2Client(g.port, g.cert) as c:
        assert c.response(c.request("GET", "/health")).status == 200


def test_requests_over_http2_are_authenticated_and_proxied(h2gw, mod_user):
    g = h2gw
    with H2Client(g.port, g.cert) as c:
        assert c.alpn == "h2"
        r = c.response(c.request("GET", "/x?a=1", G.cookie(mod_user)))
        body = _echo(r)
        assert body["path"].startswith("/x"), body
        h = body["headers"]
        assert h["x-user-id"] == mod_user.id and h["x-forwarded-proto"] == "https"
        assert h["x-forwarded-host"] == "localhost"
        assert r.headers.get("x-request-id")
        # no credential: the gateway's own 401, as JSON, on the same connection
        r = c.response(c.request("GET", "/x"))
        assert r.status == 401 and json.loads(bytes(r.body))["code"], bytes(r.body)
        # a method the gateway does not serve: 405
        r = c.response(c.request("TRACE", "/x", G.cookie(mod_user)))
        assert r.status == 405
        # client-sent identity headers never reach the upstream
        r = c.response(c.request("GET", "/x", {**G.cookie(mod_user), "x-user-id": "forged"}))
        assert _echo(r)["headers"]["x-user-id"] == mod_user.id
        # HEAD: headers only
        r = c.response(c.request("HEAD", "/x", G.cookie(mod_user)))
        assert r.status == 200 and r.body == b""
    st = g.stats()
    assert st.get("h2_conns", 0) >= 1 and st.get("h2_streams", 0) >= 5, st


def test_cookies_split_by_the_client_are_joined(h2gw, mod_user):
    """HTTP/2 clients may send each cookie as its own field (RFC 9113 8.2.3): the
    gateway joins them, so the session cookie is found among others."""
    g = h2gw
    name, value = G.cookie(mod_user)["Cookie"].split("; ")[0].split("=", 1)
    with H2Client(g.port, g.cert) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "GET"), (":path", "/x"), (":scheme", "https"),
                                  (":authority", "localhost"), ("cookie", "a=1"),
                                  ("cookie", f"{name}={value}"), ("cookie", "b=2")],
                            end_stream=True)
        c.resp[sid] = Response()
        c.flush()
        body = _echo(c.response(sid))
        assert body["headers"]["x-user-id"] == mod_user.id
        # routes do not forward cookies unless forward_cookies says so
        assert "cookie" not in body["headers"], body["headers"]


def test_many_streams_at_once_on_one_connection(h2gw, mod_user):
    g = h2gw
    with H2Client(g.port, g.cert) as c:
        sids = [c.request("GET", f"/slow?ms=200&i={i}", G.cookie(mod_user)) for i in range(12)]
        t0 = time.monotonic()
        for i, sid in enumerate(sids):
            body = _echo(c.response(sid))
            assert f"i={i}" in body.get("query", "") + body["path"], body
        # twelve 200 ms answers in parallel, not one after the other
        assert time.monotonic() - t0 < 12 * 0.2, "the streams were served one at a time"


def test_bodies_both_ways_under_flow_control(h2gw, mod_user):
    g = h2gw
    origin = {"origin": "https://localhost"}     # the request's own (its :authority)
    with H2Client(g.port, g.cert) as c:
        # a request body larger than every window: streamed upstream as it is taken
        data = b"0123456789abcdef" * 65536       # 1 MiB
        sid = c.request("POST", "/x", {**G.cookie(mod_user), **origin,
                                       "content-length": str(len(data))}, body=data)
        body = _echo(c.response(sid))
        assert body["method"] == "POST" and body["body"] == data.decode()
    with H2Client(g.port, g.cert) as c:
        # without Content-Length: chunked to the upstream
        sid = c.request("POST", "/x", {**G.cookie(mod_user), **origin}, open_body=True)
        c.send_body(sid, b"q" * 200_000, end=True)
        body = _echo(c.response(sid))
        assert body["body"] == "q" * 200_000
    # a large answer to a client whose window is small: it arrives whole
    with H2Client(g.port, g.cert, window=16384) as c:
        r = c.response(c.request("GET", "/big?kb=3000", G.cookie(mod_user)))
        assert r.status == 200 and len(r.body) == 3000 * 1024


def test_a_client_that_stops_reading_holds_back_only_itself(h2gw, mod_user):
    """A stream whose client opens no window stalls alone: the upstream is held back,
    the gateway's memory is bounded, other connections are served."""
    g = h2gw
    with H2Client(g.port, g.cert, auto_ack=False) as c:
        sid = c.request("GET", "/big?kb=20000", G.cookie(mod_user))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            c.pump(0.2)
        got = len(c.resp[sid].body)
        assert 0 < got <= 65535, got            # the first window's worth, no more
        _ok(g)
        c.ack(sid, got)
        deadline = time.monotonic() + 5
        while len(c.resp[sid].body) <= got and time.monotonic() < deadline:
            c.pump(0.2)
        assert len(c.resp[sid].body) > got


def test_a_stream_reset_by_the_client_cancels_its_exchange(h2gw, mod_user):
    g = h2gw
    before = g.stats().get("upstream_cancels", 0)
    with H2Client(g.port, g.cert) as c:
        sid = c.request("GET", "/sse?n=100&ms=100", G.cookie(mod_user))
        deadline = time.monotonic() + 5
        while not c.resp[sid].body and time.monotonic() < deadline:
            c.pump(0.2)
        assert c.resp[sid].status == 200
        c.conn.reset_stream(sid)
        c.flush()
        deadline = time.monotonic() + 5
        while g.stats().get("upstream_cancels", 0) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert g.stats().get("upstream_cancels", 0) > before
        # the connection goes on
        assert _echo(c.response(c.request("GET", "/x", G.cookie(mod_user))))


def test_sign_out_reaches_the_next_stream(h2gw, aclient, user):
    g = h2gw
    with H2Client(g.port, g.cert) as c:
        assert c.response(c.request("GET", "/x", G.cookie(user))).status == 200
        assert aclient.post("sign-out", cookie=user.cookie).status_code == 200
        deadline = time.monotonic() + 5
        status = 200
        while status == 200 and time.monotonic() < deadline:
            status = c.response(c.request("GET", "/x", G.cookie(user))).status
            time.sleep(0.05)
        assert status == 401


def test_alpn_falls_back_to_http1_and_http2_can_be_turned_off(gateway_factory, upstream, tls,
                                                             mod_user):
    cert, key = tls
    g = gateway_factory(_tls_env(upstream, cert, key), route_table=False, name="gateway-h2-alpn")
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.selected_alpn_protocol() == "http/1.1"
            t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert t.recv(4096).startswith(b"HTTP/1.1 200")
    off = gateway_factory(dict(_tls_env(upstream, cert, key), GATEWAY_HTTP2="off"),
                          route_table=False, name="gateway-h2-off")
    with H2Client(off.port, cert) as c:
        assert c.alpn == "http/1.1"


def test_curl_http2(h2gw, mod_user):
    assert shutil.which("curl"), "curl is missing: scripts/deps.sh installs it"
    g = h2gw
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(g.cert), "-H",
         "Cookie: " + G.cookie(mod_user)["Cookie"], "-w", "\n%{http_version} %{http_code}",
         "--resolve", f"localhost:{g.port}:127.0.0.1", f"https://localhost:{g.port}/x"],
        capture_output=True, text=True, timeout=20)
    body, _, tail = out.stdout.rpartition("\n")
    assert tail == "2 200", (tail, out.stderr)
    assert json.loads(body)["headers"]["x-user-id"] == mod_user.id


# ---- the known HTTP/2 attacks ----


def test_rapid_reset_cannot_start_more_work_than_the_stream_limit(h2gw, mod_user):
    """CVE-2023-44487: streams opened and reset at once. A reset stream counts against
    GATEWAY_HTTP2_MAX_STREAMS (16 here) until its request ends, so the upstream never
    sees more than 16 of them at a time; a client that keeps going is sent away."""
    g = h2gw
    cancels0 = g.stats().get("upstream_cancels", 0)
    with H2Client(g.port, g.cert) as c:
        for i in range(2000):
            if c.terminated is not None or c.closed:
                break
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "GET"), (":path", "/slow?ms=2000"),
                                      (":scheme", "https"), (":authority", "localhost"),
                                      ("cookie", G.cookie(mod_user)["Cookie"])],
                                end_stream=True)
            c.conn.reset_stream(sid)
            try:
                c.flush()
            except OSError:
                break
            if i % 50 == 0 and not c.pump(0.01):
                break
        c.wait_closed(10)
        assert c.closed or c.terminated is not None, "a rapid-reset client was not sent away"
    st = g.stats()
    assert st.get("h2_refused", 0) > 0, st
    # what reached the upstream was cancelled, and bounded by the stream limit per
    # connection (the rest were refused before any work)
    assert st.get("upstream_cancels", 0) - cancels0 <= 16 * 2, st
    _ok(g)


def _raw_conn(g):
    """A TLS connection that chose h2, with the client preface and SETTINGS sent."""
    ctx = ssl.create_default_context(cafile=str(g.cert))
    ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", g.port), timeout=5),
                        server_hostname="localhost")
    assert s.selected_alpn_protocol() == "h2"
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + F.SettingsFrame(0).serialize())
    return s


def _closed_by_server(s, timeout=10) -> bool:
    """Reads (and drops) until the server closes (True) or timeout (False)."""
    s.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = s.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        except (ConnectionError, ssl.SSLError, OSError):
            return True
        if not d:
            return True
    return False


def test_continuation_flood_ends_the_connection(h2gw):
    """CVE-2024-28182: HEADERS without END_HEADERS, then CONTINUATION frames forever."""
    g = h2gw
    s = _raw_conn(g)
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":path", "/health"), (":scheme", "https"),
                        (":authority", "localhost")])
    s.sendall(F.HeadersFrame(1, data=block).serialize())   # no END_HEADERS
    closed = False
    try:
        for i in range(20000):
            f = F.ContinuationFrame(1, data=enc.encode([(f"x-h{i}", "v" * 100)]))
            s.sendall(f.serialize())
    except (ConnectionError, ssl.SSLError, OSError):
        closed = True
    assert closed or _closed_by_server(s), "a CONTINUATION flood was read forever"
    s.close()
    _ok(g)


def test_hpack_bomb_ends_the_connection(h2gw):
    """One large header in the HPACK table, then many one-byte references to it: the
    decoded header list passes GATEWAY_MAX_HEADER_BYTES many times over."""
    g = h2gw
    s = _raw_conn(g)
    enc = hpack.Encoder()
    first = enc.encode([(":method", "GET"), (":path", "/health"), (":scheme", "https"),
                        (":authority", "localhost"), ("x-bomb", "b" * 4000)])
    # index 62 is the newest dynamic entry: x-bomb
    refs = bytes([0x80 | 62]) * 8000
    s.sendall(F.HeadersFrame(1, data=first, flags=["END_HEADERS", "END_STREAM"]).serialize())
    try:
        s.sendall(F.HeadersFrame(3, data=refs[:16000], flags=["END_HEADERS", "END_STREAM"])
                  .serialize())
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    assert _closed_by_server(s), "a header list far past the limit was taken"
    s.close()
    assert g.stats().get("h2_refused", 0) > 0
    _ok(g)


def _rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_settings_flood_is_bounded(h2gw):
    """SETTINGS frames without ever reading the ACKs: the gateway stops at its bound
    (it stops reading, or closes), its memory does not grow with the flood."""
    g = h2gw
    s = _raw_conn(g)
    rss0 = _rss_kib(g.proc.pid)
    sent = 0
    s.settimeout(2)
    try:
        frame = F.SettingsFrame(0, settings={F.SettingsFrame.INITIAL_WINDOW_SIZE: 65535})
        chunk = frame.serialize() * 1000
        for _ in range(200):
            s.sendall(chunk)
            sent += 1000
    except (ConnectionError, ssl.SSLError, OSError, socket.timeout, TimeoutError):
        pass
    assert sent < 200_000 or _closed_by_server(s, 5), "200,000 SETTINGS frames were all taken"
    s.close()
    assert _rss_kib(g.proc.pid) - rss0 < 64 * 1024
    _ok(g)


def test_too_many_streams_end_the_connection(h2gw, mod_user):
    """More than GATEWAY_HTTP2_MAX_STREAMS (16) at once, ignoring the SETTINGS: nghttp2
    ends such a connection (GOAWAY PROTOCOL_ERROR, RFC 9113 5.1.2), and the gateway goes
    on serving others."""
    g = h2gw
    with H2Client(g.port, g.cert) as c:
        c.pump(0.3)                                  # the gateway's SETTINGS
        assert c.conn.remote_settings.max_concurrent_streams == 16
        # python-h2 would refuse to open more: lift its own bound to send them anyway
        c.conn.remote_settings._settings[F.SettingsFrame.MAX_CONCURRENT_STREAMS] = \
            __import__("collections").deque([1000])
        sids = [c.request("GET", "/slow?ms=500", G.cookie(mod_user)) for _ in range(24)]
        for sid in sids:
            c.response(sid)
        assert c.terminated == 1 and c.wait_closed(5), (c.terminated, c.closed)
    _ok(g)


def test_admin_listener_stays_plain_http(h2gw):
    assert requests.get(h2gw.admin_url("/metrics"), timeout=5).status_code == 200
    m = requests.get(h2gw.admin_url("/metrics"), timeout=5).text
    assert "portcullis_gateway_http2_connections_total" in m


def test_every_session_and_key_form_over_http2(h2gw, mod_user, keys):
    """The credential forms of test_gw_auth_matrix.py, on one HTTP/2 connection: each
    is the principal upstream, as over HTTP/1.1."""
    from test_gw_auth_matrix import METHOD, creds_for
    g = h2gw
    key = keys.create(mod_user.id)
    with H2Client(g.port, g.cert) as c:
        for kind, method in METHOD.items():
            h = {k.lower(): v for k, v in creds_for(kind, mod_user, key).items()}
            body = _echo(c.response(c.request("GET", "/x", h)))
            assert body["headers"]["x-user-id"] == mod_user.id, kind
            assert body["headers"]["x-auth-method"] == method, kind
        # a bad key is refused on the same connection, which goes on
        r = c.response(c.request("GET", "/x", {"x-api-key": key.key[:-1] + ("B" if key.key.endswith("A") else "A")}))
        assert r.status == 401
        assert c.response(c.request("GET", "/health")).status == 200


def test_a_stalled_request_body_is_bounded_while_the_connection_pings(
        gateway_factory, upstream, tls, mod_user, keys):
    """A stream whose body stops halfway, on a connection the client keeps busy with
    PINGs (so the connection is never idle): after GATEWAY_CLIENT_IDLE_SECONDS without
    body bytes the stream is reset (CANCEL) and its upstream exchange cancelled, as a
    stalled body closes an HTTP/1.1 connection; the connection goes on."""
    cert, key = tls
    g = gateway_factory(dict(_tls_env(upstream, cert, key), GATEWAY_CLIENT_IDLE_SECONDS="2"),
                        route_table=False, name="gateway-h2-stall")
    with H2Client(g.port, cert) as c:
        key = keys.create(mod_user.id).key
        before = g.stats().get("upstream_cancels", 0)
        hdrs = {"x-api-key": key, "content-type": "application/octet-stream",
                "content-length": "100000"}
        sid = c.request("POST", "/x", hdrs, open_body=True)
        c.send_body(sid, b"a" * 1000, end=False)
        t0 = time.monotonic()
        while c.resp[sid].reset is None and time.monotonic() - t0 < 10:
            c.conn.ping(b"12345678")
            c.flush()
            c.pump(0.3)
        took = time.monotonic() - t0
        assert c.resp[sid].reset == 8 and 1.5 < took < 6, (c.resp[sid], took)   # CANCEL
        deadline = time.monotonic() + 5
        while g.stats().get("upstream_cancels", 0) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert g.stats().get("upstream_cancels", 0) == before + 1
        assert _echo(c.response(c.request("GET", "/x", {"x-api-key": key})))


def test_jwts_over_http2(gateway_factory, upstream, tls, live_authsvc, aclient, mod_user):
    """A JWT minted by authsvc (/api/auth/token) is the principal upstream over HTTP/2,
    as over HTTP/1.1 (the issuer's JWKS fetched by the gateway); one with a changed
    signature is 401 on the same connection, which goes on."""
    cert, key = tls
    routes = {"jwt_issuers": [{"issuer": live_authsvc.origin,
                               "jwks_uri": live_authsvc.api("/jwks")}],
              "routes": [{"prefix": "/j/", "upstream": upstream.url, "auth": ["jwt"]}]}
    g = gateway_factory(dict(_tls_env(upstream, cert, key),
                             BETTER_AUTH_URL=live_authsvc.base_url),
                        route_table=routes, name="gateway-h2-jwt")
    r = aclient.get("token", cookie=mod_user.cookie)
    assert r.status_code == 200, r.text[:300]
    tok = r.json()["token"]
    sig = tok.rsplit(".", 1)[1]
    bad = tok.rsplit(".", 1)[0] + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    with H2Client(g.port, cert) as c:
        body = _echo(c.response(c.request("GET", "/j/x", {"authorization": f"Bearer {tok}"})))
        assert body["headers"]["x-user-id"] == mod_user.id
        assert body["headers"]["x-auth-method"] == "jwt"
        r = c.response(c.request("GET", "/j/x", {"authorization": f"Bearer {bad}"}))
        assert r.status == 401, (r.status, bytes(r.body[:200]))
        body = _echo(c.response(c.request("GET", "/j/x", {"authorization": f"Bearer {tok}"})))
        assert body["headers"]["x-auth-method"] == "jwt"
