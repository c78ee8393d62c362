"""Issue 5, authsvc side: JWTs (GET /api/auth/token, set-auth-jwt on get-session), the
JWKS (/api/auth/jwks, /.well-known/jwks.json), the keys in Better Auth's "jwks" table
(sealed private key, rotation, what is published) and revocation by session id.

Every token is verified with PyJWT against the JWKS fetched over HTTP, never against
a key the test knows.  The sealed private key is opened with XChaCha20-Poly1305 built
here from the `cryptography` package (HChaCha20 in Python + IETF ChaCha20-Poly1305):
python3-nacl is not installed; the Poly1305 tag makes a wrong implementation fail.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import time
import urllib.parse

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import pcsupport as H
from pcsupport import assert_4xx_json

USER_FIELDS = ("id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt")
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
KID_RE = re.compile(r"^[A-Za-z0-9]{32}$")
ALG_KTY = {"ES256": "EC", "RS256": "RSA", "EdDSA": "OKP"}


# ---------------------------------------------------------------------------
# helpers

def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token: str):
    """(header dict, payload dict) of a compact JWS, without verifying it."""
    parts = token.split(".")
    assert len(parts) == 3, f"not a compact JWS: {token[:80]!r}"
    return json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))


def http():
    s = requests.Session()
    s.trust_env = False
    return s


def fetch_jwks(svc, path="/api/auth/jwks"):
    with http() as s:
        r = s.get(svc.url(path), timeout=10)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("keys"), list), body
    return r, body


def verify(svc, token, *, audience=None, issuer=None, jwks_path="/api/auth/jwks"):
    """Verify token with PyJWT against svc's JWKS fetched over HTTP; returns the claims."""
    header = pyjwt.get_unverified_header(token)
    _, body = fetch_jwks(svc, jwks_path)
    matches = [k for k in body["keys"] if k.get("kid") == header.get("kid")]
    assert len(matches) == 1, f"kid {header.get('kid')!r} published {len(matches)} times: {body}"
    key = pyjwt.PyJWK(matches[0])
    return pyjwt.decode(token, key.key, algorithms=[header["alg"]],
                        audience=audience or svc.origin, issuer=issuer or svc.origin,
                        options={"require": ["exp", "iat", "sub", "iss", "aud"]})


def session_id(conn_or_db, token):
    if hasattr(conn_or_db, "scalar"):
        return conn_or_db.scalar('select id from "session" where token = %s', (token,))
    with conn_or_db.cursor() as cur:
        cur.execute('select id from "session" where token = %s', (token,))
        row = cur.fetchone()
        return row[0] if row else None


def dbname_of(svc) -> str:
    return urllib.parse.urlsplit(svc.env["DATABASE_URL"]).path.lstrip("/")


def rows(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def execute(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.rowcount


def get_token(c, user, **kw):
    if "cookie" not in kw and "bearer" not in kw:
        kw["cookie"] = user.cookie
    r = c.get("token", **kw)
    assert r.status_code == 200, f"GET /api/auth/token: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"token"} and isinstance(body["token"], str), body
    return H.sensitive(body["token"])


# -- XChaCha20-Poly1305 (Better Auth's symmetricEncrypt), from cryptography's ChaCha20Poly1305

def _rotl(v, n):
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key),
         *struct.unpack("<4I", nonce16)]

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 16)  # noqa: E702
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 12)  # noqa: E702
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = _rotl(s[d] ^ s[a], 8)   # noqa: E702
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = _rotl(s[b] ^ s[c], 7)   # noqa: E702
    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)   # noqa: E702
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)   # noqa: E702
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xchacha_open(secret: str, hexdata: str) -> bytes:
    """Better Auth's symmetricDecrypt: hex(nonce24 || ciphertext || tag16) under SHA-256(secret)."""
    import hashlib
    raw = bytes.fromhex(hexdata)
    key = hashlib.sha256(secret.encode()).digest()
    nonce, ct = raw[:24], raw[24:]
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\0\0\0\0" + nonce[16:], ct, None)


def xchacha_seal(secret: str, plain: bytes) -> str:
    import hashlib
    import os
    key = hashlib.sha256(secret.encode()).digest()
    nonce = os.urandom(24)
    sub = hchacha20(key, nonce[:16])
    return (nonce + ChaCha20Poly1305(sub).encrypt(b"\0\0\0\0" + nonce[16:], plain, None)).hex()


