"""Better Auth's formats, computed the way Better Auth computes them (compat doc §2,
§3, §6): token hashes, cookie signatures, scrypt password hashes, ids, API keys,
Set-Cookie parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import string
import urllib.parse

from .checks import sensitive

DEFAULT_REDIS_PREFIX = "pc:"
DEFAULT_REVOCATION_CHANNEL = "pc:revoked"
SESSION_COOKIE = "better-auth.session_token"
EXPIRES_IN = 604800
UPDATE_AGE = 86400
KEY_PREFIX = "pc_"                   # the API key prefix of the e2e suite's keys


def b64url_nopad(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    """base64url-nopad(SHA-256(token)): the Redis key suffix and the revocation message."""
    return b64url_nopad(hashlib.sha256(token.encode()).digest())


def session_key(token: str, prefix: str = "pc:") -> str:
    return f"{prefix}s:{token_hash(token)}"


def sign(secret: str, value: str) -> str:
    """base64std(HMAC-SHA256(secret, value)) with padding (44 chars)."""
    return base64.b64encode(hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()).decode()


def signed_value(secret: str, token: str) -> str:
    """token.sig, as in set-auth-token (decoded)."""
    return f"{token}.{sign(secret, token)}"


def cookie_value(secret: str, token: str) -> str:
    """encodeURIComponent(token.sig), as in the Set-Cookie header."""
    return urllib.parse.quote(signed_value(secret, token), safe="-_.!~*'()")


def scrypt_hash(password: str, salt_hex: str | None = None) -> str:
    """Better Auth's password hash: '<salt hex 32>:<key hex 128>'."""
    import unicodedata
    salt_hex = salt_hex or os.urandom(16).hex()
    key = hashlib.scrypt(unicodedata.normalize("NFKC", password).encode(), salt=salt_hex.encode(),
                         n=16384, r=16, p=1, dklen=64, maxmem=128 * 1024 * 1024)
    return f"{salt_hex}:{key.hex()}"


def scrypt_verify(password: str, stored: str) -> bool:
    salt_hex, key_hex = stored.split(":", 1)
    return hmac.compare_digest(scrypt_hash(password, salt_hex), f"{salt_hex}:{key_hex}")


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def generate_id(n: int = 32) -> str:
    """Better Auth's generateId: n chars of [A-Za-z0-9] with rejection sampling."""
    out = []
    while len(out) < n:
        for b in os.urandom(n * 2):
            if b < 248:
                out.append(_ALNUM[b % 62])
                if len(out) == n:
                    break
    return "".join(out)


def parse_set_cookie(header: str):
    """'name=value; Max-Age=1; HttpOnly' -> (name, value, {attr_lower: value or True})."""
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        if not p:
            continue
        k, eq, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip() if eq else True
    return name.strip(), value.strip(), attrs


def set_cookie_headers(resp) -> list:
    """All Set-Cookie header values of a requests.Response (not comma-joined)."""
    raw = getattr(resp, "raw", None)
    headers = getattr(raw, "headers", None)
    if headers is not None and hasattr(headers, "getlist"):
        return list(headers.getlist("Set-Cookie"))
    if headers is not None and hasattr(headers, "get_all"):
        return list(headers.get_all("Set-Cookie") or [])
    v = resp.headers.get("Set-Cookie")
    return [v] if v else []


def set_cookies(resp) -> dict:
    """{name: (value, attrs)} from a response's Set-Cookie headers (last one wins)."""
    out = {}
    for h in set_cookie_headers(resp):
        name, value, attrs = parse_set_cookie(h)
        out[name] = (value, attrs)
    return out


def random_letters(n: int = 64) -> str:
    rnd = random.SystemRandom()
    return "".join(rnd.choice(string.ascii_letters) for _ in range(n))


def new_api_key(prefix: str = KEY_PREFIX) -> str:
    """Better Auth's default key shape: prefix + 64 letters."""
    return sensitive(prefix + random_letters(64))


def unsigned_cookie(secret, token: str) -> str:
    return f"{SESSION_COOKIE}={cookie_value(secret, token)}"


def jwt_like() -> str:
    """A JWT-shaped bearer (three base64url parts starting eyJ)."""
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return enc({"alg": "EdDSA", "typ": "JWT"}) + "." + enc({"sub": "u1", "exp": 4102444800}) + "." + \
        base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode()
