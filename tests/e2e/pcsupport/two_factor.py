"""The twoFactor plugin's client side for authsvc/test_two_factor.py and
test_interop_two_factor.py: an authenticator app (pyotp, an implementation
independent of both servers) and the plugin's cookies and flows as a browser
goes through them."""

from __future__ import annotations

import time

import pyotp

from .betterauth import set_cookies
from .checks import sensitive

S = "better-auth.session_token"
TF = "better-auth.two_factor"
TRUST = "better-auth.trust_device"


def cookies_of(r) -> dict:
    """Set-Cookie of r as {name: value}; an expired cookie is ''."""
    out = {}
    for name, (value, attrs) in set_cookies(r).items():
        expired = str(attrs.get("max-age", attrs.get("Max-Age", ""))) == "0"
        out[name] = "" if expired else sensitive(value)
    return out


class Totp:
    """The authenticator app: pyotp over a TOTP URI, never reusing a period (authsvc
    accepts a code once per period)."""

    def __init__(self, uri):
        self.otp = pyotp.parse_uri(uri)
        self.used = set()

    def fresh_code(self) -> str:
        now = int(time.time()) // 30
        for c in (now, now - 1, now + 1):
            if c not in self.used:
                self.used.add(c)
                return sensitive(self.otp.at(c * 30))
        raise AssertionError("no unused period left in the window")

    def peek_code(self) -> str:
        """A valid code for a request that is to be refused before the code counts."""
        return sensitive(self.otp.now())

    def code_of(self, counter) -> str:
        return sensitive(self.otp.at(counter * 30))


def enable(c, user):
    """enable + the first verify-totp on c: 2FA on. Returns (Totp, backup codes,
    the new session's cookie header)."""
    r = c.post("two-factor/enable", {"password": user.password}, cookie=user.cookie)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "totp"
    codes = [sensitive(x) for x in body["backupCodes"]]
    app = Totp(sensitive(body["totpURI"]))
    r = c.post("two-factor/verify-totp", {"code": app.fresh_code()}, cookie=user.cookie)
    assert r.status_code == 200, r.text
    new = cookies_of(r).get(S)
    assert new, "verify-totp that turns 2FA on issues a new session cookie"
    return app, codes, f"{S}={new}"


def challenge(c, user, cookie=None, methods=("totp",), **extra):
    """sign-in/email of a 2FA user on c: the redirect answer offering methods; returns
    the two_factor cookie header."""
    body = {"email": user.email, "password": user.password}
    body.update(extra)
    r = c.post("sign-in/email", body, cookie=cookie)
    assert r.status_code == 200, r.text
    assert r.json() == {"twoFactorRedirect": True, "twoFactorMethods": list(methods)}, r.text
    got = cookies_of(r)
    assert got.get(S) == "" and TF in got and got[TF], (got, r.headers)
    # Better Auth's bearer hook still sends set-auth-token with the token of the
    # session the plugin deleted; authsvc makes none, so sends none
    dead = r.headers.get("set-auth-token")
    if dead is not None:
        sensitive(dead)
        assert c.session_of(bearer=dead) is None
    return f"{TF}={got[TF]}"
