"""Issue 5, gateway side: JWTs as credentials (issuers from the routes file or the
environment, JWKS caching and refetch, every refusal code, revocation by sid) and
JWTs the gateway hands to upstreams (upstream_jwt).

Tokens come from fake issuers on loopback (pcsupport.jwt_issuer.FakeIssuer: keys the test
controls, hit counters) signed with PyJWT + cryptography, and from our authsvc
(/api/auth/token).  Minted upstream JWTs are verified with PyJWT against authsvc's
/api/auth/jwks.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

import pcsupport as H
import pcsupport as G
from pcsupport import jwt_issuer as J

LEEWAY = 30            # JWT_LEEWAY_SECONDS default
KID_REFETCH = 1.0      # JWKS_KID_REFETCH_MS default: s between fetches unknown kids ask for
REVOKED_WITHIN = 0.3   # seconds after sign-out returned (contract: ~100 ms)
AUD_A = ["aud-a1", "aud-a2"]


def now():
    return int(time.time())


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def http():
    s = requests.Session()
    s.trust_env = False
    return s


# ---------------------------------------------------------------------------
# fixtures: fake issuers, one gateway for the module

@pytest.fixture(scope="module")
def issuers():
    made = {}
    made["a"] = J.FakeIssuer()                       # explicit jwks_uri, audiences AUD_A
    made["d"] = J.FakeIssuer()                       # discovered jwks_uri, default audience
    made["r"] = J.FakeIssuer()                       # new key after caching
    made["f"] = J.FakeIssuer()                       # unknown-kid flood
    made["s"] = J.FakeIssuer()                       # slow JWKS
    made["m"] = J.FakeIssuer(max_age=5)              # short max-age
    made["a"].add_key("ES256", kid="a-es256")
    made["a"].add_key("RS256", kid="a-rs256")
    made["a"].add_key("EdDSA", kid="a-eddsa")
    for n in "drfsm":
        made[n].add_key("ES256", kid=f"{n}-es256")
    try:
        yield made
    finally:
        for i in made.values():
            i.stop()


@pytest.fixture(scope="module")
def jroutes(upstream, issuers, live_authsvc):
    up = upstream.url
    a, d = issuers["a"], issuers["d"]
    return {
        "jwt_issuers": [
            {"issuer": a.issuer, "jwks_uri": a.jwks_uri, "audiences": AUD_A},
            {"issuer": d.issuer},
            {"issuer": live_authsvc.origin, "jwks_uri": live_authsvc.api("/jwks")},
            *({"issuer": issuers[n].issuer, "jwks_uri": issuers[n].jwks_uri} for n in "rfsm"),
        ],
        "routes": [
            {"prefix": "/j/", "upstream": up, "auth": ["jwt"]},
            {"prefix": "/mj/", "upstream": up, "auth": ["session", "jwt", "api_key"]},
            {"prefix": "/s/", "upstream": up, "auth": ["session"]},
            {"prefix": "/k/", "upstream": up, "auth": ["api_key"]},
            {"prefix": "/pub/", "upstream": up, "auth": ["none"]},
            {"prefix": "/ua/", "upstream": up, "auth": ["session", "api_key", "jwt"],
             "upstream_jwt": "authorization"},
            {"prefix": "/ux/", "upstream": up, "auth": ["session", "api_key", "jwt"],
             "upstream_jwt": "x-auth-jwt"},
        ]}


@pytest.fixture(scope="module")
def jgw(pg, redis_srv, live_authsvc, main_db_url, secret, jroutes, gw_dir):
    env = G.gw_base_env(pg, redis_srv, secret)
    env["BETTER_AUTH_URL"] = live_authsvc.base_url
    g = G.Gateway(env, jroutes, workdir=gw_dir, name="gateway-jwt")
    try:
        yield g
    finally:
        G.check_stopped(g)


@pytest.fixture
def gj(jgw):
    assert jgw.running, f"JWT gateway died:\n{H.tail(jgw.stderr_path)}"
    return jgw


@pytest.fixture
def ac(aclient):
    return aclient


def authsvc_token(ac, user):
    r = ac.get("token", cookie=user.cookie)
    assert r.status_code == 200, f"authsvc /token: {r.status_code} {r.text[:300]}"
    return H.sensitive(r.json()["token"])


def authsvc_jwks(svc):
    with http() as s:
        r = s.get(svc.api("/jwks"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def verify_with_authsvc(svc, token):
    header = pyjwt.get_unverified_header(token)
    keys = [k for k in authsvc_jwks(svc)["keys"] if k["kid"] == header.get("kid")]
    assert keys, f"minted kid {header.get('kid')!r} is not in authsvc's JWKS"
    return header, pyjwt.decode(token, pyjwt.PyJWK(keys[0]).key, algorithms=[header["alg"]],
                                audience=svc.origin, issuer=svc.origin,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"]})


def refused(resp, code, status=401):
    return G.assert_gw_error(resp, status, code)


_ANY = object()


def ok_jwt(resp, *, sub, email=None, sid=_ANY, token=None):
    """200 from the upstream with the JWT's identity; sid=None: no X-Session-Id."""
    body = G.echo(resp)
    h = body["headers"]
    assert h.get("x-user-id") == sub, h
    if email is not None:
        assert h.get("x-user-email") == email, h
    assert h.get("x-auth-method") == "jwt", h
    if sid is None:
        assert "x-session-id" not in h, h
    elif sid is not _ANY:
        assert h.get("x-session-id") == sid, h
    if token is not None:
        assert token not in json.dumps(h), "the caller's JWT reached the upstream"
    return h


