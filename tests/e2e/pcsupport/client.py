"""HTTP clients and answer checks: ApiClient (authsvc / Better Auth's API, as a browser
or app would call it), User, the error-body assertions of both daemons, header
helpers and a raw HTTP client for requests `requests` would not send as they are.

Every password sent and every token/cookie received is registered as sensitive
(checks.SENSITIVE) for the session-end log check."""

from __future__ import annotations

import base64
import os
import socket
import time
import urllib.parse

from .betterauth import cookie_value, set_cookies
from .checks import AUTHSVC_CALLS, sensitive

_MISSING = object()
_counter = [0]


def unique_email(tag: str = "u") -> str:
    _counter[0] += 1
    return f"{tag}{_counter[0]}-{os.urandom(5).hex()}@example.com"


def new_password(tag: str = "Pw") -> str:
    return sensitive(f"{tag}-{base64.urlsafe_b64encode(os.urandom(12)).decode()}")


class User:
    """A signed-up or signed-in user: unpacks as (email, password, token, cookie)."""

    def __init__(self, email, password, token, cookie, *, cookie_name, cookie_value,
                 signed, id=None, name=None, response=None, body=None):
        self.email, self.password, self.token, self.cookie = email, password, token, cookie
        self.cookie_name, self.cookie_value, self.signed = cookie_name, cookie_value, signed
        self.id, self.name, self.response, self.body = id, name, response, body

    def __iter__(self):
        return iter((self.email, self.password, self.token, self.cookie))

    def __repr__(self):
        return f"User({self.email!r}, id={self.id!r})"


class ApiClient:
    """Talks to one authsvc.  Never stores cookies by itself: pass cookie=/bearer=.

    Every password sent and every token/cookie received is added to SENSITIVE."""

    PASSWORD_FIELDS = ("password", "currentPassword", "newPassword")

    def __init__(self, svc, *, secret: str | None = None, origin: str | None = None,
                 xff: str | None = None, timeout: float = 20.0):
        import http.cookiejar
        import requests
        if isinstance(svc, str):
            self.base_url, env = svc.rstrip("/"), {}
        else:
            self.base_url, env = svc.base_url, svc.env
        self.secret = secret or env.get("BETTER_AUTH_SECRET")
        baseurl = env.get("BETTER_AUTH_URL", self.base_url)
        u = urllib.parse.urlsplit(baseurl)
        self.origin = origin or f"{u.scheme}://{u.netloc}"
        secure = u.scheme == "https"
        self.cookie_name = ("__Secure-" if secure else "") + "better-auth.session_token"
        self.dont_remember_name = ("__Secure-" if secure else "") + "better-auth.dont_remember"
        self.xff = xff
        self.timeout = timeout
        self.http = requests.Session()
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self.http.trust_env = False

    def close(self):
        self.http.close()

    # -- low level
    def request(self, method: str, path: str, *, json=_MISSING, data=None, headers=None,
                cookie=None, bearer=None, origin=_MISSING, xff=_MISSING, params=None,
                timeout=None, allow_redirects=False):
        """path is absolute ('/health') or relative to /api/auth ('sign-in/email')."""
        url = self.base_url + (path if path.startswith("/") else "/api/auth/" + path)
        h = {}
        if isinstance(cookie, User):
            cookie = cookie.cookie
        if cookie:
            h["Cookie"] = cookie
        if bearer is not None:
            h["Authorization"] = bearer if " " in bearer else f"Bearer {bearer}"
        if origin is _MISSING:
            origin = self.origin if cookie else None
        if origin is not None:
            h["Origin"] = origin
        if xff is _MISSING:
            xff = self.xff
        if xff is not None:
            h["X-Forwarded-For"] = xff
        h.update(headers or {})
        kw = {}
        if json is not _MISSING:
            if isinstance(json, dict):
                for f in self.PASSWORD_FIELDS:
                    if isinstance(json.get(f), str):
                        sensitive(json[f])
            kw["json"] = json
        elif data is not None:
            kw["data"] = data
        AUTHSVC_CALLS[0] += 1
        r = self.http.request(method, url, headers=h, params=params,
                              timeout=timeout or self.timeout, allow_redirects=allow_redirects, **kw)
        self._remember(r)
        return r

    def _remember(self, r):
        sensitive(r.headers.get("set-auth-token"))
        for name, (value, _attrs) in set_cookies(r).items():
            sensitive(value)
            sensitive(urllib.parse.unquote(value))
        if "json" in (r.headers.get("content-type") or ""):
            try:
                body = r.json()
            except ValueError:
                return
            if isinstance(body, dict):
                if isinstance(body.get("token"), str):
                    sensitive(body["token"])
                s = body.get("session")
                if isinstance(s, dict) and isinstance(s.get("token"), str):
                    sensitive(s["token"])
            elif isinstance(body, list):
                for s in body:
                    if isinstance(s, dict) and isinstance(s.get("token"), str):
                        sensitive(s["token"])

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=_MISSING, **kw):
        if json is _MISSING and "data" not in kw:
            json = {}
        return self.request("POST", path, json=json, **kw)

    # -- credentials
    def cookie_header(self, token: str) -> str:
        return f"{self.cookie_name}={cookie_value(self.secret, token)}"

    def _user_from(self, r, email, password) -> User:
        body = r.json()
        token = body.get("token")
        cookies = set_cookies(r)
        cv = cookies.get(self.cookie_name, (None, None))[0]
        if cv is None and token:
            cv = cookie_value(self.secret, token)
        return User(email, password, token, f"{self.cookie_name}={cv}" if cv else None,
                    cookie_name=self.cookie_name, cookie_value=cv,
                    signed=urllib.parse.unquote(cv) if cv else None,
                    id=(body.get("user") or {}).get("id"), name=(body.get("user") or {}).get("name"),
                    response=r, body=body)

    def sign_up(self, email=None, password=None, name=None, *, expect=200, **extra) -> User:
        email = email or unique_email()
        password = password if password is not None else new_password()
        body = {"name": name if name is not None else "Test User", "email": email, "password": password}
        body.update(extra)
        r = self.post("sign-up/email", body)
        if expect is not None:
            assert r.status_code == expect, f"sign-up {email}: {r.status_code} {r.text[:500]}"
        return self._user_from(r, email, password) if r.status_code == 200 else r

    def sign_in(self, email, password, *, expect=200, **extra) -> User:
        body = {"email": email, "password": password}
        body.update(extra)
        r = self.post("sign-in/email", body)
        if expect is not None:
            assert r.status_code == expect, f"sign-in {email}: {r.status_code} {r.text[:500]}"
        return self._user_from(r, email, password) if r.status_code == 200 else r

    def get_session(self, user=None, **kw):
        if user is not None and "cookie" not in kw and "bearer" not in kw:
            kw["cookie"] = user.cookie
        return self.get("get-session", **kw)

    def session_of(self, user=None, **kw):
        """get-session's JSON body (None for `null`); asserts 200."""
        r = self.get_session(user, **kw)
        assert r.status_code == 200, f"get-session: {r.status_code} {r.text[:300]}"
        return r.json()


