"""OCSP stapling on the gateway's TLS listener (issue 26), with real processes: a CA, leaf
and responder certificates made by the openssl CLI, responses signed by `openssl ocsp`
from an index.txt, and `openssl s_client -status` to see the staple (Python's ssl does
not show it).

The responder: a loopback HTTP server in this process that hands each POSTed request to
`openssl ocsp -index ... -rsigner ... -CA ... -reqin ... -respout ...` and answers with
what it wrote (OpenSSL 3.0's own `openssl ocsp -port` takes no address and would listen
on every interface). It runs its openssl per request, so an edit of index.txt (a
revocation) is seen by the next fetch; stopping it is a responder that is down.

Checked: a good certificate is stapled; a revoked one is not (at start, and after a
revocation and SIGHUP); a certificate without a responder URL, or whose file has no
issuer after it, gets none and TLS works; a responder that is down means no staple and
TLS works, and once it is up the staple comes with a retry; a response signed by
somebody else is not stapled; SIGHUP with new certificates moves the stapling to them;
SNI picks the staple of the certificate it picks; GATEWAY_TLS_OCSP=false asks nothing."""

import http.server
import os
import re
import shutil
import signal
import subprocess
import threading

import pytest
import requests

import pcsupport as G


def _run(*argv):
    return subprocess.run(list(argv), check=True, capture_output=True, timeout=30)


class Pki:
    """A CA in d, and leaf certificates it signs (with or without an OCSP URL)."""

    def __init__(self, d, ocsp_port):
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{ocsp_port}/"
        self.ca, self.ca_key = d / "ca.crt", d / "ca.key"
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30", "-subj", "/CN=test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(self.ca_key), "-out", str(self.ca))
        self.index = d / "index.txt"
        self.index.write_text("")
        # the responder: delegated by the CA, for OCSP signing only
        self.rsigner, self.rkey = self.sign("ocsp-responder", ext="extendedKeyUsage=OCSPSigning\n")

    def sign(self, cn, ext=None, ocsp=True, san="DNS:localhost,IP:127.0.0.1", issuer=None):
        """A certificate for cn signed by the CA (or by issuer=(cert, key)): (cert, key)."""
        cert, key, csr, extf = (self.d / f"{cn}.crt", self.d / f"{cn}.key",
                                self.d / f"{cn}.csr", self.d / f"{cn}.ext")
        if ext is None:
            ext = f"subjectAltName={san}\n" + (f"authorityInfoAccess=OCSP;URI:{self.url}\n"
                                               if ocsp else "")
        extf.write_text(ext)
        _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
             "-keyout", str(key), "-out", str(csr))
        ca, ca_key = issuer or (self.ca, self.ca_key)
        _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
             "-days", "30", "-extfile", str(extf), "-out", str(cert))
        return cert, key

    def chain(self, cert, name=None):
        """cert then the CA, in one PEM file (the chain the gateway serves)."""
        out = self.d / (name or f"{cert.stem}.chain.pem")
        out.write_text(cert.read_text() + self.ca.read_text())
        return out

    @staticmethod
    def serial(cert):
        out = _run("openssl", "x509", "-in", str(cert), "-noout", "-serial").stdout.decode()
        return out.strip().split("=", 1)[1]

    def record(self, cert, revoked=False):
        """cert in index.txt, valid or revoked (a line of its own, replaced)."""
        serial = self.serial(cert)
        lines = [ln for ln in self.index.read_text().splitlines() if f"\t{serial}\t" not in ln]
        subj = f"/CN={cert.stem}"
        lines.append(f"R\t300101000000Z\t250101000000Z\t{serial}\tunknown\t{subj}" if revoked
                     else f"V\t300101000000Z\t\t{serial}\tunknown\t{subj}")
        self.index.write_text("\n".join(lines) + "\n")


class Responder:
    """OCSP over HTTP on 127.0.0.1:port: each POST answered by `openssl ocsp` (signed by
    signer=(cert, key), the CA's responder by default; nextUpdate a minute on)."""

    def __init__(self, pki, port, signer=None):
        self.pki, self.port = pki, port
        self.signer = signer or (pki.rsigner, pki.rkey)
        self.requests = 0
        self.srv = None
        self.lock = threading.Lock()

    def start(self):
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                if not 0 < n <= 65536:
                    self.send_error(400)
                    return
                with me.lock:
                    me.requests += 1
                    k = me.requests
                req, resp = me.pki.d / f"req-{k}.der", me.pki.d / f"resp-{k}.der"
                req.write_bytes(self.rfile.read(n))
                r = subprocess.run(
                    ["openssl", "ocsp", "-index", str(me.pki.index), "-CA", str(me.pki.ca),
                     "-rsigner", str(me.signer[0]), "-rkey", str(me.signer[1]), "-nmin", "1",
                     "-reqin", str(req), "-respout", str(resp)],
                    capture_output=True, timeout=20)
                if r.returncode != 0 or not resp.exists():
                    self.send_error(500)
                    return
                body = resp.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self):
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki", G.free_port())