# ---------------------------------------------------------------------------
# accepted tokens

@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_fake_issuer_algorithms(gj, issuers, alg):
    a = issuers["a"]
    kid = {"ES256": "a-es256", "RS256": "a-rs256", "EdDSA": "a-eddsa"}[alg]
    sub, sid = "user-" + alg, "sess-" + H.generate_id(16)
    tok = a.token(kid, sub=sub, email=f"{alg.lower()}@example.test", sid=sid, aud="aud-a1")
    h = ok_jwt(gj.get("/j/x", headers=bearer(tok)), sub=sub, email=f"{alg.lower()}@example.test",
               sid=sid, token=tok)
    assert h.get("x-auth-issuer") == a.issuer, h     # sub is unique only within its issuer
    # also on a route that takes sessions and keys too
    ok_jwt(gj.get("/mj/x", headers=bearer(tok)), sub=sub, sid=sid)


def test_better_auth_shaped_token_without_typ(gj, issuers):
    """Better Auth's jwt plugin signs with header {"alg","kid"} only (no typ) and puts the
    user object in the payload (compat §7; design.md: each side accepts the other's JWTs)."""
    a = issuers["a"]
    tok = a.token("a-eddsa", headers={"typ": None}, sub="ba-user", aud="aud-a1", id="ba-user",
                  name="BA", emailVerified=False, image=None, createdAt="2026-01-01T00:00:00.000Z")
    assert "typ" not in pyjwt.get_unverified_header(tok)
    ok_jwt(gj.get("/j/x", headers=bearer(tok)), sub="ba-user", email="fake@example.test")


def test_no_sid_no_session_header(gj, issuers):
    tok = issuers["a"].token("a-es256", sub="nosid", aud="aud-a2")
    ok_jwt(gj.get("/j/x", headers=bearer(tok)), sub="nosid", email="fake@example.test", sid=None, token=tok)


def test_spoofed_identity_headers_replaced(gj, issuers):
    tok = issuers["a"].token("a-es256", sub="real-sub", aud="aud-a1")
    h = ok_jwt(gj.get("/j/x", headers={**bearer(tok), "X-User-Id": "admin", "X-Auth-Method": "session",
                                       "X-Session-Id": "forged", "X-Auth-Issuer": "forged"}),
               sub="real-sub")
    assert "forged" not in json.dumps(h)
    assert h.get("x-auth-issuer") == issuers["a"].issuer


def test_authsvc_token_accepted(gj, ac, user, sql):
    tok = authsvc_token(ac, user)
    sid = sql.session_id(user.token)
    ok_jwt(gj.get("/j/who", headers=bearer(tok)), sub=user.id, email=user.email, sid=sid, token=tok)
    # get-session's set-auth-jwt too
    r = ac.get_session(user)
    jwt2 = H.sensitive(r.headers.get("set-auth-jwt", ""))
    assert jwt2, "no set-auth-jwt"
    ok_jwt(gj.get("/mj/who", headers=bearer(jwt2)), sub=user.id, email=user.email, sid=sid)


def test_default_issuer_is_authsvc(gateway_factory, live_authsvc, ac, user, issuers):
    """No jwt_issuers: the issuer is the origin of BETTER_AUTH_URL, keys at
    BETTER_AUTH_URL/api/auth/jwks, audience the issuer (standard routes: /j/ is jwt)."""
    g = gateway_factory({"BETTER_AUTH_URL": live_authsvc.base_url}, name="gateway-jwt-default")
    tok = authsvc_token(ac, user)
    ok_jwt(g.get("/j/x", headers=bearer(tok)), sub=user.id, email=user.email)
    foreign = issuers["a"].token("a-es256", aud="aud-a1")
    refused(g.get("/j/x", headers=bearer(foreign)), "JWT_UNKNOWN_ISSUER")