def test_hchacha20_known_answer():
    """draft-irtf-cfrg-xchacha-03 §2.2.1: the helper the sealed-key tests rely on."""
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce).hex() == \
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"


def open_private_jwk(secret, stored: str) -> dict:
    assert stored.startswith('"') and stored.endswith('"'), \
        f"privateKey is not a JSON-quoted string: {stored[:40]!r}..."
    hexdata = json.loads(stored)
    assert re.fullmatch(r"[0-9a-f]+", hexdata), "privateKey is not lower-case hex"
    return json.loads(xchacha_open(secret, hexdata))


def public_from_private(jwk: dict) -> dict:
    """The public members derived from the private JWK's own secret material."""
    kty = jwk["kty"]
    if kty == "EC":
        d = int.from_bytes(b64url_decode(jwk["d"]), "big")
        pub = ec.derive_private_key(d, ec.SECP256R1()).public_key().public_numbers()
        return {"x": H.b64url_nopad(pub.x.to_bytes(32, "big")),
                "y": H.b64url_nopad(pub.y.to_bytes(32, "big"))}
    if kty == "OKP":
        k = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))
        raw = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"x": H.b64url_nopad(raw)}
    if kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        p = int.from_bytes(b64url_decode(jwk["p"]), "big")
        q = int.from_bytes(b64url_decode(jwk["q"]), "big")
        assert p * q == n, "p*q != n in the private JWK"
        return {"n": jwk["n"], "e": jwk["e"]}
    raise AssertionError(f"unexpected kty {kty}")


def check_published_key(k: dict, alg: str | None = None):
    assert KID_RE.match(k.get("kid", "")) or k.get("kid"), k
    for m in PRIVATE_MEMBERS:
        assert m not in k, f"private member {m!r} published: {k}"
    kty = k.get("kty")
    want = {"EC": {"kid", "alg", "kty", "crv", "x", "y"}, "RSA": {"kid", "alg", "kty", "n", "e"},
            "OKP": {"kid", "alg", "kty", "crv", "x"}}
    assert kty in want, k
    assert want[kty] <= set(k), f"{kty} key lacks {want[kty] - set(k)}: {k}"
    if alg:
        assert k["alg"] == alg and ALG_KTY[alg] == kty, k
    if kty == "EC":
        assert k["crv"] == "P-256" and len(b64url_decode(k["x"])) == 32, k
    if kty == "OKP":
        assert k["crv"] == "Ed25519" and len(b64url_decode(k["x"])) == 32, k
    # it must load as a key
    pyjwt.PyJWK(k)


def kids(body):
    return [k["kid"] for k in body["keys"]]


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture
def jc(authsvc):
    c = H.ApiClient(authsvc)
    yield c
    c.close()


@pytest.fixture
def juser(jc):
    return jc.sign_up(name="JWT User")


@pytest.fixture
def fresh(authsvc_factory, pg):
    """make(env) -> (svc, conn): an authsvc on a database of its own (own jwks table)."""
    conns = []

    def make(env=None, name="authsvc-jwt"):
        svc = authsvc_factory(env, fresh_db=True, name=name)
        c = pg.connect(dbname_of(svc))
        conns.append(c)
        return svc, c
    yield make
    for c in conns:
        c.close()


# ---------------------------------------------------------------------------
# GET /api/auth/token

def test_token_needs_a_session(jc):
    r = jc.get("token")
    ref = jc.get("list-sessions")
    body = assert_4xx_json(r, 401)
    assert body == ref.json() or body.get("code") == ref.json().get("code"), (body, ref.json())
    assert r.status_code == ref.status_code


def test_token_with_a_bad_cookie_or_bearer_is_401(jc, juser, secret):
    forged = f"{H.SESSION_COOKIE}={H.cookie_value(secret + 'x', juser.token)}"
    assert_4xx_json(jc.get("token", cookie=forged), 401)
    assert_4xx_json(jc.get("token", bearer=H.generate_id(32)), 401)