# ---------------------------------------------------------------------------
# Assertion helpers shared by the test modules

ISO_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$"


def assert_error(resp, status, *codes):
    """resp has the given status and a JSON error body {message, code in codes}."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    ctype = resp.headers.get("content-type", "")
    assert "application/json" in ctype, f"error content-type {ctype!r}: {resp.text[:200]}"
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("message"), str) and body["message"], body
    if codes:
        assert body.get("code") in codes, f"code {body.get('code')!r} not in {codes}: {body}"
    return body


def assert_4xx_json(resp, *statuses):
    """A clear client error: 4xx (one of statuses if given) with a JSON {message/code}."""
    if statuses:
        assert resp.status_code in statuses, f"expected {statuses}, got {resp.status_code}: {resp.text[:300]}"
    else:
        assert 400 <= resp.status_code < 500, f"expected 4xx, got {resp.status_code}: {resp.text[:300]}"
    assert "application/json" in resp.headers.get("content-type", ""), resp.headers
    body = resp.json()
    assert isinstance(body, dict) and (body.get("code") or body.get("message")), body
    return body


def cookie(u) -> dict:
    return {"Cookie": u.cookie}


def same_origin(g) -> dict:
    """The Origin a page of the gateway's own site sends (the origin check of
    cookie-authenticated unsafe methods accepts it)."""
    return {"Origin": f"http://127.0.0.1:{g.port}"}


def bearer(value: str) -> dict:
    return {"Authorization": f"Bearer {value}"}


def echo(resp) -> dict:
    """The demo upstream's JSON echo of what it received."""
    assert resp.status_code == 200, f"{resp.status_code}: {resp.text[:400]}"
    body = resp.json()
    assert set(body) >= {"method", "path", "query", "headers", "body"}, body
    return body


def assert_gw_error(resp, status, *codes):
    """A gateway error: status, JSON {message, code, requestId}, X-Request-Id header."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:400]}"
    assert "application/json" in resp.headers.get("content-type", ""), \
        f"content-type {resp.headers.get('content-type')!r}: {resp.text[:200]}"
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("requestId"), str) and body["requestId"], body
    assert resp.headers.get("x-request-id") == body["requestId"], (resp.headers, body)
    if codes:
        assert body["code"] in codes, body
    return body


def poll_until_status(fn, status: int, timeout: float, interval: float = 0.005):
    """Calls fn() until it answers `status`; returns (elapsed seconds, statuses seen)."""
    seen = []
    t0 = time.monotonic()
    while True:
        r = fn()
        seen.append(r.status_code)
        if r.status_code == status:
            return time.monotonic() - t0, seen
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"no {status} within {timeout}s; saw {seen[-20:]} "
                                 f"(last body {r.text[:200]})")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# raw HTTP (for requests that `requests` would not send as is)


def raw_http(port: int, data: bytes, timeout: float = 10.0):
    """Sends data on a new connection and reads one response.
    Returns (status:int|None, headers:dict(lower), body:bytes, raw:bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buf = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                hdrs = _parse_headers(head)
                n = hdrs.get("content-length")
                if n is not None and len(rest) >= int(n):
                    break
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    if not buf.startswith(b"HTTP/"):
        return None, {}, b"", buf
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, _parse_headers(head), body, buf


def _parse_headers(head: bytes) -> dict:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        out[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return out


def quote_path(s: str) -> str:
    return urllib.parse.quote(s, safe="/")