def test_default_issuer_from_env(gateway_factory, live_authsvc, ac, user):
    """JWT_ISSUER, JWT_JWKS_URL, JWT_AUDIENCE and JWT_LEEWAY_SECONDS from the environment."""
    e = J.FakeIssuer(issuer="https://env-issuer.example.test")
    try:
        kid = e.add_key("ES256")
        g = gateway_factory({"BETTER_AUTH_URL": live_authsvc.base_url, "JWT_ISSUER": e.issuer,
                             "JWT_JWKS_URL": e.jwks_uri, "JWT_AUDIENCE": "env-aud",
                             "JWT_LEEWAY_SECONDS": "0"}, name="gateway-jwt-env")
        ok_jwt(g.get("/j/x", headers=bearer(e.token(kid, sub="env-user", aud="env-aud"))), sub="env-user")
        refused(g.get("/j/x", headers=bearer(e.token(kid, aud=e.issuer))), "JWT_BAD_AUDIENCE")
        refused(g.get("/j/x", headers=bearer(authsvc_token(ac, user))), "JWT_UNKNOWN_ISSUER")
        # leeway 0: five seconds late is too late
        refused(g.get("/j/x", headers=bearer(e.token(kid, aud="env-aud", iat=now() - 100,
                                                     exp=now() - 5))), "JWT_EXPIRED")
        # accepted and cached, then it expires: refused, not served from the cache
        exp = now() + 2
        short = e.token(kid, sub="short", aud="env-aud", exp=exp)
        for _ in range(3):
            ok_jwt(g.get("/j/x", headers=bearer(short)), sub="short")
        time.sleep(max(0.0, exp + 1.2 - time.time()))
        refused(g.get("/j/x", headers=bearer(short)), "JWT_EXPIRED")
    finally:
        e.stop()


def test_discovered_jwks_and_default_audience(gj, issuers):
    d = issuers["d"]
    assert d.hits.get("/.well-known/openid-configuration", 0) >= 1, \
        f"the gateway never asked for the discovery document: {d.hits}"
    ok_jwt(gj.get("/j/x", headers=bearer(d.token("d-es256", sub="disc", aud=d.issuer))), sub="disc")
    refused(gj.get("/j/x", headers=bearer(d.token("d-es256", aud="something-else"))), "JWT_BAD_AUDIENCE")
    assert d.jwks_hits() >= 1


def test_audiences_list(gj, issuers):
    a = issuers["a"]
    for aud in AUD_A:
        ok_jwt(gj.get("/j/x", headers=bearer(a.token("a-es256", sub="aud-" + aud, aud=aud))), sub="aud-" + aud)
    refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud=a.issuer))), "JWT_BAD_AUDIENCE")
    refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a3"))), "JWT_BAD_AUDIENCE")


# ---------------------------------------------------------------------------
# refusals

def _malformed_cases(a):
    key = a.keys["a-es256"]["key"]
    hdr = J.b64url(json.dumps({"alg": "ES256", "kid": "a-es256", "typ": "JWT"}))
    good = a.token("a-es256", aud="aud-a1")
    h, p, s = good.split(".")
    jws = pyjwt.PyJWS()

    def signed_payload(raw: bytes):
        return jws.encode(raw, key, algorithm="ES256", headers={"kid": "a-es256"})

    return {
        "two_parts": f"{h}.{p}",
        "four_parts": f"{h}.{p}.{s}.{s}",
        "bad_b64_payload": f"{h}.{p[:10]}!*{p[12:]}.{s}",
        "bad_b64_signature": f"{h}.{p}.{s[:10]}$${s[12:]}",
        "header_not_json": J.sign_raw("ES256", key, J.b64url('{"alg":"ES256","kid":"a-es256"'), p),
        "header_json_array_in_object_shape": J.sign_raw("ES256", key, J.b64url('{"alg":"ES256",]'), p),
        "payload_array": signed_payload(b'[1,2,3]'),
        "payload_string": signed_payload(b'"just a string"'),
        "payload_number": signed_payload(b'12345'),
        "payload_not_json": signed_payload(b'{"sub":"x",'),
        "empty_payload": J.sign_raw("ES256", key, hdr, ""),
    }


CASES = ["two_parts", "four_parts", "bad_b64_payload", "bad_b64_signature", "header_not_json",
         "header_json_array_in_object_shape", "payload_array", "payload_string", "payload_number",
         "payload_not_json", "empty_payload"]


@pytest.mark.parametrize("case", CASES)
def test_malformed(gj, issuers, case):
    tok = _malformed_cases(issuers["a"])[case]
    assert tok.startswith("eyJ"), tok[:20]
    refused(gj.get("/j/x", headers=bearer(tok)), "JWT_MALFORMED")