@pytest.mark.parametrize("how", ["cookie", "bearer_signed", "bearer_raw"])
def test_token_claims_and_signature(authsvc, jc, juser, db, how):
    kw = {"cookie": {"cookie": juser.cookie}, "bearer_signed": {"bearer": juser.signed, "origin": None},
          "bearer_raw": {"bearer": juser.token, "origin": None}}[how]
    t0 = int(time.time())
    token = get_token(jc, juser, **kw)
    t1 = int(time.time())
    header, _ = jwt_parts(token)
    assert header.get("alg") == "ES256", header                   # JWT_ALG default
    assert header.get("typ") == "JWT", header
    assert KID_RE.match(header.get("kid", "")), header
    assert db.scalar('select count(*) from "jwks" where id = %s', (header["kid"],)) == 1, \
        "kid is not a jwks row id"
    claims = verify(authsvc, token)
    assert claims["iss"] == authsvc.origin and claims["aud"] == authsvc.origin, claims
    assert claims["sub"] == juser.id, claims
    assert claims["sid"] == session_id(db, juser.token), claims
    assert t0 - 1 <= claims["iat"] <= t1 + 1, (t0, claims["iat"], t1)
    assert claims["exp"] == claims["iat"] + 900, claims                 # JWT_EXPIRES_SECONDS default
    sess = jc.session_of(juser)
    for f in USER_FIELDS:
        assert f in claims, f"claim {f!r} missing: {claims}"
        assert claims[f] == sess["user"][f], f"claim {f}: {claims[f]!r} != get-session {sess['user'][f]!r}"


def test_token_verifies_with_pyjwkclient(authsvc, jc, juser):
    token = get_token(jc, juser)
    # PyJWKClient fetches over HTTP itself (urllib); loopback, so no proxy involved
    import urllib.request
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))
    client = pyjwt.PyJWKClient(authsvc.url("/.well-known/jwks.json"))
    key = client.get_signing_key_from_jwt(token)
    claims = pyjwt.decode(token, key.key, algorithms=["ES256"], audience=authsvc.origin,
                          issuer=authsvc.origin)
    assert claims["sub"] == juser.id


def test_token_signature_covers_the_payload(authsvc, jc, juser):
    token = get_token(jc, juser)
    h, p, s = token.split(".")
    claims = json.loads(b64url_decode(p))
    claims["sub"] = "someone-else"
    forged = h + "." + H.b64url_nopad(json.dumps(claims).encode()) + "." + s
    with pytest.raises(pyjwt.InvalidSignatureError):
        verify(authsvc, forged)


def test_tokens_per_session(authsvc, jc, juser, db):
    other = jc.sign_in(juser.email, juser.password)
    a, b = verify(authsvc, get_token(jc, juser)), verify(authsvc, get_token(jc, other))
    assert a["sub"] == b["sub"] == juser.id
    assert a["sid"] != b["sid"]
    assert b["sid"] == session_id(db, other.token)


def test_token_after_sign_out_is_401(jc, juser):
    get_token(jc, juser)
    assert jc.post("sign-out", cookie=juser.cookie).status_code == 200
    assert_4xx_json(jc.get("token", cookie=juser.cookie), 401)


# ---------------------------------------------------------------------------
# set-auth-jwt on get-session

def test_get_session_sets_auth_jwt(authsvc, jc, juser, db):
    r = jc.get_session(juser)
    assert r.status_code == 200 and r.json(), r.text
    tok = r.headers.get("set-auth-jwt")
    assert tok, f"no set-auth-jwt header: {dict(r.headers)}"
    H.sensitive(tok)
    expose = [x.strip().lower() for x in r.headers.get("Access-Control-Expose-Headers", "").split(",")]
    assert "set-auth-jwt" in expose, r.headers
    claims = verify(authsvc, tok)
    assert claims["sub"] == juser.id
    assert claims["sid"] == session_id(db, juser.token) == r.json()["session"]["id"]
    # with a bearer too
    r = jc.get_session(bearer=juser.signed, origin=None)
    assert verify(authsvc, r.headers["set-auth-jwt"])["sub"] == juser.id


def test_get_session_without_session_has_no_jwt(jc, secret, juser):
    for kw in ({}, {"cookie": f"{H.SESSION_COOKIE}={H.cookie_value(secret, H.generate_id(32))}"},
               {"bearer": "nope" + H.generate_id(28)}):
        r = jc.get("get-session", **kw)
        assert r.status_code == 200 and r.json() is None, r.text
        assert "set-auth-jwt" not in r.headers, r.headers
        assert "set-auth-jwt" not in r.headers.get("Access-Control-Expose-Headers", "").lower()


