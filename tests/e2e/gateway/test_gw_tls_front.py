"""TLS on the gateway's public listener (issue 26, its HTTP/1.1 part), with real processes:
certificates made by the openssl CLI, clients from Python's ssl and requests, curl, and
python3-websockets.

GATEWAY_TLS_CERT / GATEWAY_TLS_KEY turn TLS on for GATEWAY_LISTEN: TLS 1.2 and 1.3 only,
requests authenticated and proxied as over plain HTTP, X-Forwarded-Proto https upstream,
WebSocket tunnels (wss) through it, session resumption by ticket, a plain-HTTP client
dropped, a bad certificate a start-up error naming the variable, and SIGHUP reading the
certificate again (open connections keep theirs; a bad new one is refused and the old
stays). The admin listener stays plain HTTP."""

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
import warnings

import pytest
import requests
import websockets

import pcsupport as G
from pcsupport.wsupstream import WsUpstream


def _cert(d, cn, days=30, san="DNS:localhost,IP:127.0.0.1"):
    """A self-signed certificate for cn (and san): (cert, key) paths."""
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / f"{cn}.crt", d / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", str(days), "-subj",
                    f"/CN={cn}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture
def certs(tmp_path):
    return lambda cn="gw-a": _cert(tmp_path / "certs", cn)


def _tls_env(upstream, cert, key):
    return {"UPSTREAM_URL": upstream.url, "GATEWAY_TLS_CERT": str(cert),
            "GATEWAY_TLS_KEY": str(key)}


def _ctx(cafile, **kw):
    c = ssl.create_default_context(cafile=str(cafile))
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def _peer_cn(port, cafile, name="localhost"):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with _ctx(cafile).wrap_socket(s, server_hostname=name) as t:
            return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]


def _session(cert):
    s = requests.Session()
    s.trust_env = False
    s.verify = str(cert)
    return s


def test_requests_over_tls_are_authenticated_and_proxied(gateway_factory, upstream, certs,
                                                         mod_user):
    cert, key = certs()
    g = gateway_factory(_tls_env(upstream, cert, key), route_table=False, name="gateway-tls")
    base = f"https://localhost:{g.port}"
    with _session(cert) as s:
        r = s.get(base + "/x", headers=G.cookie(mod_user), timeout=5)
        assert r.status_code == 200, r.text
        body = G.echo(r)
        assert body["headers"]["x-user-id"] == mod_user.id
        assert body["headers"]["x-forwarded-proto"] == "https"
        G.assert_gw_error(s.get(base + "/x", timeout=5), 401)
        # keep-alive: many requests on one TLS connection
        for _ in range(20):
            assert s.get(base + "/x", headers=G.cookie(mod_user), timeout=5).status_code == 200
        big = s.post(base + "/x", headers={**G.cookie(mod_user), "Origin": base},
                     data=b"z" * 300_000, timeout=10)
        assert big.status_code == 200 and len(G.echo(big)["body"]) == 300_000, big.text[:200]
        # the origin check: over TLS the request's own origin is https://, not http://
        r = s.post(base + "/x", headers={**G.cookie(mod_user),
                                         "Origin": f"http://localhost:{g.port}"}, timeout=5)
        assert r.status_code == 403 and r.json()["code"] == "INVALID_ORIGIN", r.text
    # the admin listener stays plain HTTP
    assert requests.get(g.admin_url("/metrics"), timeout=5).status_code == 200


