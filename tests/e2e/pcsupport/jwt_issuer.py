"""A fake JWT issuer on loopback for the gateway's JWT tests (issue 5): an OpenID
discovery document and a JWKS whose keys the test controls, hit counters, an
optional delay and failure status; plus token-forging helpers (PyJWT + cryptography).

    iss = FakeIssuer()                     # http://127.0.0.1:<port>, iss = that URL
    kid = iss.add_key("ES256")             # published at once
    tok = iss.token(kid, sub="u1", aud=iss.issuer)
    iss.hits["/jwks"]                      # how often the JWKS was fetched
    iss.down(); iss.up()                   # nothing listens on the port, then it is back
    iss.stop()
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import pcsupport as H

_ALGOS = {
    "ES256": pyjwt.algorithms.ECAlgorithm,
    "RS256": pyjwt.algorithms.RSAAlgorithm,
    "EdDSA": pyjwt.algorithms.OKPAlgorithm,
}


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_private_key(alg: str):
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


def public_jwk(alg: str, private_key, kid: str) -> dict:
    jwk = json.loads(_ALGOS[alg].to_jwk(private_key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def compact(header: dict, payload: dict | str | bytes, signature: bytes = b"") -> str:
    """A compact JWS from raw parts (payload may be a non-object / raw bytes)."""
    if isinstance(payload, dict):
        payload = json.dumps(payload, separators=(",", ":"))
    return b64url(json.dumps(header, separators=(",", ":"))) + "." + b64url(payload) + "." + \
        b64url(signature)


def hs256(header: dict, payload: dict, secret: bytes) -> str:
    signing_input = b64url(json.dumps(header, separators=(",", ":"))) + "." + \
        b64url(json.dumps(payload, separators=(",", ":")))
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        iss: FakeIssuer = self.server.issuer_obj
        path = self.path.split("?", 1)[0]
        with iss.lock:
            iss.hits[path] = iss.hits.get(path, 0) + 1
            iss.last_hit[path] = time.monotonic()
            iss.in_flight += 1
            delay, status = iss.delay, iss.status
        try:
            if delay:
                time.sleep(delay)
            if path == "/.well-known/openid-configuration":
                body = {"issuer": iss.issuer, "jwks_uri": iss.url + "/jwks",
                        "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"]}
                headers = {}
            elif path == "/jwks":
                with iss.lock:
                    body = {"keys": [dict(iss.keys[k]["jwk"]) for k in iss.published]}
                headers = {"Cache-Control": f"public, max-age={iss.max_age}"} if iss.max_age is not None else {}
            else:
                status, body, headers = 404, {"error": "not found"}, {}
            data = json.dumps(body).encode()
            if iss.raw.get(path) is not None:    # a document the test wrote byte for byte
                data = iss.raw[path]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        finally:
            with iss.lock:
                iss.in_flight -= 1


class FakeIssuer:
    def __init__(self, *, issuer: str | None = None, max_age: int | None = 600,
                 up: bool = True):
        self.port = H.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = issuer or self.url
        self.jwks_uri = self.url + "/jwks"
        self.lock = threading.Lock()
        self.keys: dict = {}        # kid -> {"alg", "key", "jwk"}
        self.published: list = []   # kids in the JWKS, in order
        self.hits: dict = {}
        self.last_hit: dict = {}    # path -> time.monotonic() of the last request
        self.in_flight = 0
        self.delay = 0.0
        self.status = 200
        self.max_age = max_age
        self.raw: dict = {}         # path -> bytes served instead of the JSON document
        self.server = None
        self.thread = None
        if up:
            self.up()

    # up and down: while down nothing listens on the port (connections are refused)
    def up(self):
        assert self.server is None, "already up"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self.server.daemon_threads = True
        self.server.issuer_obj = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True, name=f"fake-issuer-{self.port}")
        self.thread.start()

    def down(self):
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.server = self.thread = None

    # keys
    def add_key(self, alg: str = "ES256", *, kid: str | None = None, publish: bool = True,
                private_key=None) -> str:
        kid = kid or H.generate_id(24)
        key = private_key or new_private_key(alg)
        with self.lock:
            self.keys[kid] = {"alg": alg, "key": key, "jwk": public_jwk(alg, key, kid)}
            if publish and kid not in self.published:
                self.published.append(kid)
        return kid

    def publish(self, kid: str):
        with self.lock:
            if kid not in self.published:
                self.published.append(kid)

    def unpublish(self, kid: str):
        with self.lock:
            if kid in self.published:
                self.published.remove(kid)

    def jwk(self, kid: str) -> dict:
        return dict(self.keys[kid]["jwk"])

    def jwks_hits(self) -> int:
        with self.lock:
            return self.hits.get("/jwks", 0)

    def wait_refetch_window(self, interval: float, slack: float = 0.3):
        """Sleep until `interval` seconds have passed since the JWKS was last fetched."""
        with self.lock:
            last = self.last_hit.get("/jwks")
        if last is not None:
            left = last + interval + slack - time.monotonic()
            if left > 0:
                time.sleep(left)

    # tokens
    def claims(self, **over) -> dict:
        now = int(time.time())
        c = {"iss": self.issuer, "aud": self.issuer, "sub": "fake-" + H.generate_id(12),
             "email": "fake@example.test", "iat": now, "exp": now + 300}
        for k, v in over.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def token(self, kid: str, *, alg: str | None = None, headers: dict | None = None,
              key=None, remember: bool = True, **claims) -> str:
        """A token signed with kid's key (or `key`), claims() with overrides (None drops one).
        remember=False keeps it out of the session-end leak scan (H.sensitive): for the
        hundreds of tokens a flood or a poll makes, alike but for their claims."""
        k = self.keys[kid]
        alg = alg or k["alg"]
        h = {"kid": kid, "typ": "JWT"}
        h.update(headers or {})
        tok = pyjwt.encode(self.claims(**claims), key or k["key"], algorithm=alg, headers=h)
        return H.sensitive(tok) if remember else tok

    def stop(self):
        self.down()


def sign_raw(alg: str, key, header_b64: str, payload_b64: str) -> str:
    """header_b64.payload_b64.signature with a real signature over whatever the parts hold."""
    algo = {"ES256": lambda: pyjwt.algorithms.ECAlgorithm(pyjwt.algorithms.ECAlgorithm.SHA256),
            "RS256": lambda: pyjwt.algorithms.RSAAlgorithm(pyjwt.algorithms.RSAAlgorithm.SHA256),
            "EdDSA": lambda: pyjwt.algorithms.OKPAlgorithm()}[alg]()
    si = f"{header_b64}.{payload_b64}"
    return si + "." + b64url(algo.sign(si.encode(), key))


def hmac_token(alg: str, header: dict, payload: dict, secret: bytes) -> str:
    """HS256/384/512 over header.payload with `secret` (e.g. a public key's bytes)."""
    h = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    si = b64url(json.dumps(header, separators=(",", ":"))) + "." + \
        b64url(json.dumps(payload, separators=(",", ":")))
    return si + "." + b64url(hmac.new(secret, si.encode(), h).digest())