def test_missing_exp_is_malformed(gj, issuers):
    tok = issuers["a"].token("a-es256", aud="aud-a1", exp=None)
    assert "exp" not in pyjwt.decode(tok, options={"verify_signature": False})
    refused(gj.get("/j/x", headers=bearer(tok)), "JWT_MALFORMED")


def _sized_token(a, size, *, above: bool):
    """A validly signed ES256 token as close to `size` bytes as base64url allows:
    the largest <= size (above=False) or the smallest > size (above=True)."""
    exp = now() + 300
    mk = lambda n: a.token("a-es256", aud="aud-a1", sub="big", pad="x" * n, iat=1700000000, exp=exp)  # noqa: E731
    base = len(mk(0))
    n0 = max(0, (size - base) * 3 // 4 - 4)
    best = None
    for n in range(n0, n0 + 16):
        tok = mk(n)
        if above and len(tok) > size:
            return tok
        if not above and len(tok) <= size:
            best = tok
    assert best is not None
    return best


def test_too_large(gj, issuers):
    a = issuers["a"]
    big = _sized_token(a, 8192, above=True)
    assert 8192 < len(big) <= 8196, len(big)
    refused(gj.get("/j/x", headers=bearer(big)), "JWT_TOO_LARGE")
    huge = _sized_token(a, 8700, above=True)
    refused(gj.get("/j/x", headers=bearer(huge)), "JWT_TOO_LARGE")
    fits = _sized_token(a, 8192, above=False)
    assert 8188 <= len(fits) <= 8192, len(fits)
    ok_jwt(gj.get("/j/x", headers=bearer(fits)), sub="big")
    print(f"refused {len(big)} and {len(huge)} bytes, accepted {len(fits)}")


def test_alg_none(gj, issuers):
    a = issuers["a"]
    claims = a.claims(aud="aud-a1")
    for alg in ("none", "None", "NONE"):
        tok = J.compact({"alg": alg, "kid": "a-es256", "typ": "JWT"}, claims)
        refused(gj.get("/j/x", headers=bearer(tok)), "JWT_ALG_NOT_ALLOWED")
    # a "none" token that still carries the original signature
    good = a.token("a-es256", aud="aud-a1")
    _, p, s = good.split(".")
    tok = J.b64url(json.dumps({"alg": "none", "kid": "a-es256"})) + f".{p}.{s}"
    refused(gj.get("/j/x", headers=bearer(tok)), "JWT_ALG_NOT_ALLOWED")


@pytest.mark.parametrize("kid", ["a-es256", "a-rs256", "a-eddsa"])
def test_hs256_with_the_public_key_as_secret(gj, issuers, kid):
    a = issuers["a"]
    pub = a.keys[kid]["key"].public_key()
    secrets = [pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
               json.dumps(a.jwk(kid)).encode(),
               pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)]
    for sec in secrets:
        for alg in ("HS256", "HS384", "HS512"):
            tok = J.hmac_token(alg, {"alg": alg, "kid": kid, "typ": "JWT"}, a.claims(aud="aud-a1"), sec)
            refused(gj.get("/j/x", headers=bearer(tok)), "JWT_ALG_NOT_ALLOWED")


@pytest.mark.parametrize("header_alg,kid", [("RS256", "a-es256"), ("ES256", "a-rs256"),
                                            ("EdDSA", "a-es256"), ("ES256", "a-eddsa"),
                                            ("ES384", "a-es256"), ("PS256", "a-rs256")])
def test_alg_that_does_not_fit_the_key(gj, issuers, header_alg, kid):
    a = issuers["a"]
    signer = {"RS256": "RS256", "PS256": "PS256", "ES256": "ES256", "ES384": "ES384", "EdDSA": "EdDSA"}[header_alg]
    keyalg = {"RS256": "RS256", "PS256": "RS256", "ES256": "ES256", "EdDSA": "EdDSA"}.get(signer)
    if signer == "ES384":
        from cryptography.hazmat.primitives.asymmetric import ec
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        key = J.new_private_key(keyalg)
    tok = pyjwt.encode(a.claims(aud="aud-a1"), key, algorithm=signer, headers={"kid": kid})
    assert pyjwt.get_unverified_header(tok)["alg"] == header_alg
    refused(gj.get("/j/x", headers=bearer(tok)), "JWT_ALG_NOT_ALLOWED")


def test_unknown_issuer(gj, issuers):
    a = issuers["a"]
    for iss in ("https://nobody.example.test", "http://127.0.0.1:1"):
        refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", iss=iss))), "JWT_UNKNOWN_ISSUER")


