"""https:// upstreams (issue 16): the gateway's own TLS client (gateway/upstream.c) against
real TLS upstreams on loopback: Python's ssl module wrapping the recording upstream
(pcsupport.pyupstream), with a CA and certificates made here with python3-cryptography.

What passes: GET and POST through https, a large answer (records of 16 KiB, bytes left
inside OpenSSL), several requests on one TLS connection, a new connection resuming the
pool's session, an IP-address upstream checked against the certificate's IP names,
UPSTREAM_CA_FILE as the default CA. What is refused with 502 UPSTREAM_TLS, nothing
sent: another CA, a certificate for another name, an expired one, an upstream speaking
plain HTTP on its https port; a handshake that never ends is 504 within the route's
timeout_ms. At start: a missing CA file names UPSTREAM_CA_FILE or routes[i].ca_file."""

import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import pcsupport as G
import pcsupport as H
from pcsupport.pyupstream import PyUpstream

NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca, dns=(), ips=(), not_before=None, not_after=None):
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(_name((list(dns) + list(ips))[0]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - DAY).not_valid_after(not_after or NOW + 30 * DAY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def server_ctx(tmp, name, leaf):
    key, cert = leaf
    kp, cp = tmp / f"{name}.key", tmp / f"{name}.crt"
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    cp.write_bytes(pem(cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cp), str(kp))
    return ctx


class Loopback:
    """A listener on a free loopback port whose accepted connections go to handle(sock)
    on its one thread; stop() closes what handle kept in self.kept."""

    def __init__(self):
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.ls.settimeout(0.1)
        self.port = self.ls.getsockname()[1]
        self.kept = []
        self._stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self._stop:
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(5)
            try:
                self.handle(s)
            except OSError:
                pass

    def handle(self, s):
        raise NotImplementedError

    def stop(self):
        self._stop = True
        self.t.join(timeout=5)
        for s in self.kept:
            s.close()
        self.ls.close()


class PlainSpeaker(Loopback):
    """An upstream that speaks plain HTTP whatever it is sent: the first bytes get a
    400 answer and the connection is closed (what an HTTP server does with a TLS hello)."""

    def __init__(self):
        self.got = []
        super().__init__()

    def handle(self, s):
        with s:
            self.got.append(s.recv(65536))
            s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                      b"Connection: close\r\n\r\n")


class SplitRecords(Loopback):
    """A TLS upstream whose answer comes in two TLS records: a small one (the start of
    the head), then one of exactly 16 KiB holding the rest and the whole body. The
    gateway's buffer then has less room than the second record, so its last bytes stay
    inside OpenSSL with nothing more on the socket: only SSL_pending says they are
    there. The connection stays open (keep-alive), so a missed end would hang."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.body = b""
        super().__init__()

    def handle(self, raw):
        self.kept.append(raw)
        s = self.ctx.wrap_socket(raw, server_side=True)
        self.kept.append(s)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return
            buf += chunk
        first = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Split: "
        rest_head = b"yes\r\nContent-Length: %05d\r\n\r\n"
        n = 16384 - len(rest_head % 0)
        self.body = (b"split-records-" + b"y" * n)[:n]
        s.sendall(first)
        time.sleep(0.05)        # two records, not one
        s.sendall(rest_head % n + self.body)


class Silent(Loopback):
    """Accepts connections and never says a word (a hung TLS handshake)."""

    def handle(self, s):
        self.kept.append(s)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("upstream-tls")
    ca, other_ca = make_ca("Portcullis test CA"), make_ca("Another CA")
    (tmp / "ca.pem").write_bytes(pem(ca[1]))
    (tmp / "other-ca.pem").write_bytes(pem(other_ca[1]))
    return {
        "dir": tmp, "ca": str(tmp / "ca.pem"), "other_ca": str(tmp / "other-ca.pem"),
        "good": server_ctx(tmp, "good", make_leaf(ca, dns=["localhost"], ips=["127.0.0.1"])),
        "dns_only": server_ctx(tmp, "dns-only", make_leaf(ca, dns=["localhost"])),
        "other_name": server_ctx(tmp, "other-name", make_leaf(ca, dns=["other.test"])),
        "expired": server_ctx(tmp, "expired", make_leaf(ca, dns=["localhost"],
                                                      not_before=NOW - 10 * DAY,
                                                      not_after=NOW - DAY)),
        "other_ca_leaf": server_ctx(tmp, "other-ca-leaf",
                                    make_leaf(other_ca, dns=["localhost"])),
    }


@pytest.fixture(scope="module")
def ups(pki):
    made = {
        "good": PyUpstream(tls=pki["good"], host="localhost"),
        "reuse": PyUpstream(tls=pki["good"], host="localhost"),
        "close": PyUpstream(tls=pki["good"], host="localhost",
                            answer_lines=b"Connection: close\r\n"),
        "ip": PyUpstream(tls=pki["good"], host="127.0.0.1"),
        "ip_dns_only": PyUpstream(tls=pki["dns_only"], host="127.0.0.1"),
        "other_name": PyUpstream(tls=pki["other_name"], host="localhost"),
        "expired": PyUpstream(tls=pki["expired"], host="localhost"),
        "other_ca": PyUpstream(tls=pki["other_ca_leaf"], host="localhost"),
        "plain": PlainSpeaker(),
        "silent": Silent(),
        "split": SplitRecords(pki["good"]),
    }
    yield made
    for u in made.values():
        u.stop()


@pytest.fixture(scope="module")
def tgw(pg, redis_srv, live_authsvc, secret, gw_dir, pki, ups):
    u = ups
    routes = {"routes": [
        {"prefix": "/good/", "upstream": u["good"].url + "/base", "auth": ["none"],
         "strip_prefix": True},
        {"prefix": "/reuse/", "upstream": u["reuse"].url, "auth": ["none"]},
        {"prefix": "/close/", "upstream": u["close"].url, "auth": ["none"]},
        {"prefix": "/ip/", "upstream": u["ip"].url, "auth": ["none"]},
        {"prefix": "/ipdns/", "upstream": u["ip_dns_only"].url, "auth": ["none"]},
        {"prefix": "/othername/", "upstream": u["other_name"].url, "auth": ["none"]},
        {"prefix": "/expired/", "upstream": u["expired"].url, "auth": ["none"]},
        # signed by another CA than UPSTREAM_CA_FILE's ...
        {"prefix": "/otherca/", "upstream": u["other_ca"].url, "auth": ["none"]},
        # ... which this route's own ca_file names
        {"prefix": "/otherca-ok/", "upstream": u["other_ca"].url, "auth": ["none"],
         "ca_file": pki["other_ca"]},
        # the good upstream with the other CA only: refused
        {"prefix": "/wrongca/", "upstream": u["good"].url, "auth": ["none"],
         "ca_file": pki["other_ca"]},
        {"prefix": "/plain/", "upstream": "https://localhost:%d" % u["plain"].port,
         "auth": ["none"]},
        {"prefix": "/split/", "upstream": "https://localhost:%d" % u["split"].port,
         "auth": ["none"], "timeout_ms": 3000},
        {"prefix": "/silent/", "upstream": "https://localhost:%d" % u["silent"].port,
         "auth": ["none"], "timeout_ms": 400},
    ]}
    env = G.gw_base_env(pg, redis_srv, secret, UPSTREAM_CA_FILE=pki["ca"], GATEWAY_WORKERS=1)
    g = G.Gateway(env, routes, workdir=gw_dir, name="gateway-upstream-tls")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _log_has(g, *needles, timeout=5):
    def look():
        text = g.log_path.read_text(errors="replace") + g.stderr_path.read_text(errors="replace")
        return [ln for ln in text.splitlines() if all(n in ln for n in needles)]
    return H.wait_until(look, timeout, what=f"a log line with {needles}")


def _refused(g, path, up, *why):
    """path answers 502 UPSTREAM_TLS, the log says why, and the upstream read nothing."""
    r = g.http.get(g.url(path), timeout=10)
    assert r.status_code == 502, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == "UPSTREAM_TLS", body
    rid = r.headers["X-Request-Id"]
    lines = _log_has(g, "TLS handshake failed", rid, *why)
    assert lines, why
    # the diagnostic names its request the way the access line does
    assert json.loads(lines[0])["req_id"] == rid, lines[0]
    if up is not None:
        assert up.saw(path.strip("/").split("/")[-1]) == [], "a request went out"
    return lines[0]


def test_get_through_https(tgw, ups):
    r = tgw.http.get(tgw.url("/good/hello-get?x=1"), timeout=10)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["path"] == "/base/hello-get" and e["query"] == "x=1"
    assert e["headers"]["host"] == "localhost:%d" % ups["good"].port
    assert e["headers"]["x-forwarded-proto"] == "http"   # the client's side, not ours
    assert ups["good"].handshakes >= 1


def test_post_with_body_through_https(tgw, ups):
    body = json.dumps({"n": 1, "s": "post-through-tls"})
    r = tgw.http.post(tgw.url("/good/hello-post"), data=body,
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["method"] == "POST" and e["body"] == body
    assert e["headers"]["content-length"] == str(len(body))


def test_large_answer_through_https(tgw, ups):
    """An answer of many TLS records (each up to 16 KiB, more than one read's room at
    times): every byte arrives, none is stuck inside OpenSSL."""
    body = "big-tls-" + "x" * 600_000
    r = tgw.http.post(tgw.url("/good/big"), data=body, timeout=20)
    assert r.status_code == 200, r.status_code
    assert r.json()["body"] == body


def test_bytes_left_inside_openssl_are_read(tgw, ups):
    t0 = time.monotonic()
    r = tgw.http.get(tgw.url("/split/answer"), timeout=10)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    assert r.headers["X-Split"] == "yes"
    assert r.content == ups["split"].body
    assert time.monotonic() - t0 < 2, "the end of the answer waited for a timeout"


def test_one_tls_connection_carries_many_requests(tgw, ups):
    up = ups["reuse"]
    for i in range(6):
        r = tgw.http.get(tgw.url(f"/reuse/n{i}"), timeout=10)
        assert r.status_code == 200, r.text
    assert len(up.saw("/reuse/n")) == 6
    assert up.conns == 1 and up.handshakes == 1, (up.conns, up.handshakes)
    assert {e["conn"] for e in up.seen} == {1}


def test_new_connections_resume_the_session(tgw, ups):
    """An upstream that closes after each answer: every request needs a new connection,
    and each after the first resumes the session the pool kept."""
    up = ups["close"]
    for i in range(3):
        r = tgw.http.get(tgw.url(f"/close/c{i}"), timeout=10)
        assert r.status_code == 200, r.text
    H.wait_until(lambda: up.handshakes == 3, 5, what="three handshakes")
    assert up.conns == 3
    assert up.resumed == 2, f"{up.resumed} of 3 handshakes resumed"


def test_ip_upstream_checks_ip_names(tgw, ups):
    r = tgw.http.get(tgw.url("/ip/by-address"), timeout=10)
    assert r.status_code == 200, r.text
    # a certificate naming localhost only is not one for 127.0.0.1
    _refused(tgw, "/ipdns/ip-not-named", ups["ip_dns_only"], "certificate verify failed",
             "mismatch")


def test_route_ca_file_replaces_the_default(tgw, ups):
    r = tgw.http.get(tgw.url("/otherca-ok/own-ca"), timeout=10)
    assert r.status_code == 200, r.text


def test_wrong_ca_is_502(tgw, ups):
    _refused(tgw, "/otherca/not-our-ca", ups["other_ca"], "certificate verify failed",
             "unable to get local issuer certificate")
    _refused(tgw, "/wrongca/good-cert-other-ca", ups["good"], "certificate verify failed")


def test_certificate_for_another_name_is_502(tgw, ups):
    _refused(tgw, "/othername/for-other", ups["other_name"], "certificate verify failed",
             "hostname mismatch")


def test_expired_certificate_is_502(tgw, ups):
    _refused(tgw, "/expired/too-old", ups["expired"], "certificate verify failed",
             "certificate has expired")


def test_plain_http_on_the_https_port_is_502(tgw, ups):
    sp = ups["plain"]
    _refused(tgw, "/plain/no-tls-here", None)
    # what it read was a TLS hello, never the request
    assert sp.got and sp.got[-1][:1] == b"\x16", sp.got[-1][:16]
    assert all(b"no-tls-here" not in g for g in sp.got)


def test_hung_handshake_is_504_within_timeout_ms(tgw, ups):
    t0 = time.monotonic()
    r = tgw.http.get(tgw.url("/silent/hang"), timeout=10)
    took = time.monotonic() - t0
    assert r.status_code == 504 and r.json()["code"] == "UPSTREAM_TIMEOUT_SECONDS", r.text
    assert 0.3 < took < 1.5, took


def test_still_fine_after_the_refusals(tgw, ups):
    """Failed handshakes leave nothing behind: the good routes still work."""
    for p in ("/good/after", "/reuse/after", "/ip/after"):
        assert tgw.http.get(tgw.url(p), timeout=10).status_code == 200, p


def _run(env, timeout=10):
    return H.run_bounded([H.binary("gateway")], env=G.gateway_env(env), timeout=timeout)


def _env(tmp_path, routes, **kw):
    rf = tmp_path / "routes.json"
    rf.write_text(json.dumps(routes))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "c" * 40,
           "REDIS_URL": "redis://127.0.0.1:1", "GATEWAY_LISTEN": f"127.0.0.1:{H.free_port()}",
           "GATEWAY_ROUTES": str(rf)}
    env.update(kw)
    return env


ROUTE = {"prefix": "/a/", "upstream": "https://localhost:9", "auth": ["none"]}


@pytest.mark.parametrize("case", ["env", "route", "not-pem", "bad-host", "ca-on-http"])
def test_start_up_errors(tmp_path, case):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = str(tmp_path / "missing-ca.pem")
    env, routes, want = {}, {"routes": [dict(ROUTE)]}, ""
    if case == "env":
        env, want = {"UPSTREAM_CA_FILE": missing}, f"UPSTREAM_CA_FILE: cannot read {missing}"
    elif case == "route":
        routes["routes"][0]["ca_file"] = missing
        want = f"routes[0].ca_file: cannot read {missing}"
    elif case == "not-pem":
        routes["routes"][0]["ca_file"] = str(junk)
        want = f"routes[0].ca_file: {junk} is no PEM bundle"
    elif case == "bad-host":
        routes["routes"][0]["upstream"] = "https://bad_host.test"
        want = "routes[0].upstream: upstream \"https://bad_host.test\": bad host"
    else:
        routes["routes"][0].update(upstream="http://localhost:9", ca_file=str(junk))
        want = "routes[0].ca_file: only for an https:// upstream"
    r = _run(_env(tmp_path, routes, **env))
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, (r.returncode, err)
    assert want in err, err