# ---------------------------------------------------------------------------
# the JWKS and the jwks table

@pytest.mark.parametrize("path", ["/api/auth/jwks", "/.well-known/jwks.json"])
def test_jwks_document(authsvc, db, path):
    r, body = fetch_jwks(authsvc, path)
    assert "application/json" in r.headers.get("content-type", ""), r.headers
    cc = r.headers.get("Cache-Control", "")
    assert re.search(r"(^|[ ,])max-age=300($|[ ,])", cc), f"Cache-Control {cc!r}"
    assert body["keys"], body
    for k in body["keys"]:
        check_published_key(k)
    assert len(set(kids(body))) == len(body["keys"]), "a kid published twice"
    table = {r["id"]: r for r in db.dicts('select * from "jwks"')}
    for k in body["keys"]:
        assert k["kid"] in table, f"published kid {k['kid']} is not a jwks row"
        pub = json.loads(table[k["kid"]]["publicKey"])
        for m, v in pub.items():
            if m not in PRIVATE_MEMBERS:
                assert k.get(m) == v, f"member {m}: {k.get(m)!r} != stored {v!r}"
    assert sorted(kids(body)) == sorted(kids(fetch_jwks(authsvc, "/api/auth/jwks")[1])), \
        "/.well-known/jwks.json and /api/auth/jwks differ"


def test_jwks_row_format(authsvc, jc, juser, db, secret):
    kid = jwt_parts(get_token(jc, juser))[0]["kid"]
    row = db.dicts('select * from "jwks" where id = %s', (kid,))[0]
    assert KID_RE.match(row["id"]), row["id"]
    assert row["alg"] == "ES256" and row["crv"] == "P-256", row
    pub = json.loads(row["publicKey"])
    assert pub.get("kty") == "EC" and pub.get("crv") == "P-256", pub
    assert "kid" not in pub and "alg" not in pub, f"publicKey has kid/alg: {pub}"
    assert not set(pub) & set(PRIVATE_MEMBERS), pub
    assert row["createdAt"] is not None and row["expiresAt"] is not None, row
    days = (row["expiresAt"] - row["createdAt"]).total_seconds() / 86400
    assert abs(days - 30) < 0.01, f"expiresAt - createdAt = {days} days, want 30 (JWT_ROTATE_DAYS)"
    assert row["privateKey"] != row["publicKey"] and '"d"' not in row["privateKey"], \
        "private key stored in the clear"


def test_stored_private_key_opens_with_the_secret(authsvc, jc, juser, db, secret):
    kid = jwt_parts(get_token(jc, juser))[0]["kid"]
    row = db.dicts('select * from "jwks" where id = %s', (kid,))[0]
    priv = open_private_jwk(secret, row["privateKey"])
    assert priv.get("kty") == "EC" and priv.get("crv") == "P-256" and priv.get("d"), \
        f"decrypted private JWK members: {sorted(priv)}"
    pub = json.loads(row["publicKey"])
    derived = public_from_private(priv)
    assert derived == {"x": pub["x"], "y": pub["y"]}, "private key does not match the public key"
    with pytest.raises(Exception):
        xchacha_open(secret + "-wrong", json.loads(row["privateKey"]))


# ---------------------------------------------------------------------------
# configuration: JWT_EXPIRES_SECONDS, JWT_ISSUER, JWT_AUDIENCE, JWKS_MAX_AGE_SECONDS, JWT_ROTATE_DAYS

def test_configured_issuer_audience_lifetime(fresh, client_for):
    svc, conn = fresh({"JWT_EXPIRES_SECONDS": "120", "JWT_ISSUER": "https://issuer.example.test",
                       "JWT_AUDIENCE": "svc-audience", "JWKS_MAX_AGE_SECONDS": "42",
                       "JWT_ROTATE_DAYS": "7"}, name="authsvc-jwtcfg")
    c = client_for(svc)
    u = c.sign_up(name="Cfg User")
    tok = get_token(c, u)
    claims = verify(svc, tok, audience="svc-audience", issuer="https://issuer.example.test")
    assert claims["exp"] - claims["iat"] == 120, claims
    r, _ = fetch_jwks(svc)
    assert re.search(r"(^|[ ,])max-age=42($|[ ,])", r.headers.get("Cache-Control", "")), r.headers
    row = rows(conn, 'select * from "jwks"')
    assert len(row) == 1, row
    days = (row[0]["expiresAt"] - row[0]["createdAt"]).total_seconds() / 86400
    assert abs(days - 7) < 0.01, f"JWT_ROTATE_DAYS=7 gave {days} days"