def test_unknown_key(gj, issuers):
    a = issuers["a"]
    other = J.new_private_key("ES256")
    tok = a.token("a-es256", aud="aud-a1", key=other, headers={"kid": "no-such-kid-" + H.generate_id(8)})
    t0 = time.monotonic()
    refused(gj.get("/j/x", headers=bearer(tok), timeout=15), "JWT_UNKNOWN_KEY")
    assert time.monotonic() - t0 < KID_REFETCH + 3


def test_bad_signature(gj, issuers):
    a = issuers["a"]
    for kid in ("a-es256", "a-rs256", "a-eddsa"):
        good = a.token(kid, aud="aud-a1", sub="victim")
        h, p, s = good.split(".")
        claims = json.loads(J.base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        claims["sub"] = "attacker"
        refused(gj.get("/j/x", headers=bearer(f"{h}.{J.b64url(json.dumps(claims))}.{s}")), "JWT_BAD_SIGNATURE")
        # flip one bit of the signature
        raw = bytearray(J.base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
        raw[len(raw) // 2] ^= 1
        refused(gj.get("/j/x", headers=bearer(f"{h}.{p}.{J.b64url(bytes(raw))}")), "JWT_BAD_SIGNATURE")
        # another key of the same type under the same kid
        alg = a.keys[kid]["alg"]
        tok = a.token(kid, aud="aud-a1", key=J.new_private_key(alg))
        refused(gj.get("/j/x", headers=bearer(tok)), "JWT_BAD_SIGNATURE")


def test_expiry_and_leeway(gj, issuers):
    a = issuers["a"]
    refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", iat=now() - 600,
                                                  exp=now() - 60))), "JWT_EXPIRED")
    refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", iat=now() - 600,
                                                  exp=now() - LEEWAY - 5))), "JWT_EXPIRED")
    ok_jwt(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", sub="late", iat=now() - 600,
                                                 exp=now() - 10))), sub="late")


def test_not_yet_valid_and_leeway(gj, issuers):
    a = issuers["a"]
    refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", nbf=now() + 120))),
            "JWT_NOT_YET_VALID")
    refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", nbf=now() + LEEWAY + 10))),
            "JWT_NOT_YET_VALID")
    ok_jwt(gj.get("/j/x", headers=bearer(a.token("a-es256", aud="aud-a1", sub="early", nbf=now() + 10))),
           sub="early")


def test_bad_audience(gj, issuers, ac, user):
    a = issuers["a"]
    for aud in ("someone-else", "", a.issuer):
        refused(gj.get("/j/x", headers=bearer(a.token("a-es256", aud=aud))), "JWT_BAD_AUDIENCE")


def test_jwt_on_a_route_without_jwt(gj, issuers, ac, user):
    for tok in (issuers["a"].token("a-es256", aud="aud-a1"), authsvc_token(ac, user)):
        for path in ("/s/x", "/k/x"):
            refused(gj.get(path, headers=bearer(tok)), "CREDENTIAL_NOT_ACCEPTED")


def test_jwks_unavailable(gateway_factory, live_authsvc):
    dead = f"http://127.0.0.1:{H.free_port()}"
    routes = {"jwt_issuers": [{"issuer": "https://down.example.test", "jwks_uri": dead + "/jwks"}],
              "routes": [{"prefix": "/j/", "upstream": dead, "auth": ["jwt"]},
                         {"prefix": "/pub/", "upstream": dead, "auth": ["none"]}]}
    g = gateway_factory({"BETTER_AUTH_URL": live_authsvc.base_url}, routes, name="gateway-jwks-down",
                        wait_ready=False)
    key = J.new_private_key("ES256")
    t = now()
    tok = pyjwt.encode({"iss": "https://down.example.test", "aud": "https://down.example.test",
                        "sub": "x", "iat": t, "exp": t + 300}, key, algorithm="ES256", headers={"kid": "k1"})
    t0 = time.monotonic()
    refused(g.get("/j/x", headers=bearer(tok), timeout=15), "JWKS_UNAVAILABLE", status=503)
    assert time.monotonic() - t0 < 8, "the 503 took too long"


# ---------------------------------------------------------------------------
# revocation by sid