@pytest.fixture
def responder(pki):
    made = []

    def make(start=True, signer=None):
        r = Responder(pki, int(pki.url.rsplit(":", 1)[1].strip("/")), signer)
        made.append(r)
        return r.start() if start else r
    yield make
    for r in made:
        r.stop()


def _env(upstream, cert, key, **kw):
    return {"UPSTREAM_URL": upstream.url, "GATEWAY_TLS_CERT": str(cert),
            "GATEWAY_TLS_KEY": str(key), "no_proxy": "127.0.0.1", **kw}


def _leaf(pki, revoked=False):
    """localhost's certificate with the responder's URL, in the index: (chain, key)."""
    cert, key = pki.sign("localhost")
    pki.record(cert, revoked=revoked)
    return pki.chain(cert), key


def _gateway(factory, upstream, chain, key, name, **env):
    return factory(_env(upstream, chain, key, **env), route_table=False, name=name)


def _status(port, cafile, name="localhost"):
    """(handshake verified, stapled Cert Status or None) from openssl s_client -status."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-status",
                        "-servername", name, "-CAfile", str(cafile)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    out = r.stdout.decode(errors="replace")
    ok = "Verify return code: 0 (ok)" in out
    if "OCSP response: no response sent" in out:
        return ok, None
    if "OCSP Response Status: successful" not in out:
        return ok, "?" + out[-400:]
    m = re.search(r"Cert Status: (\w+)", out)
    return ok, m.group(1) if m else "?"


def _stapled(port, cafile, name="localhost", timeout=15.0):
    """Waits (bounded) for a good staple."""
    return G.wait_until(lambda: _status(port, cafile, name) == (True, "good"), timeout,
                        interval=0.2, what="a good OCSP staple")


def _log(g):
    return g.log_path.read_text(errors="replace") + g.stderr_text()


def test_good_certificate_is_stapled(gateway_factory, upstream, pki, responder, mod_user):
    chain, key = _leaf(pki)
    responder()
    g = _gateway(gateway_factory, upstream, chain, key, "gateway-ocsp-good")
    _stapled(g.port, pki.ca)
    assert f"OCSP response for {chain} stapled" in _log(g)
    st = g.stats()
    assert st["ocsp_fetches"] >= 1 and st["ocsp_fetch_errors"] == 0, st
    # requests go through as before
    with requests.Session() as s:
        s.trust_env = False
        r = s.get(f"https://localhost:{g.port}/x", headers=G.cookie(mod_user),
                  verify=str(pki.ca), timeout=5)
        assert r.status_code == 200, r.text
    assert "portcullis_gateway_ocsp_fetches_total" in g.metrics()


def test_revoked_certificate_is_not_stapled(gateway_factory, upstream, pki, responder):
    chain, key = _leaf(pki, revoked=True)
    resp = responder()
    g = _gateway(gateway_factory, upstream, chain, key, "gateway-ocsp-revoked")
    G.wait_until(lambda: f"no OCSP staple for {chain}: the responder says revoked" in _log(g),
                 10, what="the revoked answer")
    assert resp.requests >= 1
    assert _status(g.port, pki.ca) == (True, None)


def test_revocation_while_stapled_drops_the_staple_on_reload(gateway_factory, upstream, pki,
                                                              responder):
    chain, key = _leaf(pki)
    responder()
    g = _gateway(gateway_factory, upstream, chain, key, "gateway-ocsp-revoke-later")
    _stapled(g.port, pki.ca)
    pki.record(pki.d / "localhost.crt", revoked=True)
    g.proc.send_signal(signal.SIGHUP)       # fetches again at once
    G.wait_until(lambda: _status(g.port, pki.ca) == (True, None), 10,
                 interval=0.2, what="the staple to go")
    assert "the responder says revoked" in _log(g)


def test_no_responder_url_or_no_issuer_means_no_staple(gateway_factory, upstream, pki,
                                                       responder):
    resp = responder()
    plain, plain_key = pki.sign("localhost", ocsp=False)
    g = _gateway(gateway_factory, upstream, pki.chain(plain), plain_key, "gateway-ocsp-none")
    assert _status(g.port, pki.ca) == (True, None)
    assert g.stats()["ocsp_fetches"] == 0
    # a responder URL but the leaf alone in its file: stapling is off for it
    lone, lone_key = pki.sign("lone")
    pki.record(lone)
    lone_chain = pki.d / "lone-only.pem"
    shutil.copy(lone, lone_chain)
    g2 = _gateway(gateway_factory, upstream, lone_chain, lone_key, "gateway-ocsp-noissuer")
    assert f"OCSP stapling is off for {lone_chain}" in _log(g2)
    # TLS works (the client has the CA); nothing is asked, nothing stapled
    assert _status(g2.port, pki.ca) == (True, None)
    assert g2.stats()["ocsp_fetches"] == 0 and resp.requests == 0


def test_responder_down_then_up(gateway_factory, upstream, pki, responder):
    chain, key = _leaf(pki)
    resp = responder(start=False)
    g = _gateway(gateway_factory, upstream, chain, key, "gateway-ocsp-down",
                 GATEWAY_TLS_OCSP_REFRESH_SECONDS="1")
    G.wait_until(lambda: g.stats()["ocsp_fetch_errors"] >= 2, 10, what="failed fetches")
    assert f"no OCSP staple for {chain}: POST {pki.url}" in _log(g)
    assert _status(g.port, pki.ca) == (True, None), "TLS works without a staple"
    resp.start()
    _stapled(g.port, pki.ca, timeout=15)
    # down again: the response stays stapled until its nextUpdate (a minute)
    resp.stop()
    before = g.stats()["ocsp_fetch_errors"]
    G.wait_until(lambda: g.stats()["ocsp_fetch_errors"] > before, 10, what="a failed refetch")
    assert _status(g.port, pki.ca) == (True, "good")
    assert "not renewed" in _log(g)


def test_response_signed_by_another_is_not_stapled(gateway_factory, upstream, pki, responder,
                                                   tmp_path):
    chain, key = _leaf(pki)
    # a responder certificate of its own making, not the CA's
    rogue_cert, rogue_key = tmp_path / "rogue.crt", tmp_path / "rogue.key"
    _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", "/CN=rogue", "-addext",
         "extendedKeyUsage=OCSPSigning", "-keyout", str(rogue_key), "-out", str(rogue_cert))
    responder(signer=(rogue_cert, rogue_key))
    g = _gateway(gateway_factory, upstream, chain, key, "gateway-ocsp-rogue")
    G.wait_until(lambda: f"no OCSP staple for {chain}: the response does not verify" in _log(g),
                 10, what="the refused response")
    assert _status(g.port, pki.ca) == (True, None)


def test_reload_moves_stapling_to_the_new_certificates(gateway_factory, upstream, pki,
                                                       responder):
    a, a_key = pki.sign("localhost")
    pki.record(a)
    plain, plain_key = pki.sign("plain", ocsp=False)
    b, b_key = pki.sign("other", san="DNS:localhost,IP:127.0.0.1")
    pki.record(b)
    responder()
    live, live_key = pki.d / "live.pem", pki.d / "live.key"
    shutil.copy(pki.chain(a), live)
    shutil.copy(a_key, live_key)
    g = _gateway(gateway_factory, upstream, live, live_key, "gateway-ocsp-reload")
    _stapled(g.port, pki.ca)
    # a certificate without a responder: no staple after the reload
    shutil.copy(pki.chain(plain), live)
    shutil.copy(plain_key, live_key)
    assert g.reload()
    G.wait_until(lambda: _status(g.port, pki.ca, "plain") == (True, None), 10, interval=0.2,
                 what="no staple for the new certificate")
    # another with one: stapled again, for it
    shutil.copy(pki.chain(b), live)
    shutil.copy(b_key, live_key)
    assert g.reload()
    _stapled(g.port, pki.ca)
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{g.port}", "-status",
                          "-servername", "localhost"], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=15).stdout.decode()
    assert "CN = other" in out and "Cert Status: good" in out


def test_sni_picks_the_staple_of_its_certificate(gateway_factory, upstream, pki, responder):
    a, a_key = pki.sign("localhost")
    pki.record(a)
    b, b_key = pki.sign("api", ocsp=False, san="DNS:api.test")
    responder()
    env = _env(upstream, f"{pki.chain(a)},{pki.chain(b)}", f"{a_key},{b_key}")
    g = gateway_factory(env, route_table=False, name="gateway-ocsp-sni")
    _stapled(g.port, pki.ca)
    assert _status(g.port, pki.ca, "api.test") == (True, None)
    assert _status(g.port, pki.ca, "localhost") == (True, "good")


def test_stapling_off(gateway_factory, upstream, pki, responder):
    chain, key = _leaf(pki)
    resp = responder()
    g = _gateway(gateway_factory, upstream, chain, key, "gateway-ocsp-off",
                 GATEWAY_TLS_OCSP="false")
    assert _status(g.port, pki.ca) == (True, None)
    assert resp.requests == 0 and g.stats()["ocsp_fetches"] == 0