def test_audience_defaults_to_the_issuer(fresh, client_for):
    svc, _ = fresh({"JWT_ISSUER": "https://only-issuer.example.test"}, name="authsvc-jwtiss")
    c = client_for(svc)
    u = c.sign_up(name="Iss User")
    claims = verify(svc, get_token(c, u), audience="https://only-issuer.example.test",
                    issuer="https://only-issuer.example.test")
    assert claims["aud"] == "https://only-issuer.example.test"


def test_issuer_defaults_to_origin_of_base_url(fresh, client_for):
    svc, _ = fresh({"BETTER_AUTH_URL": "http://127.0.0.1:1/some/base/path"}, name="authsvc-jwtorigin")
    c = client_for(svc)
    u = c.sign_up(name="Origin User")
    claims = verify(svc, get_token(c, u))
    assert claims["iss"] == "http://127.0.0.1:1" == claims["aud"], claims


@pytest.mark.parametrize("alg", ["RS256", "EdDSA"])
def test_other_algorithms(fresh, client_for, secret, alg):
    svc, conn = fresh({"JWT_ALG": alg}, name=f"authsvc-{alg.lower()}")
    c = client_for(svc)
    u = c.sign_up(name=f"{alg} User")
    tok = get_token(c, u)
    header, _ = jwt_parts(tok)
    assert header["alg"] == alg and header.get("typ") == "JWT", header
    claims = verify(svc, tok)
    assert claims["sub"] == u.id
    _, body = fetch_jwks(svc)
    published = {k["kid"]: k for k in body["keys"]}
    assert header["kid"] in published, body
    check_published_key(published[header["kid"]], alg)
    row = rows(conn, 'select * from "jwks" where id = %s', (header["kid"],))[0]
    assert row["alg"] == alg, row
    assert row["crv"] == ({"RS256": None, "EdDSA": "Ed25519"}[alg]), f"crv column {row['crv']!r}"
    pub = json.loads(row["publicKey"])
    assert "kid" not in pub and "alg" not in pub and not set(pub) & set(PRIVATE_MEMBERS), pub
    priv = open_private_jwk(secret, row["privateKey"])
    derived = public_from_private(priv)
    assert all(pub[m] == v for m, v in derived.items()), "private key does not match the public key"
    if alg == "RS256":
        assert len(b64url_decode(pub["n"])) * 8 >= 2048, "RSA key shorter than 2048 bits"
    # get-session's header is signed with the same algorithm
    r = c.get_session(u)
    assert jwt_parts(r.headers["set-auth-jwt"])[0]["alg"] == alg