@pytest.mark.parametrize("how", ["sign-out", "sql-delete"])
def test_revoked_session_kills_its_jwt(gj, ac, user, sql, how):
    tok = authsvc_token(ac, user)
    unseen = authsvc_token(ac, user)          # same session, never shown to the gateway
    if unseen == tok:
        time.sleep(1.1)
        unseen = authsvc_token(ac, user)
    sid = sql.session_id(user.token)
    for _ in range(3):                        # accepted, and cached
        ok_jwt(gj.get("/j/x", headers=bearer(tok)), sub=user.id, sid=sid)
    t0 = time.monotonic()
    if how == "sign-out":
        assert ac.post("sign-out", cookie=user.cookie).status_code == 200
    else:
        assert sql.execute('delete from "session" where id = %s', (sid,)) == 1
    t1 = time.monotonic()
    took, seen = G.poll_until_status(lambda: gj.get("/j/x", headers=bearer(tok)), 401, 5.0)
    print(f"{how}: JWT refused {took * 1000:.0f} ms after the call returned ({(t1 - t0) * 1000:.0f} ms call)")
    refused(gj.get("/j/x", headers=bearer(tok)), "JWT_REVOKED")
    refused(gj.get("/j/x", headers=bearer(unseen)), "JWT_REVOKED")
    refused(gj.get("/mj/x", headers=bearer(tok)), "JWT_REVOKED")
    assert all(s in (200, 401) for s in seen), seen
    assert took < REVOKED_WITHIN, f"{how}: revoked JWT still accepted {took * 1000:.0f} ms later"


def test_other_sessions_jwts_survive(gj, ac, user, sql):
    other = ac.sign_in(user.email, user.password)
    keep = authsvc_token(ac, other)
    kill = authsvc_token(ac, user)
    ok_jwt(gj.get("/j/x", headers=bearer(keep)), sub=user.id)
    ok_jwt(gj.get("/j/x", headers=bearer(kill)), sub=user.id)
    assert ac.post("sign-out", cookie=user.cookie).status_code == 200
    G.poll_until_status(lambda: gj.get("/j/x", headers=bearer(kill)), 401, 5.0)
    ok_jwt(gj.get("/j/x", headers=bearer(keep)), sub=user.id, sid=sql.session_id(other.token))


# ---------------------------------------------------------------------------
# upstream_jwt: JWTs the gateway mints for the upstream

def _minted(h, mode):
    if mode == "authorization":
        v = h.get("authorization", "")
        assert v.startswith("Bearer "), f"no minted Authorization: {h}"
        assert "x-auth-jwt" not in h, h
        return H.sensitive(v[7:])
    v = h.get("x-auth-jwt")
    assert v, f"no X-Auth-JWT: {h}"
    assert "authorization" not in h, f"credential forwarded as Authorization: {h}"
    return H.sensitive(v)


def _check_minted(svc, tok, *, sub, method, sid=None, email=None, current_kid=None):
    header, c = verify_with_authsvc(svc, tok)
    assert c["iss"] == svc.origin and c["aud"] == svc.origin, c
    assert c["sub"] == sub, c
    assert c.get("auth_method") == method, c
    if sid is not None:
        assert c.get("sid") == sid, c
    if email is not None:
        assert c.get("email") == email, c
    left = c["exp"] - now()
    assert 230 <= left <= 310, f"minted JWT lives {left} s more, want about 300"
    if current_kid:
        assert header["kid"] == current_kid, f"minted with {header['kid']}, authsvc signs with {current_kid}"
    return c


@pytest.mark.parametrize("mode,path", [("authorization", "/ua/x"), ("x-auth-jwt", "/ux/x")])
def test_upstream_jwt_for_sessions(gj, live_authsvc, ac, user, sql, mode, path):
    current_kid = pyjwt.get_unverified_header(authsvc_token(ac, user))["kid"]
    sid = sql.session_id(user.token)
    h = G.echo(gj.get(path, headers=G.cookie(user)))["headers"]
    assert h["x-auth-method"] == "session"
    tok = _minted(h, mode)
    _check_minted(live_authsvc, tok, sub=user.id, method="session", sid=sid, email=user.email,
                  current_kid=current_kid)
    # the same principal again: the same token; a bearer session token of the same session too
    h2 = G.echo(gj.get(path, headers=G.cookie(user)))["headers"]
    assert _minted(h2, mode) == tok, "minted JWT not reused within a minute"
    other = ac.sign_up(name="Other Upstream User")
    h3 = G.echo(gj.get(path, headers=G.cookie(other)))["headers"]
    tok3 = _minted(h3, mode)
    assert tok3 != tok
    _check_minted(live_authsvc, tok3, sub=other.id, method="session", email=other.email,
                  sid=sql.session_id(other.token))


@pytest.mark.parametrize("mode,path", [("authorization", "/ua/x"), ("x-auth-jwt", "/ux/x")])
def test_upstream_jwt_for_api_keys(gj, live_authsvc, keys, user, mode, path):
    k1, k2 = keys.create(user.id), keys.create(user.id)
    for src in ("x-api-key", "bearer"):
        hdr = {"x-api-key": k1.key} if src == "x-api-key" else G.bearer(k1.key)
        h = G.echo(gj.get(path, headers=hdr))["headers"]
        assert h["x-auth-method"] == "api_key"
        assert k1.key not in json.dumps(h), "the API key reached the upstream"
        tok = _minted(h, mode)
        c = _check_minted(live_authsvc, tok, sub=user.id, method="api_key")
        assert "sid" not in c or not c["sid"], c
        if "email" in c:
            assert c["email"] == user.email, c
    h = G.echo(gj.get(path, headers={"x-api-key": k1.key}))["headers"]
    assert _minted(h, mode) == tok, "minted JWT not reused for the same key"
    h = G.echo(gj.get(path, headers={"x-api-key": k2.key}))["headers"]
    assert _minted(h, mode) != tok, "two API keys share one minted JWT"


