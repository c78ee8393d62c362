"""Security issue #13, gateway side: credentials made of bytes that are not UTF-8
are refused as malformed (401) without a PostgreSQL query or a database error,
and an issuer's JWKS or discovery document nested 400,000 deep is refused with a
log line while the gateway keeps serving."""

from __future__ import annotations

import json

import pytest

import pcsupport as H
import pcsupport as G
from pcsupport import jwt_issuer as J

BAD_BYTES = [b"\xff", b"\xed\xb0\x80", b"a\xc3", b"\xc0\xaf"]


def test_credentials_that_are_not_utf8(gw, user):
    before = gw.stats()
    shaped_key = G.KEY_PREFIX.encode() + b"A" * 63
    for bad in BAD_BYTES:
        creds = [{"Authorization": b"Bearer " + bad},
                 {"Authorization": b"Bearer " + bad * 32},
                 {"Authorization": b"Bearer " + bad + b"." + b"A" * 43 + b"="},
                 {"Authorization": b"Bearer eyJ" + bad + b".e30.x"},
                 {"Authorization": b"Bearer " + shaped_key + bad},
                 {"x-api-key": bad},
                 {"x-api-key": shaped_key + bad},
                 {"Cookie": b"better-auth.session_token=" + bad},
                 {"Cookie": b"better-auth.session_token=" + bad + b".sig"}]
        for hdr in creds:
            for path in ("/s/x", "/k/x", "/m/x", "/mj/x", "/j/x"):
                r = gw.get(path, headers=hdr)
                assert r.status_code in (400, 401), f"{path} {hdr!r}: {r.status_code} {r.text[:200]}"
        r = gw.get("/oc/" + G.quote_path(bad.decode("latin-1")) + "/x")
        assert r.status_code in (400, 401, 404), r.text
    after = gw.stats()
    for k in ("pg_queries", "pg_errors"):
        if k in before:
            assert after[k] == before[k], f"{k}: {before[k]} -> {after[k]}"
    # and a good credential still works
    assert gw.get("/s/x", cookies=None, headers=G.cookie(user)).status_code == 200


def deep(depth: int, top: dict) -> bytes:
    text = json.dumps(top)
    return (text[:-1] + ',"x":' + "[" * depth + "]" * depth + "}").encode()


@pytest.fixture
def deep_issuers():
    made = {"k": J.FakeIssuer(), "d": J.FakeIssuer()}
    for n, i in made.items():
        i.add_key("ES256", kid=f"{n}-es256")
    made["k"].raw["/jwks"] = deep(400000, {"keys": []})
    made["d"].raw["/.well-known/openid-configuration"] = deep(
        400000, {"issuer": made["d"].issuer, "jwks_uri": made["d"].jwks_uri})
    try:
        yield made
    finally:
        for i in made.values():
            i.stop()


def test_jwks_and_discovery_nested_deep(gateway_factory, upstream, deep_issuers):
    k, d = deep_issuers["k"], deep_issuers["d"]
    table = {"jwt_issuers": [{"issuer": k.issuer, "jwks_uri": k.jwks_uri}, {"issuer": d.issuer}],
             "routes": [{"prefix": "/j/", "upstream": upstream.url, "auth": ["jwt"]}]}
    g = gateway_factory({}, table, name="gateway-deepjwks")
    for iss, kid in ((k, "k-es256"), (d, "d-es256")):
        tok = iss.token(kid, sub="deep")
        r = g.get("/j/x", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code in (401, 503), r.text
        assert r.status_code != 200
        assert g.running, H.tail(g.stderr_path)
    def log():
        try:
            return g.log_path.read_text(errors="replace")
        except OSError:
            return ""
    H.wait_until(lambda: f"{k.jwks_uri} is not a JWK set" in log() and
                 f"discovery document of {d.issuer} has no usable jwks_uri" in log(), 10,
                 what="logged refusals")
    assert k.hits.get("/jwks", 0) >= 1 and d.hits.get("/.well-known/openid-configuration", 0) >= 1
    assert g.get("/j/x").status_code == 401
    assert g.running