def test_bad_jwt_alg_is_refused_at_start():
    r = H.run_authsvc(["--help"], env={})
    assert b"JWT_ALG" in (r.stdout + r.stderr), "JWT_ALG not in --help"
    r = H.run_authsvc([], env={"JWT_ALG": "HS256", "BETTER_AUTH_SECRET": "x" * 40,
                               "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}, timeout=20)
    assert r.returncode != 0
    assert b"JWT_ALG" in (r.stdout + r.stderr), (r.stdout + r.stderr)[-500:]


# ---------------------------------------------------------------------------
# rotation and what is published

def test_signing_key_created_at_start(fresh, authsvc_factory, client_for):
    """At start (before any token is asked for) the table holds a current key of JWT_ALG;
    another authsvc on the same database with another JWT_ALG adds one of its own and
    both stay published."""
    svc, conn = fresh(name="authsvc-jwtstart")
    first = rows(conn, 'select * from "jwks"')
    assert len(first) == 1, f"jwks rows right after start: {len(first)}"
    assert first[0]["alg"] == "ES256" and KID_RE.match(first[0]["id"]), first[0]
    # a restart keeps it
    svc.restart()
    assert [r["id"] for r in rows(conn, 'select id from "jwks"')] == [first[0]["id"]]
    ed = authsvc_factory({"JWT_ALG": "EdDSA"}, database=dbname_of(svc), migrate=False,
                         name="authsvc-jwtstart-ed")
    table = {r["id"]: r for r in rows(conn, 'select * from "jwks"')}
    assert len(table) == 2, table.keys()
    ed_kid = next(k for k, r in table.items() if k != first[0]["id"])
    assert table[ed_kid]["alg"] == "EdDSA" and table[ed_kid]["crv"] == "Ed25519", table[ed_kid]
    c = client_for(ed)
    u = c.sign_up(name="Ed Start User")
    tok = get_token(c, u)
    assert jwt_parts(tok)[0]["kid"] == ed_kid
    svc.restart()       # (it re-reads the table every 10 s; the live re-read is tested below)
    for s in (svc, ed):
        assert set(kids(fetch_jwks(s)[1])) == set(table), f"{s.name} publishes {kids(fetch_jwks(s)[1])}"
    # ES256 instance still signs with its own key
    c1 = client_for(svc)
    u1 = c1.sign_up(name="Es Start User")
    assert jwt_parts(get_token(c1, u1))[0]["kid"] == first[0]["id"]


def test_rotation_keeps_old_tokens_verifiable(fresh, client_for):
    svc, conn = fresh({"JWT_EXPIRES_SECONDS": "900"}, name="authsvc-rotate")
    c = client_for(svc)
    u = c.sign_up(name="Rotate User")
    old_tok = get_token(c, u)
    old_kid = jwt_parts(old_tok)[0]["kid"]
    assert kids(fetch_jwks(svc)[1]) == [old_kid]

    # retired 60 s ago: its tokens (900 s) may still be alive -> still published
    assert execute(conn, 'update "jwks" set "expiresAt" = now() - interval \'60 seconds\' '
                         'where id = %s', (old_kid,)) == 1
    svc.restart()
    new_tok = get_token(c, u)
    new_kid = jwt_parts(new_tok)[0]["kid"]
    assert new_kid != old_kid, "no new signing key after the current one expired"
    assert KID_RE.match(new_kid)
    table = {r["id"]: r for r in rows(conn, 'select * from "jwks"')}
    assert set(table) == {old_kid, new_kid}, table.keys()
    new = table[new_kid]
    assert new["alg"] == "ES256" and new["expiresAt"] is not None
    assert abs((new["expiresAt"] - new["createdAt"]).total_seconds() - 30 * 86400) < 60
    published = kids(fetch_jwks(svc)[1])
    assert set(published) == {old_kid, new_kid}, published
    assert verify(svc, old_tok)["sub"] == u.id, "old token no longer verifies"
    assert verify(svc, new_tok)["sub"] == u.id
    # a restart does not rotate again
    svc.restart()
    assert jwt_parts(get_token(c, u))[0]["kid"] == new_kid

    # retired longer ago than any token lives: no longer published
    execute(conn, 'update "jwks" set "expiresAt" = now() - interval \'960 seconds\' where id = %s',
            (old_kid,))
    svc.restart()
    published = kids(fetch_jwks(svc)[1])
    assert published == [new_kid], published
    assert set(kids(fetch_jwks(svc, "/.well-known/jwks.json")[1])) == {new_kid}
    assert jwt_parts(get_token(c, u))[0]["kid"] == new_kid


def test_rotation_in_the_database_is_seen_without_restart(fresh, client_for):
    """The table is re-read at most every 10 s: a key retired by SQL stops signing
    within ~10 s and a new one takes over, with no restart."""
    svc, conn = fresh(name="authsvc-rotate-live")
    c = client_for(svc)
    u = c.sign_up(name="Live Rotate User")
    old_kid = jwt_parts(get_token(c, u))[0]["kid"]
    execute(conn, 'update "jwks" set "expiresAt" = now() - interval \'1 second\' where id = %s',
            (old_kid,))
    t0 = time.monotonic()
    new_kid = H.wait_until(lambda: (lambda k: k if k != old_kid else None)(
        jwt_parts(get_token(c, u))[0]["kid"]), 12, interval=0.25, what="a new signing key")
    print(f"new signing key after {time.monotonic() - t0:.1f} s")
    assert set(kids(fetch_jwks(svc)[1])) >= {old_kid, new_kid}
    assert len(rows(conn, 'select id from "jwks"')) == 2


def _ba_row(conn, secret, *, expires_sql="NULL", leak_private=False):
    """A row as Better Auth's jwt plugin writes it (EdDSA default, JWK JSON, sealed key)."""
    k = ed25519.Ed25519PrivateKey.generate()
    x = H.b64url_nopad(k.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw))
    d = H.b64url_nopad(k.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption()))
    pub = {"crv": "Ed25519", "x": x, "kty": "OKP"}
    if leak_private:
        pub["d"] = d
    sealed = json.dumps(xchacha_seal(secret, json.dumps({"crv": "Ed25519", "d": d, "x": x,
                                                          "kty": "OKP"}).encode()))
    kid = H.generate_id(32)
    execute(conn, 'insert into "jwks" (id, "publicKey", "privateKey", "createdAt", "expiresAt", alg, crv) '
                  f'values (%s, %s, %s, now(), {expires_sql}, %s, %s)',
            (kid, json.dumps(pub), sealed, "EdDSA", "Ed25519"))
    return kid, k