@pytest.mark.parametrize("mode,path", [("authorization", "/ua/x"), ("x-auth-jwt", "/ux/x")])
def test_upstream_jwt_for_jwts(gj, live_authsvc, issuers, mode, path):
    a = issuers["a"]
    sid = "sess-" + H.generate_id(10)
    incoming = a.token("a-es256", sub="jwt-caller", email="caller@example.test", sid=sid, aud="aud-a1")
    h = G.echo(gj.get(path, headers=bearer(incoming)))["headers"]
    assert h["x-auth-method"] == "jwt"
    tok = _minted(h, mode)
    assert tok != incoming and incoming not in json.dumps(h), "the caller's JWT reached the upstream"
    c = _check_minted(live_authsvc, tok, sub="jwt-caller", method="jwt")
    if "email" in c:
        assert c["email"] == "caller@example.test", c
    h2 = G.echo(gj.get(path, headers=bearer(incoming)))["headers"]
    assert _minted(h2, mode) == tok


def test_no_upstream_jwt_without_the_option(gj, user):
    h = G.echo(gj.get("/mj/x", headers=G.cookie(user)))["headers"]
    assert "x-auth-jwt" not in h and "authorization" not in h, h


# ---------------------------------------------------------------------------
# JWKS caching and refetching (kept last: they wait for the refetch interval)

def test_jwks_is_cached(gj, issuers):
    a = issuers["a"]
    ok_jwt(gj.get("/j/x", headers=bearer(a.token("a-es256", sub="warm", aud="aud-a1"))), sub="warm")
    h0 = a.jwks_hits()
    for i in range(20):
        kid = ("a-es256", "a-rs256", "a-eddsa")[i % 3]
        ok_jwt(gj.get("/j/x", headers=bearer(a.token(kid, sub=f"c{i}", aud="aud-a1"))), sub=f"c{i}")
    assert a.jwks_hits() == h0, f"JWKS fetched {a.jwks_hits() - h0} times for known keys (max-age 600)"


def test_new_key_after_caching_is_fetched(gj, issuers):
    r = issuers["r"]
    ok_jwt(gj.get("/j/x", headers=bearer(r.token("r-es256", sub="r1"))), sub="r1")
    r.wait_refetch_window(KID_REFETCH)
    h0 = r.jwks_hits()
    kid = r.add_key("EdDSA")
    t0 = time.monotonic()
    ok_jwt(gj.get("/j/x", headers=bearer(r.token(kid, sub="r2")), timeout=15), sub="r2")
    took = time.monotonic() - t0
    assert took < KID_REFETCH + 2, f"new key accepted only after {took:.1f} s"
    assert 1 <= r.jwks_hits() - h0 <= 2, (h0, r.jwks_hits())
    # now cached: no more fetches
    h1 = r.jwks_hits()
    for i in range(5):
        ok_jwt(gj.get("/j/x", headers=bearer(r.token(kid, sub=f"r3{i}"))), sub=f"r3{i}")
    assert r.jwks_hits() == h1
    # another new key right away: a refetch is allowed only 1 s after the last one,
    # and the request waits for it instead of being refused
    last = r.last_hit["/jwks"]
    kid2 = r.add_key("RS256")
    tok2 = r.token(kid2, sub="r4")
    t0 = time.monotonic()
    resp = gj.get("/j/x", headers=bearer(tok2), timeout=15)
    took = time.monotonic() - t0
    ok_jwt(resp, sub="r4")
    gap = r.last_hit["/jwks"] - last
    assert gap > KID_REFETCH - 0.1, f"JWKS refetched {gap:.2f} s after the previous fetch"
    assert took < KID_REFETCH + 2, f"second new key accepted only after {took:.1f} s"
    assert r.jwks_hits() - h1 == 1, (h1, r.jwks_hits())


