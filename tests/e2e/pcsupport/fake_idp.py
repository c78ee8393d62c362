"""A fake OpenID Connect provider on loopback, for the OIDC sign-in tests.

A real HTTP server (http.server in a thread) with the endpoints authsvc talks
to, checking what a real provider checks:

    GET  /.well-known/openid-configuration   discovery (issuer = base URL + path)
    GET  /authorize    response_type=code, client_id, redirect_uri, state,
                       code_challenge + S256 -> 302 redirect_uri?code&state
    POST /token        grant_type, code (single use), redirect_uri, client
                       credentials (post or basic), PKCE: S256(code_verifier)
                       must equal the challenge -> tokens + RS256 ID token;
                       grant_type=refresh_token with a refresh token it
                       issued -> a new access token (and, with
                       `refresh_rotates`, a new refresh token)
    GET  /userinfo     Bearer access token -> claims
    GET  /jwks         the public keys

The "signed-in user" of the next /authorize is set with `login(...)`.
Faults on demand: `delay[endpoint] = seconds`, `fail[endpoint] = status`,
`sign_with_foreign_key`, `id_token_overrides`, `omit_email_in_id_token`.
Every request is recorded in `requests` (path, form, headers) for asserts.

    idp = FakeIdP(issuer_path="/oidc"); idp.start()
    idp.login(sub="123", email="a@acme.test", hd="acme.test")
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

import pcsupport as H


def _rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class FakeIdP:
    def __init__(self, *, client_id="client-" + secrets.token_hex(4), client_secret=None,
                 issuer_path="", port=None):
        self.client_id = client_id
        self.client_secret = client_secret or H.sensitive("csecret-" + secrets.token_hex(16))
        self.port = port or H.free_port()
        self.base = f"http://127.0.0.1:{self.port}{issuer_path}"
        self.issuer = self.base
        self.path_prefix = issuer_path
        self.keys = {"k1-" + secrets.token_hex(3): _rsa_key()}
        self.active_kid = next(iter(self.keys))
        self.foreign_key = _rsa_key()
        self.user = None                # claims of the next /authorize
        self.codes = {}                 # code -> dict
        self.access = {}                # access token -> claims
        self.refresh = {}               # refresh token -> claims
        self.refresh_rotates = False
        self.requests = []              # (method, path, form, headers)
        self.delay = {}                 # endpoint -> seconds
        self.fail = {}                  # endpoint -> HTTP status
        self.sign_with_foreign_key = False
        self.id_token_overrides = {}
        self.omit_email_in_id_token = False
        self.scope = "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"
        self.expires_in = 3599
        self._server = None
        self._thread = None
        self.lock = threading.Lock()

    # -- configuration helpers
    def url(self, endpoint: str) -> str:
        return f"{self.base}/{endpoint}"

    def google_env(self) -> dict:
        return {"GOOGLE_CLIENT_ID": self.client_id, "GOOGLE_CLIENT_SECRET": self.client_secret,
                "GOOGLE_AUTH_URL": self.url("authorize"), "GOOGLE_TOKEN_URL": self.url("token"),
                "GOOGLE_USERINFO_URL": self.url("userinfo"), "GOOGLE_JWKS_URL": self.url("jwks"),
                "GOOGLE_ISSUER": self.issuer}

    def oidc_env(self, name: str) -> dict:
        n = name.upper().replace("-", "_")
        return {f"OIDC_{n}_ISSUER": self.issuer, f"OIDC_{n}_CLIENT_ID": self.client_id,
                f"OIDC_{n}_CLIENT_SECRET": self.client_secret}

    def login(self, *, sub=None, email, email_verified=True, hd=None, name="Alice Example",
              picture="https://img.example.test/a.png", **extra):
        c = {"sub": sub or str(secrets.randbelow(10**20)), "email": email,
             "email_verified": email_verified, "name": name, "picture": picture}
        if hd is not None:
            c["hd"] = hd
        c.update(extra)
        self.user = c
        return c

    def rotate_key(self):
        kid = "k2-" + secrets.token_hex(3)
        self.keys[kid] = _rsa_key()
        self.active_kid = kid
        return kid

    def jwks(self) -> dict:
        keys = []
        for kid, k in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key()))
            jwk.update({"kid": kid, "alg": "RS256", "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}

    def id_token(self, claims: dict, nonce=None) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.client_id, "azp": self.client_id,
                   "iat": now, "exp": now + 3600, **claims}
        if nonce:
            payload["nonce"] = nonce
        if self.omit_email_in_id_token:
            payload.pop("email", None)
            payload.pop("email_verified", None)
        payload.update(self.id_token_overrides)
        key = self.foreign_key if self.sign_with_foreign_key else self.keys[self.active_kid]
        tok = jwt.encode(payload, key, algorithm="RS256", headers={"kid": self.active_kid})
        return H.sensitive(tok)

    def seen(self, endpoint: str):
        return [r for r in self.requests if r[1] == f"{self.path_prefix}/{endpoint}"]

    # -- server
    def start(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _send(self, status, body=None, headers=None):
                data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method):
                u = urllib.parse.urlsplit(self.path)
                path = u.path
                q = dict(urllib.parse.parse_qsl(u.query))
                form = {}
                if method == "POST":
                    n = int(self.headers.get("Content-Length") or 0)
                    form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                with idp.lock:
                    idp.requests.append((method, path, form, dict(self.headers)))
                ep = path[len(idp.path_prefix) + 1:] if path.startswith(idp.path_prefix + "/") else path
                if ep in idp.delay:
                    time.sleep(idp.delay[ep])
                if ep in idp.fail:
                    return self._send(idp.fail[ep], {"error": "temporarily_unavailable"})
                if ep == ".well-known/openid-configuration":
                    return self._send(200, {
                        "issuer": idp.issuer, "authorization_endpoint": idp.url("authorize"),
                        "token_endpoint": idp.url("token"), "userinfo_endpoint": idp.url("userinfo"),
                        "jwks_uri": idp.url("jwks"), "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                        "id_token_signing_alg_values_supported": ["RS256"]})
                if ep == "jwks":
                    return self._send(200, idp.jwks())
                if ep == "authorize" and method == "GET":
                    return self._authorize(q)
                if ep == "token" and method == "POST":
                    return self._token(form)
                if ep == "userinfo":
                    return self._userinfo()
                return self._send(404, {"error": "not_found"})

            def _authorize(self, q):
                bad = None
                if q.get("response_type") != "code":
                    bad = "unsupported_response_type"
                elif q.get("client_id") != idp.client_id:
                    bad = "unauthorized_client"
                elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                    bad = "invalid_request"
                elif "openid" not in q.get("scope", "").split():
                    bad = "invalid_scope"
                if bad or not q.get("redirect_uri"):
                    return self._send(400, {"error": bad or "invalid_request"})
                code = H.sensitive("code-" + secrets.token_urlsafe(24))
                with idp.lock:
                    idp.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                                       "claims": dict(idp.user or {}), "used": False,
                                       "nonce": q.get("nonce"), "scope": q.get("scope")}
                sep = "&" if "?" in q["redirect_uri"] else "?"
                loc = q["redirect_uri"] + sep + urllib.parse.urlencode({"code": code, "state": q.get("state", "")})
                return self._send(302, None, {"Location": loc})

            def _token(self, form):
                cid, csec = form.get("client_id"), form.get("client_secret")
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    cid, _, csec = base64.b64decode(auth[6:]).decode().partition(":")
                if cid != idp.client_id or csec != idp.client_secret:
                    return self._send(401, {"error": "invalid_client"})
                if form.get("grant_type") == "refresh_token":
                    return self._refresh(form)
                if form.get("grant_type") != "authorization_code":
                    return self._send(400, {"error": "unsupported_grant_type"})
                with idp.lock:
                    c = idp.codes.get(form.get("code", ""))
                    if c is None or c["used"]:
                        return self._send(400, {"error": "invalid_grant", "error_description": "bad code"})
                    c["used"] = True
                if form.get("redirect_uri") != c["redirect_uri"]:
                    return self._send(400, {"error": "invalid_grant", "error_description": "redirect_uri"})
                if s256(form.get("code_verifier", "")) != c["challenge"]:
                    return self._send(400, {"error": "invalid_grant", "error_description": "PKCE"})
                at = H.sensitive("at-" + secrets.token_urlsafe(24))
                rt = H.sensitive("rt-" + secrets.token_urlsafe(24))
                with idp.lock:
                    idp.access[at] = c["claims"]
                    idp.refresh[rt] = c["claims"]
                return self._send(200, {"access_token": at, "token_type": "Bearer",
                                        "expires_in": idp.expires_in, "refresh_token": rt,
                                        "scope": idp.scope, "id_token": idp.id_token(c["claims"], c["nonce"])})

            def _refresh(self, form):
                with idp.lock:
                    claims = idp.refresh.get(form.get("refresh_token", ""))
                if claims is None:
                    return self._send(400, {"error": "invalid_grant"})
                at = H.sensitive("at-" + secrets.token_urlsafe(24))
                out = {"access_token": at, "token_type": "Bearer", "expires_in": idp.expires_in}
                with idp.lock:
                    idp.access[at] = claims
                    if idp.refresh_rotates:
                        rt = H.sensitive("rt-" + secrets.token_urlsafe(24))
                        idp.refresh[rt] = claims
                        out["refresh_token"] = rt
                return self._send(200, out)

            def _userinfo(self):
                auth = self.headers.get("Authorization", "")
                claims = idp.access.get(auth[7:]) if auth.startswith("Bearer ") else None
                if claims is None:
                    return self._send(401, {"error": "invalid_token"})
                return self._send(200, claims)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