def test_better_auth_rows_are_published(fresh, secret):
    svc, conn = fresh({"JWT_EXPIRES_SECONDS": "900"}, name="authsvc-barows")
    ours = kids(fetch_jwks(svc)[1])
    live, _ = _ba_row(conn, secret)                                        # expiresAt NULL
    leaky, _ = _ba_row(conn, secret, expires_sql="now() + interval '1 day'", leak_private=True)
    recent, _ = _ba_row(conn, secret, expires_sql="now() - interval '100 seconds'")
    gone, _ = _ba_row(conn, secret, expires_sql="now() - interval '1000 seconds'")
    svc.restart()       # (the <=10 s re-read is covered by the live rotation test)
    body = fetch_jwks(svc)[1]
    assert {live, leaky, recent} <= set(kids(body)), f"Better Auth rows not published: {kids(body)}"
    published = {k["kid"]: k for k in body["keys"]}
    assert gone not in published, "a key expired longer than JWT_EXPIRES_SECONDS ago is published"
    for kid in (live, leaky, recent):
        check_published_key(published[kid], "EdDSA")
    assert "d" not in published[leaky], "a private member stored in publicKey was published"
    assert set(ours) <= set(published), "our own key disappeared"
    # the row's own (public) member values are served as stored
    assert published[live]["crv"] == "Ed25519"


def test_ba_signed_token_verifies_against_our_jwks(fresh, secret):
    """A JWT signed by a Better Auth server sharing the database (its EdDSA row, no typ)
    verifies against our JWKS."""
    svc, conn = fresh(name="authsvc-bashare")
    kid, key = _ba_row(conn, secret)
    now = int(time.time())
    tok = pyjwt.encode({"sub": "ba-user", "iat": now, "exp": now + 900, "iss": svc.origin,
                        "aud": svc.origin}, key, algorithm="EdDSA", headers={"kid": kid})
    svc.restart()
    assert kid in kids(fetch_jwks(svc)[1]), "Better Auth's key not published"
    assert verify(svc, tok)["sub"] == "ba-user"


# ---------------------------------------------------------------------------
# revocation by session id

def _wait_message(revocations, want, timeout=3.0):
    seen = revocations.wait_for({want}, timeout=timeout)
    assert want in seen, f"{want!r} not published on the revocation channel; saw {sorted(seen)}"


def test_sign_out_publishes_session_id(jc, juser, db, revocations):
    sid = session_id(db, juser.token)
    get_token(jc, juser)
    assert jc.post("sign-out", cookie=juser.cookie).status_code == 200
    _wait_message(revocations, f"sid:{sid}")
    assert H.token_hash(juser.token) in {d for _, d in revocations.messages}, \
        "the existing token-hash message is gone"


def test_revoke_session_publishes_session_id(jc, juser, db, revocations):
    other = jc.sign_in(juser.email, juser.password)
    sid = session_id(db, other.token)
    r = jc.post("revoke-session", {"token": other.token}, cookie=juser.cookie)
    assert r.status_code == 200, r.text
    _wait_message(revocations, f"sid:{sid}")
    mine = session_id(db, juser.token)
    assert f"sid:{mine}" not in set(revocations.drain(0.3)), "the revoker's session was announced"


def test_sql_delete_publishes_session_id(jc, juser, db, revocations):
    sid = session_id(db, juser.token)
    assert db.execute('delete from "session" where id = %s', (sid,)) == 1
    _wait_message(revocations, f"sid:{sid}")