def test_protocol_versions_and_a_plain_client(gateway_factory, upstream, certs):
    cert, key = certs()
    g = gateway_factory(_tls_env(upstream, cert, key), route_table=False, name="gateway-tls-ver")
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = _ctx(cert, minimum_version=v, maximum_version=v)
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                assert t.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                       ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v]
    with warnings.catch_warnings():   # Python deprecates the old versions too
        warnings.simplefilter("ignore", DeprecationWarning)
        old = _ctx(cert, minimum_version=ssl.TLSVersion.TLSv1,
                   maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            with old.wrap_socket(s, server_hostname="localhost"):
                pass
    # a plain HTTP request on the TLS port gets no HTTP answer, and the gateway goes on
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = s.recv(4096)
        except ConnectionResetError:
            got = b""
        assert not got.startswith(b"HTTP/"), got
    assert _peer_cn(g.port, cert) == "gw-a"


def test_session_resumption_by_ticket(gateway_factory, upstream, certs):
    cert, key = certs()
    g = gateway_factory(_tls_env(upstream, cert, key), route_table=False, name="gateway-tls-res")
    ctx = _ctx(cert, maximum_version=ssl.TLSVersion.TLSv1_2)
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            t.recv(4096)
            sess = t.session
    with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost", session=sess) as t:
            assert t.session_reused


@pytest.mark.parametrize("request_line", [
    b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /health HTTP/1.0\r\n\r\n"], ids=["http11-close", "http10"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_a_closed_connection_ends_with_close_notify_and_still_resumes(
        gateway_factory, upstream, certs, version, request_line):
    """After a Connection: close answer the gateway sends close_notify before it closes:
    a client that reads to the end sees a clean end (not a truncation, which OpenSSL
    clients such as `openssl s_time` and curl answer by dropping the session) and can
    resume the session afterwards."""
    cert, key = certs()
    g = gateway_factory(_tls_env(upstream, cert, key), route_table=False, name="gateway-tls-cn")
    ctx = _ctx(cert, minimum_version=version, maximum_version=version)
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF   # Python sets it; OpenSSL's default is off
    sess = None
    for attempt in range(2):
        with socket.create_connection(("127.0.0.1", g.port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="localhost", session=sess,
                                 suppress_ragged_eofs=False) as t:
                t.sendall(request_line)
                got = b""
                while True:
                    part = t.recv(4096)   # SSLEOFError if the TCP close came bare
                    if not part:
                        break
                    got += part
                assert got.startswith(b"HTTP/1.1 200") and b"Connection: close" in got, got
                assert t.session_reused == (attempt == 1)
                sess = t.session


def test_curl_over_tls(gateway_factory, upstream, certs, mod_user):
    if shutil.which("curl") is None:
        pytest.fail("curl is needed (make deps installs it)")
    cert, key = certs()
    g = gateway_factory(_tls_env(upstream, cert, key), route_table=False, name="gateway-tls-curl")
    r = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", str(cert), "-o", "/dev/null",
                        "-w", "%{http_code} %{ssl_verify_result}",
                        "-H", f"Cookie: {G.cookie(mod_user)['Cookie']}",
                        f"https://localhost:{g.port}/x"], capture_output=True, timeout=20)
    assert r.stdout.decode() == "200 0", (r.stdout, r.stderr)


def test_websocket_over_tls(gateway_factory, certs, mod_user):
    up = WsUpstream()
    try:
        cert, key = certs()
        routes = {"routes": [{"prefix": "/ws/", "upstream": up.url, "auth": ["session"]}]}
        env = {"GATEWAY_TLS_CERT": str(cert), "GATEWAY_TLS_KEY": str(key)}
        g = gateway_factory(env, route_table=routes, name="gateway-tls-ws")

        async def talk():
            async with websockets.connect(f"wss://localhost:{g.port}/ws/echo", ssl=_ctx(cert),
                                          extra_headers=G.cookie(mod_user),
                                          ping_interval=None, max_size=None) as ws:
                for m in ("hello", b"\x00" * 100_000):
                    await ws.send(m)
                    assert await ws.recv() == m
        asyncio.run(asyncio.wait_for(talk(), 20))
        assert up.handshakes[-1]["x-forwarded-proto"] == "https"
    finally:
        up.stop()


def test_bad_certificate_is_a_start_up_error(tmp_path, upstream, certs):
    cert, key = certs()
    other_cert, other_key = certs("other")
    for env, needle in (
            ({"GATEWAY_TLS_CERT": str(tmp_path / "missing.crt"), "GATEWAY_TLS_KEY": str(key)},
             "GATEWAY_TLS_CERT"),
            ({"GATEWAY_TLS_CERT": str(cert)}, "GATEWAY_TLS_KEY: required"),
            ({"GATEWAY_TLS_CERT": str(cert), "GATEWAY_TLS_KEY": str(other_key)},
             "key values mismatch")):
        e = {}
        e.update({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
                  "BETTER_AUTH_SECRET": "s" * 40, "UPSTREAM_URL": upstream.url, **env})
        r = subprocess.run([str(G.binary("gateway")), "--check"], env=G.gateway_env(e),
                           capture_output=True, timeout=10)
        err = r.stderr.decode()
        assert r.returncode == 2 and needle in err, err


def test_sighup_reads_the_certificate_again(gateway_factory, upstream, certs):
    cert_a, key_a = certs("gw-a")
    cert_b, key_b = certs("gw-b")
    live_cert, live_key = cert_a.parent / "live.crt", cert_a.parent / "live.key"
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    g = gateway_factory(_tls_env(upstream, live_cert, live_key), route_table=False,
                        name="gateway-tls-reload")
    assert _peer_cn(g.port, cert_a) == "gw-a"
    # an open keep-alive connection on the old certificate
    keep = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    kt = _ctx(cert_a).wrap_socket(keep, server_hostname="localhost")
    shutil.copy(cert_b, live_cert)
    shutil.copy(key_b, live_key)
    g.proc.send_signal(__import__("signal").SIGHUP)
    G.wait_until(lambda: "TLS certificate read again" in g.log_path.read_text(), 5,
                 what="the reload")
    assert _peer_cn(g.port, cert_b) == "gw-b", "new connections get the new certificate"
    kt.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert kt.recv(4096).startswith(b"HTTP/1.1 200"), "the open connection keeps working"
    kt.close()
    # a broken new pair is refused; the one in use stays
    live_key.write_text("not a key\n")
    before = g.stats()["reloads_failed"]
    g.proc.send_signal(__import__("signal").SIGHUP)
    G.wait_until(lambda: g.stats()["reloads_failed"] > before, 5, what="the refused reload")
    assert _peer_cn(g.port, cert_b) == "gw-b"
    assert "the TLS certificate in use stays" in g.log_path.read_text()


def test_sni_picks_the_certificate_that_names_the_host(gateway_factory, upstream, tmp_path):
    d = tmp_path / "sni"
    a = _cert(d, "first", san="DNS:localhost,IP:127.0.0.1")
    b = _cert(d, "api", san="DNS:api.test")
    c = _cert(d, "wild", san="DNS:*.apps.test")
    env = {"UPSTREAM_URL": upstream.url,
           "GATEWAY_TLS_CERT": ",".join(str(x[0]) for x in (a, b, c)),
           "GATEWAY_TLS_KEY": ", ".join(str(x[1]) for x in (a, b, c))}
    g = gateway_factory(env, route_table=False, name="gateway-tls-sni")
    assert _peer_cn(g.port, a[0]) == "first"
    assert _peer_cn(g.port, b[0], "api.test") == "api"
    assert _peer_cn(g.port, c[0], "x.apps.test") == "wild"
    # a name no certificate has: the first one (which the client then refuses to trust)
    with pytest.raises(ssl.SSLCertVerificationError):
        _peer_cn(g.port, b[0], "other.test")
    bad = dict(env, GATEWAY_TLS_KEY=str(a[1]))
    r = subprocess.run([str(G.binary("gateway")), "--check"], capture_output=True, timeout=10,
                       env=G.gateway_env({"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
                                          "BETTER_AUTH_SECRET": "s" * 40, **bad}))
    assert r.returncode == 2 and b"one key per certificate" in r.stderr, r.stderr


def test_hsts_on_a_route_over_tls(gateway_factory, upstream, certs):
    cert, key = certs()
    routes = {"routes": [
        {"prefix": "/h/", "upstream": upstream.url, "auth": ["none"], "hsts_max_age_s": 31536000},
        {"prefix": "/n/", "upstream": upstream.url, "auth": ["none"]},
    ]}
    g = gateway_factory({"GATEWAY_TLS_CERT": str(cert), "GATEWAY_TLS_KEY": str(key)},
                        route_table=routes, name="gateway-tls-hsts")
    with _session(cert) as s:
        r = s.get(f"https://localhost:{g.port}/h/x", timeout=5)
        assert r.headers.get("strict-transport-security") == "max-age=31536000", r.headers
        assert "strict-transport-security" not in s.get(f"https://localhost:{g.port}/n/x",
                                                        timeout=5).headers
        # the gateway's own answers on the route carry it too
        r = s.get(f"https://localhost:{g.port}/nothing-here", timeout=5)
        assert r.status_code == 404


def test_hsts_is_not_sent_over_plain_http(gateway_factory, upstream):
    routes = {"routes": [{"prefix": "/h/", "upstream": upstream.url, "auth": ["none"],
                          "hsts_max_age_s": 600}]}
    g = gateway_factory(route_table=routes, name="gateway-hsts-plain")
    assert "strict-transport-security" not in g.get("/h/x").headers   # RFC 6797 7.2


def test_plain_listener_redirects_to_https(gateway_factory, upstream, certs):
    cert, key = certs()
    http_port = G.free_port()
    env = dict(_tls_env(upstream, cert, key), GATEWAY_HTTP_LISTEN=f"127.0.0.1:{http_port}")
    g = gateway_factory(env, route_table=False, name="gateway-tls-redirect")
    plain = f"http://127.0.0.1:{http_port}"
    r = requests.post(plain + "/app/x?y=1", data=b"body", allow_redirects=False, timeout=5,
                      headers={"Host": "app.example.com:8080"})
    assert r.status_code == 308, r.text
    assert r.headers["location"] == f"https://app.example.com:{g.port}/app/x?y=1"
    # absolute-form targets redirect to their path; health checks are answered in place
    assert requests.get(plain + "/health", timeout=5).status_code == 200
    assert requests.get(plain + "/ready", timeout=5).status_code == 200
    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as s:
        s.sendall(b"GET http://h.test/p HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n")
        head = s.recv(4096).decode()
    assert head.startswith("HTTP/1.1 308") and f"Location: https://h.test:{g.port}/p\r\n" in head
    # nothing on it is proxied: no credential is ever read there
    assert g.stats()["requests"] >= 4
    # without TLS it is a configuration error
    e = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x", "BETTER_AUTH_SECRET": "s" * 40,
         "UPSTREAM_URL": upstream.url, "GATEWAY_HTTP_LISTEN": f"127.0.0.1:{G.free_port()}"}
    r = subprocess.run([str(G.binary("gateway")), "--check"], env=G.gateway_env(e),
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"GATEWAY_HTTP_LISTEN: only with GATEWAY_TLS_CERT" in r.stderr


def _resumed(port, ctx, sess):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost", session=sess) as t:
            t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            t.recv(4096)
            return t.session_reused, t.session


def test_ticket_keys_rotate(gateway_factory, upstream, certs):
    """GATEWAY_TLS_TICKET_ROTATE_SECONDS=1: a ticket still resumes one and two periods
    later (under a previous key, renewed), not once three have gone by; a reload keeps
    the keys."""
    cert, key = certs()
    env = dict(_tls_env(upstream, cert, key), GATEWAY_TLS_TICKET_ROTATE_SECONDS="1")
    g = gateway_factory(env, route_table=False, name="gateway-tls-tickets")
    ctx = _ctx(cert, maximum_version=ssl.TLSVersion.TLSv1_2)
    _, sess = _resumed(g.port, ctx, None)
    reused, _ = _resumed(g.port, ctx, sess)
    assert reused
    assert g.reload()                      # SIGHUP: new contexts, the same keys
    reused, _ = _resumed(g.port, ctx, sess)
    assert reused, "a reload lost the ticket keys"
    time.sleep(1.3)
    reused, _ = _resumed(g.port, ctx, sess)
    assert reused, "a ticket one period old must still resume"
    time.sleep(3.5)
    reused, _ = _resumed(g.port, ctx, sess)
    assert not reused, "a ticket three periods old must not resume"