def test_unknown_kid_flood_is_rate_limited(gj, issuers):
    f, a = issuers["f"], issuers["a"]
    n = 48
    toks = [f.token("f-es256", key=J.new_private_key("ES256"), headers={"kid": "flood-" + H.generate_id(12)})
            for _ in range(n)]
    f.wait_refetch_window(KID_REFETCH)
    h0 = f.jwks_hits()
    fast = []
    stop = threading.Event()

    def bystander():
        with http() as s:
            i = 0
            while not stop.is_set():
                t = time.monotonic()
                tok = a.token("a-es256", sub=f"by{i}", aud="aud-a1")
                r1 = s.get(gj.url("/j/x"), headers=bearer(tok), timeout=10)
                r2 = s.get(gj.url("/pub/x"), timeout=10)
                fast.append((time.monotonic() - t, r1.status_code, r2.status_code))
                i += 1
                time.sleep(0.05)

    def one(tok):
        t = time.monotonic()
        with http() as s:
            r = s.get(gj.url("/j/x"), headers={**bearer(tok), "Connection": "close"}, timeout=20)
        return time.monotonic() - t, r

    by = threading.Thread(target=bystander, daemon=True)
    by.start()
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=n) as ex:
            results = list(ex.map(one, toks[:n // 2]))
            time.sleep(1.5)
            results += list(ex.map(one, toks[n // 2:]))
    finally:
        elapsed = time.monotonic() - t0
        stop.set()
        by.join(15)
    fetches = f.jwks_hits() - h0
    for took, r in results:
        refused(r, "JWT_UNKNOWN_KEY")
        assert took < KID_REFETCH + 3, f"an unknown kid waited {took:.1f} s"
    allowed = 1 + int(elapsed / KID_REFETCH) + 1
    print(f"{n} unknown kids in {elapsed:.1f} s -> {fetches} JWKS fetches; bystanders {len(fast)}")
    assert fetches <= allowed, f"{fetches} JWKS fetches for {n} unknown kids in {elapsed:.1f} s"
    assert fast, "no bystander request completed"
    assert all(s1 == 200 and s2 == 200 for _, s1, s2 in fast), fast
    worst = max(t for t, _, _ in fast)
    assert worst < 1.0, f"a request with a known key waited {worst:.2f} s during the flood"


def test_slow_jwks_fetch_blocks_nobody(gj, issuers):
    s, a = issuers["s"], issuers["a"]
    ok_jwt(gj.get("/j/x", headers=bearer(s.token("s-es256", sub="s0"))), sub="s0")
    new_kid = s.add_key("ES256")
    s.wait_refetch_window(KID_REFETCH)
    s.delay = 3.0
    out = {}

    def waiter():
        t = time.monotonic()
        with http() as c:
            out["r"] = c.get(gj.url("/j/x"), headers=bearer(s.token(new_kid, sub="s1")), timeout=20)
        out["t"] = time.monotonic() - t

    th = threading.Thread(target=waiter, daemon=True)
    try:
        th.start()
        H.wait_until(lambda: s.in_flight > 0, 3, interval=0.02, what="the slow JWKS fetch")
        lat = []
        with http() as c:
            while s.in_flight > 0 and len(lat) < 40:
                t = time.monotonic()
                r1 = c.get(gj.url("/j/x"), headers=bearer(a.token("a-rs256", sub="b", aud="aud-a1")), timeout=10)
                r2 = c.get(gj.url("/pub/x"), timeout=10)
                lat.append(time.monotonic() - t)
                assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
                time.sleep(0.05)
        th.join(20)
    finally:
        s.delay = 0
    assert lat, "no request made while the fetch was in flight"
    assert max(lat) < 0.5, f"requests waited up to {max(lat):.2f} s while a JWKS fetch was slow"
    assert "r" in out, "the waiting request never finished"
    ok_jwt(out["r"], sub="s1")      # it waited for the refetch instead of failing


def test_jwks_refetched_after_max_age(gj, issuers):
    """Cache-Control: max-age=5: a key removed from the JWKS is still accepted while the
    cached copy is fresh and refused once it has been refetched."""
    m = issuers["m"]

    def fresh_ok(i):
        return gj.get("/j/x", headers=bearer(m.token("m-es256", sub=f"m{i}")), timeout=15)

    ok_jwt(fresh_ok(0), sub="m0")
    h0 = m.jwks_hits()
    # wait for the next fetch (max-age ran out)
    i = [0]

    def refetched():
        i[0] += 1
        assert fresh_ok(i[0]).status_code == 200
        return m.jwks_hits() > h0
    H.wait_until(refetched, 5 + 4, interval=0.25, what="a JWKS refetch after max-age")
    m.unpublish("m-es256")
    t1 = time.monotonic()
    assert fresh_ok(100).status_code == 200, "cached key refused right after a fetch"
    took, seen = G.poll_until_status(lambda: fresh_ok(200), 401, 5 + 5, interval=0.25)
    total = time.monotonic() - t1
    refused(fresh_ok(300), "JWT_UNKNOWN_KEY")
    assert total >= 2.0, f"removed key refused after {total:.1f} s: the max-age was not honoured"
