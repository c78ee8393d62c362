"""Interop, issue 5 (JWTs): a real Better Auth 1.7.25 server with its jwt plugin,
our authsvc and our gateway on shared PostgreSQL databases.

Better Auth runs from tests/e2e/interop/server.mjs with BA_JWT=eddsa|es256|rs256
(the jwt plugin: `jwt()` = EdDSA, or keyPairConfig {alg}); that mode also serves
POST /__portcullis/verify-jwt, Better Auth's own server-only verifyJWT over HTTP.
How the plugin picks, stores and publishes keys is in interop/FACTS.md §10 (read
from dist/plugins/jwt/*.mjs and observed).  What is proved here:

  1. Better Auth's JWTs pass our gateway (issuer = Better Auth's origin, keys from
     its /api/auth/jwks, or from OUR /api/auth/jwks on a shared table); forged ones
     do not.
  2. Keys Better Auth created in the shared "jwks" table are published by our
     authsvc with the same kid and members; its tokens verify against our JWKS;
     our authsvc signs with Better Auth's row when the alg matches (so we open
     Better Auth's sealed private key).
  3. Better Auth signs with a row WE created (so it opens our sealed private key),
     publishes our rows, and its own verifyJWT accepts our tokens.
  4. The claims of both sides' tokens for one user agree.
  5. Sign-out at Better Auth makes the gateway refuse a JWT our authsvc minted for
     that session (the session row's DELETE trigger).

Every database but the last test's is a fresh one, migrated by `authsvc migrate`,
so each test controls which side creates the first key.  Node and npm are
required, as for test_interop.py: without them the tests fail.
"""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.parse

import jwt as pyjwt
import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.interop import START_TIMEOUT, BetterAuthServer, install as _install, node_env as _node_env

USER_FIELDS = ("id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt")
STD_CLAIMS = ("iss", "aud", "sub", "iat", "exp")
MODE_ALG = {"eddsa": "EdDSA", "es256": "ES256", "rs256": "RS256"}
ALG_MODE = {v: k for k, v in MODE_ALG.items()}
PUBLIC_MEMBERS = {"OKP": ("kty", "crv", "x"), "EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}
REVOKED_WITHIN = 5.0


# ---------------------------------------------------------------------------
# helpers

def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def parts(token: str):
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def http():
    s = requests.Session()
    s.trust_env = False
    return s


def jwks_at(url: str) -> dict:
    with http() as s:
        r = s.get(url, timeout=10)
    assert r.status_code == 200, f"GET {url}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("keys"), list), body
    return body


def key_by_kid(doc: dict, kid: str) -> dict:
    m = [k for k in doc["keys"] if k.get("kid") == kid]
    assert len(m) == 1, f"kid {kid!r} published {len(m)} times in {json.dumps(doc)[:1500]}"
    return m[0]


def verify_at(jwks_url: str, token: str, *, issuer: str, audience: str | None = None) -> dict:
    """PyJWT over the JWKS fetched from jwks_url; returns the claims."""
    header = pyjwt.get_unverified_header(token)
    k = key_by_kid(jwks_at(jwks_url), header.get("kid"))
    return pyjwt.decode(token, pyjwt.PyJWK(k).key, algorithms=[header["alg"]],
                        audience=audience or issuer, issuer=issuer,
                        options={"require": list(STD_CLAIMS)})


def public_members(k: dict) -> dict:
    return {m: k.get(m) for m in PUBLIC_MEMBERS[k["kty"]]}


def forge_sub(token: str, sub: str) -> str:
    h, p, s = token.split(".")
    claims = json.loads(b64url_decode(p))
    claims["sub"] = sub
    return h + "." + H.b64url_nopad(json.dumps(claims, separators=(",", ":")).encode()) + "." + s


def flip_signature(token: str) -> str:
    h, p, s = token.split(".")
    raw = bytearray(b64url_decode(s))
    raw[len(raw) // 2] ^= 1
    return f"{h}.{p}.{H.b64url_nopad(bytes(raw))}"


def token_of(c: H.ApiClient, user: H.User) -> str:
    r = c.get("token", cookie=user.cookie)
    assert r.status_code == 200, f"{c.base_url}/api/auth/token: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"token"} and isinstance(body["token"], str), body
    return H.sensitive(body["token"])


def session_jwt(c: H.ApiClient, user: H.User) -> str:
    r = c.get_session(user)
    assert r.status_code == 200 and r.json(), r.text[:300]
    tok = r.headers.get("set-auth-jwt")
    assert tok, f"{c.base_url}: get-session without set-auth-jwt: {dict(r.headers)}"
    return H.sensitive(tok)


def ba_verify(ba: BetterAuthServer, token: str):
    """Better Auth's own verifyJWT (jwks table + iss/aud = its baseURL origin)."""
    with http() as s:
        r = s.post(ba.base_url + "/__portcullis/verify-jwt", json={"token": token}, timeout=10)
    assert r.status_code == 200, f"verify-jwt: {r.status_code} {r.text[:400]}"
    return r.json()["payload"]


def origin(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def npm_dir():
    return _install()


@pytest.fixture
def ba_factory(npm_dir, secret, trusted_origins, tmp_root):
    """make(database_url, jwt=None|'eddsa'|'es256'|'rs256', env=None) -> a started Better
    Auth server (checked with GET /api/auth/ok, which runs its schema check); env is added
    to its environment (BETTER_AUTH_SECRETS, ...)."""
    started = []
    logdir = tmp_root / "interop"
    logdir.mkdir(parents=True, exist_ok=True)

    def make(database_url, jwt=None, env_extra=None):
        port = H.free_port()
        env = {"DATABASE_URL": database_url, "BETTER_AUTH_SECRET": secret,
               "BETTER_AUTH_URL": f"http://127.0.0.1:{port}", "TRUSTED_ORIGINS": ",".join(trusted_origins),
               "PORT": str(port)}
        if jwt:
            env["BA_JWT"] = jwt
        env.update(env_extra or {})
        proc = H.Proc(["node", "server.mjs"], env=_node_env(env), cwd=npm_dir,
                      stdout=logdir / f"better-auth-jwt-{port}.stdout",
                      stderr=logdir / f"better-auth-jwt-{port}.stderr", name="better-auth-jwt")
        srv = BetterAuthServer(proc, port, env, logdir)
        started.append(srv)

        try:
            # waits for the listening socket rather than the "ready" line, which a
            # removed temp dir would hide
            G.wait_port(port, max(START_TIMEOUT, 60.0), proc, what=f"Better Auth on port {port}")
            with http() as s:
                r = s.get(srv.base_url + "/api/auth/ok", timeout=20)
            assert r.status_code == 200 and r.json() == {"ok": True}, r.text
        except (TimeoutError, RuntimeError, AssertionError, requests.RequestException) as e:
            time.sleep(0.3)
            pytest.fail(f"Better Auth (BA_JWT={jwt}) did not start on {database_url} ({e!r}):\n{srv.logs()}",
                        pytrace=False)
        srv.origin = origin(env["BETTER_AUTH_URL"])
        srv.jwks_url = srv.base_url + "/api/auth/jwks"
        return srv

    yield make
    died = [s for s in started if not s.running]
    for s in started:
        s.proc.stop(signal.SIGTERM, timeout=10)
    if died:
        pytest.fail("a Better Auth server died during the test:\n" + "\n".join(s.logs() for s in died),
                    pytrace=False)


@pytest.fixture
def shared_db(authsvc_factory, pg):
    """make(env=None, name=...) -> (svc, conn, database_url): a fresh database migrated
    by `authsvc migrate`, with an authsvc for it that is NOT started yet."""
    conns = []

    def make(env=None, name="authsvc-bajwt"):
        svc = authsvc_factory(env, fresh_db=True, start=False, name=name)
        dbname = urllib.parse.urlsplit(svc.env["DATABASE_URL"]).path.lstrip("/")
        conn = pg.connect(dbname)
        conns.append(conn)
        return svc, conn, svc.env["DATABASE_URL"]
    yield make
    for c in conns:
        c.close()


@pytest.fixture
def clients(trusted_origins):
    """make(server) -> an ApiClient whose Origin both servers trust."""
    made = []

    def make(svc):
        c = H.ApiClient(svc, origin=trusted_origins[0])
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def upstream(tmp_root):
    u = G.Upstream(tmp_root / "interop-jwt")
    try:
        yield u
    finally:
        u.stop()


@pytest.fixture
def gateways(pg, redis_srv, authsvc, secret, upstream, tmp_root):
    """make(jwt_issuers) -> a gateway with /j/ (jwt only) and /mj/ (session, jwt, api_key)."""
    made = []

    def make(issuers, name="gateway-bajwt"):
        env = G.gw_base_env(pg, redis_srv, secret)
        env["BETTER_AUTH_URL"] = authsvc.base_url
        routes = {"jwt_issuers": issuers, "routes": [
            {"prefix": "/j/", "upstream": upstream.url, "auth": ["jwt"]},
            {"prefix": "/mj/", "upstream": upstream.url, "auth": ["session", "jwt", "api_key"]},
        ]}
        g = G.Gateway(env, routes, workdir=tmp_root / "interop-jwt", name=name)
        made.append(g)
        return g
    yield make
    G.check_stopped(*made)


def rows(conn, sql="select * from \"jwks\" order by \"createdAt\"", args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def show(conn) -> str:
    return "\n".join(f"  {r['id']} alg={r['alg']} crv={r['crv']} created={r['createdAt']} "
                     f"expires={r['expiresAt']} pub={r['publicKey'][:60]}" for r in rows(conn))


def accepted(resp, *, sub, email):
    body = G.echo(resp)
    h = body["headers"]
    assert h.get("x-user-id") == sub, h
    assert h.get("x-user-email") == email.lower(), h
    assert h.get("x-auth-method") == "jwt", h
    return h


# ---------------------------------------------------------------------------
# 1. Better Auth's JWTs pass our gateway

@pytest.mark.parametrize("mode", ["eddsa", "es256"])
def test_better_auth_jwt_passes_the_gateway(shared_db, ba_factory, clients, gateways, mode):
    _, conn, url = shared_db()
    ba = ba_factory(url, jwt=mode)
    bc = clients(ba)
    u = bc.sign_up(name=f"BA {mode} User")
    tok = token_of(bc, u)
    header, claims = parts(tok)
    assert header.get("alg") == MODE_ALG[mode], header
    assert header.get("kid") in [r["id"] for r in rows(conn)], f"kid not a jwks row\n{show(conn)}"
    assert claims["sub"] == u.id and claims["iss"] == claims["aud"] == ba.origin, claims
    g = gateways([{"issuer": ba.origin, "jwks_uri": ba.jwks_url, "audiences": [ba.origin]}])

    h = accepted(g.get("/j/who", headers=bearer(tok)), sub=u.id, email=u.email)
    assert "x-session-id" not in h, f"a Better Auth JWT has no sid, yet X-Session-Id = {h.get('x-session-id')}"
    assert tok not in json.dumps(h), "the caller's JWT reached the upstream"
    # get-session's set-auth-jwt, on the route that takes sessions too; spoofed headers replaced
    jwt2 = session_jwt(bc, u)
    h = accepted(g.get("/mj/who", headers={**bearer(jwt2), "X-User-Id": "admin", "X-Auth-Method": "session"}),
                 sub=u.id, email=u.email)

    # forged: another subject under the same signature; one flipped bit in the signature
    for bad in (forge_sub(tok, "someone-else"), flip_signature(tok)):
        G.assert_gw_error(g.get("/j/who", headers=bearer(bad)), 401, "JWT_BAD_SIGNATURE")
    # a gateway that expects another audience for this issuer refuses it
    g2 = gateways([{"issuer": ba.origin, "jwks_uri": ba.jwks_url, "audiences": ["not-" + ba.origin]}],
                  name="gateway-bajwt-aud")
    G.assert_gw_error(g2.get("/j/who", headers=bearer(tok)), 401, "JWT_BAD_AUDIENCE")


# ---------------------------------------------------------------------------
# 2. Better Auth's keys in the shared table: published by us, verified by us, used by us

@pytest.mark.parametrize("mode", ["eddsa", "es256"])
def test_better_auth_keys_are_published_by_authsvc(shared_db, ba_factory, clients, gateways, mode):
    svc, conn, url = shared_db()                       # authsvc (JWT_ALG default ES256) not started
    ba = ba_factory(url, jwt=mode)
    bc = clients(ba)
    u = bc.sign_up(name="BA Key User")
    ba_tok = token_of(bc, u)
    kid = parts(ba_tok)[0]["kid"]
    assert [r["id"] for r in rows(conn)] == [kid], f"Better Auth made more than its one key:\n{show(conn)}"
    ba_jwk = key_by_kid(jwks_at(ba.jwks_url), kid)

    svc.start()                                        # now ours: reads the table at start
    for path in ("/api/auth/jwks", "/.well-known/jwks.json"):
        ours = key_by_kid(jwks_at(svc.url(path)), kid)
        assert public_members(ours) == public_members(ba_jwk), (path, ours, ba_jwk)
        assert ours.get("alg") == ba_jwk["alg"] == MODE_ALG[mode], (path, ours, ba_jwk)
        for m in ("d", "p", "q", "dp", "dq", "qi"):
            assert m not in ours, f"{path} publishes private member {m}"
    # a Better Auth token verifies against OUR JWKS (PyJWT)
    claims = verify_at(svc.url("/api/auth/jwks"), ba_tok, issuer=ba.origin)
    assert claims["sub"] == u.id
    # ...and passes a gateway that knows only our JWKS for Better Auth's issuer
    g = gateways([{"issuer": ba.origin, "jwks_uri": svc.api("/jwks"), "audiences": [ba.origin]}])
    accepted(g.get("/j/x", headers=bearer(ba_tok)), sub=u.id, email=u.email)
    # our key (if we made one) is published by Better Auth too: it publishes every row
    ours_kid = parts(token_of(clients(svc), u))[0]["kid"]
    assert ours_kid in [k["kid"] for k in jwks_at(ba.jwks_url)["keys"]], \
        f"Better Auth does not publish our row {ours_kid}\n{show(conn)}"


@pytest.mark.parametrize("mode", ["eddsa", "es256"])
def test_authsvc_signs_with_the_key_better_auth_created(shared_db, ba_factory, clients, mode):
    """Better Auth creates the first key; our authsvc with the same JWT_ALG starts after
    it and must sign with that row (it is current): so we open Better Auth's sealed
    private key.  Our tokens then verify at Better Auth too."""
    svc, conn, url = shared_db({"JWT_ALG": MODE_ALG[mode]})
    ba = ba_factory(url, jwt=mode)
    bc = clients(ba)
    u = bc.sign_up(name="Shared Key User")
    ba_kid = parts(token_of(bc, u))[0]["kid"]
    # our issuer/audience = Better Auth's origin: one deployment, one issuer
    svc.env.update({"JWT_ISSUER": ba.origin, "JWT_AUDIENCE": ba.origin})
    svc.start()
    ours = token_of(clients(svc), u)
    header, _ = parts(ours)
    assert header["alg"] == MODE_ALG[mode], header
    assert header["kid"] == ba_kid, \
        f"authsvc (JWT_ALG={MODE_ALG[mode]}) did not sign with Better Auth's current row {ba_kid}:\n{show(conn)}"
    assert len(rows(conn)) == 1, f"authsvc created a key although Better Auth's is current:\n{show(conn)}"
    for jwks_url in (ba.jwks_url, svc.api("/jwks")):
        assert verify_at(jwks_url, ours, issuer=ba.origin)["sub"] == u.id
    payload = ba_verify(ba, ours)
    assert payload is not None, "Better Auth's verifyJWT refused our token"
    assert payload["sub"] == u.id and payload["sid"], payload


# ---------------------------------------------------------------------------
# 3. Better Auth with keys WE created

@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_better_auth_signs_with_our_key(shared_db, ba_factory, clients, alg):
    """Our authsvc starts first on an empty jwks table, so its row is the only one;
    Better Auth (same alg) then signs with it: it opened our sealed private key and
    imported our private JWK."""
    svc, conn, url = shared_db({"JWT_ALG": alg})
    svc.start()
    table = rows(conn)
    assert len(table) == 1 and table[0]["alg"] == alg, f"authsvc did not create one {alg} row:\n{show(conn)}"
    our_kid = table[0]["id"]
    ba = ba_factory(url, jwt=ALG_MODE[alg])
    bc = clients(ba)
    u = bc.sign_up(name=f"Our {alg} key")
    ba_tok = token_of(bc, u)
    header, claims = parts(ba_tok)
    assert header == {"alg": alg, "kid": our_kid}, \
        f"Better Auth did not sign with our row {our_kid}: header {header}\n{show(conn)}"
    assert [r["id"] for r in rows(conn)] == [our_kid], f"Better Auth created a key:\n{show(conn)}"
    # set-auth-jwt uses it as well
    assert parts(session_jwt(bc, u))[0]["kid"] == our_kid
    # the token verifies against both JWKS documents, which publish our row identically
    for jwks_url in (svc.api("/jwks"), ba.jwks_url):
        assert verify_at(jwks_url, ba_tok, issuer=ba.origin)["sub"] == u.id
    a, b = key_by_kid(jwks_at(svc.api("/jwks")), our_kid), key_by_kid(jwks_at(ba.jwks_url), our_kid)
    assert public_members(a) == public_members(b) and a["alg"] == b["alg"] == alg, (a, b)
    assert ba_verify(ba, ba_tok)["sub"] == u.id


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_our_tokens_verify_at_better_auth(shared_db, ba_factory, clients, alg):
    """authsvc's tokens, issued for Better Auth's origin, pass Better Auth's own
    verifyJWT and PyJWT over Better Auth's /api/auth/jwks."""
    svc, conn, url = shared_db({"JWT_ALG": alg})
    ba = ba_factory(url, jwt="eddsa")                  # Better Auth's default config
    svc.env.update({"JWT_ISSUER": ba.origin, "JWT_AUDIENCE": ba.origin})
    svc.start()
    ac = clients(svc)
    u = ac.sign_up(name=f"Verified at BA {alg}")
    for tok in (token_of(ac, u), session_jwt(ac, u)):
        header, _ = parts(tok)
        assert header["alg"] == alg
        claims = verify_at(ba.jwks_url, tok, issuer=ba.origin)
        assert claims["sub"] == u.id
        payload = ba_verify(ba, tok)
        assert payload is not None, f"Better Auth's verifyJWT refused our {alg} token (kid {header['kid']})\n" \
                                    f"{show(conn)}\n{ba.logs(1500)}"
        assert payload["sub"] == u.id and payload["email"] == u.email.lower(), payload
    # a forged one is refused by Better Auth too (the check above can fail)
    assert ba_verify(ba, forge_sub(token_of(ac, u), "someone-else")) is None


def test_better_auth_default_signs_with_our_es256_key(shared_db, ba_factory, clients):
    """Better Auth's own rule (FACTS §10): with no live key of its alg it signs with the
    newest live key of any alg.  So a default (EdDSA) Better Auth next to a default
    (ES256) authsvc signs ES256 with our key and never makes an EdDSA key."""
    svc, conn, url = shared_db()
    svc.start()
    our_kid = rows(conn)[0]["id"]
    ba = ba_factory(url, jwt="eddsa")
    bc = clients(ba)
    u = bc.sign_up()
    header, _ = parts(token_of(bc, u))
    assert header == {"alg": "ES256", "kid": our_kid}, f"{header}\n{show(conn)}"
    assert len(rows(conn)) == 1, show(conn)
    assert verify_at(svc.api("/jwks"), token_of(bc, u), issuer=ba.origin)["sub"] == u.id


# ---------------------------------------------------------------------------
# 4. The claims of both sides' tokens for one user

def test_claims_match_for_the_same_user(shared_db, ba_factory, clients):
    svc, conn, url = shared_db({"JWT_ALG": "EdDSA"})
    ba = ba_factory(url, jwt="eddsa")
    bc = clients(ba)
    u = bc.sign_up(name="Claims User")              # Better Auth's key first, then ours adopts it
    ba_tok = token_of(bc, u)
    svc.start()
    ac = clients(svc)
    ours = token_of(ac, u)
    (bh, bcl), (oh, ocl) = parts(ba_tok), parts(ours)

    # headers: the same alg and kid (one shared row); Better Auth sends no typ, we send JWT
    assert bh == {"alg": "EdDSA", "kid": bh["kid"]}, bh
    assert oh.get("alg") == "EdDSA" and oh.get("kid") == bh["kid"] and oh.get("typ") == "JWT", (oh, bh)
    # claim names: ours = Better Auth's + sid
    assert set(ocl) - set(bcl) == {"sid"}, f"ours {sorted(ocl)} vs Better Auth {sorted(bcl)}"
    assert set(bcl) - set(ocl) == set(), f"Better Auth has claims we lack: {set(bcl) - set(ocl)}"
    # the user fields: same names, same JSON values (types and date format included)
    for f in USER_FIELDS:
        assert f in bcl, f"Better Auth's token lacks {f}: {bcl}"
        assert json.dumps(ocl.get(f)) == json.dumps(bcl[f]), f"claim {f}: ours {ocl.get(f)!r} != BA {bcl[f]!r}"
    # sub = user id; iss = aud = origin of each server's base URL; 15 minutes
    assert ocl["sub"] == bcl["sub"] == u.id
    assert bcl["iss"] == bcl["aud"] == ba.origin, bcl
    assert ocl["iss"] == ocl["aud"] == svc.origin, ocl
    assert bcl["exp"] - bcl["iat"] == ocl["exp"] - ocl["iat"] == 900, (bcl, ocl)
    for c in (bcl, ocl):
        assert all(isinstance(c[k], int) for k in ("iat", "exp")), c
    assert ocl["sid"] == rows(conn, 'select id from "session" where token = %s', (u.token,))[0]["id"]


# ---------------------------------------------------------------------------
# 5. Sign-out at Better Auth revokes a JWT our authsvc minted for that session

@pytest.mark.parametrize("cred", ["cookie", "bearer"])
def test_sign_out_at_better_auth_revokes_our_jwt(authsvc, db, ba_factory, main_db_url, clients, gateways, cred):
    ba = ba_factory(main_db_url)                       # the plain reference server (no jwt plugin)
    bc, ac = clients(ba), clients(authsvc)
    u = bc.sign_up(name="Revoked at BA")
    other = ac.sign_in(u.email, u.password)            # a second session that must survive
    tok, keep = token_of(ac, u), token_of(ac, other)
    sid = db.scalar('select id from "session" where token = %s', (u.token,))
    assert parts(tok)[1]["sid"] == sid
    g = gateways([{"issuer": authsvc.origin, "jwks_uri": authsvc.api("/jwks")}])
    for _ in range(3):                                 # accepted, and cached
        accepted(g.get("/j/x", headers=bearer(tok)), sub=u.id, email=u.email)
    kw = {"cookie": u.cookie} if cred == "cookie" else {"bearer": u.response.headers["set-auth-token"]}
    r = bc.post("sign-out", {}, **kw)
    assert r.status_code == 200 and r.json() == {"success": True}, r.text
    assert db.session_row(u.token) is None
    took, seen = G.poll_until_status(lambda: g.get("/j/x", headers=bearer(tok)), 401, REVOKED_WITHIN)
    print(f"JWT refused {took * 1000:.0f} ms after Better Auth's sign-out")
    G.assert_gw_error(g.get("/j/x", headers=bearer(tok)), 401, "JWT_REVOKED")
    accepted(g.get("/j/x", headers=bearer(keep)), sub=u.id, email=u.email)


# ---------------------------------------------------------------------------
# 6. BETTER_AUTH_SECRETS: Better Auth 1.7's versioned secrets, the same list on both sides

def _private_col(row) -> str:
    v = row["privateKey"]
    return json.loads(v) if v.startswith('"') else v


def _get_session(c: H.ApiClient, cookie_header: str):
    r = c.get("get-session", cookie=cookie_header)
    assert r.status_code == 200, f"{c.base_url} get-session: {r.status_code} {r.text[:300]}"
    return r.json()


def test_versioned_secrets_agree_across_a_rotation(shared_db, ba_factory, clients, secret):
    """Both sides given one BETTER_AUTH_SECRETS list: what either seals (the jwks private
    keys) under the current version opens on the other, also after a rotation puts a new
    secret first; a cookie one signs is accepted by the other, and after the rotation a
    cookie signed with the old secret is refused by both (Better Auth checks cookies with
    the current secret only). Keys sealed before versions (bare hex, BETTER_AUTH_SECRET)
    still open on both."""
    s1 = "v1-" + H.random_letters(40)
    s2 = "v2-" + H.random_letters(40)
    v1, v12 = f"1:{s1}", f"2:{s2}, 1:{s1}"

    # our authsvc, version 1 only, makes the first key: sealed $ba$1$
    svc, conn, url = shared_db({"JWT_ALG": "EdDSA", "BETTER_AUTH_SECRETS": v1})
    svc.start()
    (ours,) = rows(conn)
    assert _private_col(ours).startswith("$ba$1$"), f"not sealed under version 1:\n{show(conn)}"
    # rotation: Better Auth with 2 first opens our version-1 key and signs with it
    ba = ba_factory(url, jwt="eddsa", env_extra={"BETTER_AUTH_SECRETS": v12})
    bc = clients(ba)
    u = bc.sign_up(name="Rotated")
    assert parts(token_of(bc, u))[0]["kid"] == ours["id"], \
        f"Better Auth did not open our $ba$1$ key after the rotation:\n{show(conn)}"
    svc.stop()
    svc.env["BETTER_AUTH_SECRETS"] = v12
    svc.start()
    ac = clients(svc)
    assert parts(token_of(ac, u))[0]["kid"] == ours["id"], \
        f"authsvc did not keep signing with its $ba$1$ key after the rotation:\n{show(conn)}"
    assert len(rows(conn)) == 1

    # cookies: signed with the current secret (2) by either side, accepted by the other
    assert _get_session(ac, u.cookie)["user"]["id"] == u.id, "Better Auth's cookie refused"
    mine = ac.sign_up(name="Ours")
    assert H.cookie_value(s2, mine.token) in mine.cookie, "authsvc did not sign with version 2"
    assert _get_session(bc, mine.cookie)["user"]["id"] == mine.id, "our cookie refused"
    # ... and one signed with the old secret (1) by neither
    old = f"{H.SESSION_COOKIE}={H.cookie_value(s1, u.token)}"
    assert _get_session(bc, old) is None and _get_session(ac, old) is None

    # a key Better Auth seals under version 2 opens at our authsvc
    svc2, conn2, url2 = shared_db({"JWT_ALG": "EdDSA", "BETTER_AUTH_SECRETS": v12},
                                  name="authsvc-bajwt-v2")
    ba2 = ba_factory(url2, jwt="eddsa", env_extra={"BETTER_AUTH_SECRETS": v12})
    b2 = clients(ba2)
    w = b2.sign_up(name="Sealed by Better Auth")
    (theirs,) = rows(conn2) if rows(conn2) else [None]
    if theirs is None:          # the plugin makes its key on the first token
        token_of(b2, w)
        (theirs,) = rows(conn2)
    assert _private_col(theirs).startswith("$ba$2$"), f"Better Auth did not seal under 2:\n{show(conn2)}"
    svc2.env.update({"JWT_ISSUER": ba2.origin, "JWT_AUDIENCE": ba2.origin})
    svc2.start()
    assert parts(token_of(clients(svc2), w))[0]["kid"] == theirs["id"], \
        f"authsvc did not open Better Auth's $ba$2$ key:\n{show(conn2)}"


def test_keys_sealed_before_versions_open_with_the_legacy_secret(shared_db, ba_factory, clients,
                                                                 secret):
    """A key sealed with BETTER_AUTH_SECRET alone (bare hex) still opens on both sides once
    a BETTER_AUTH_SECRETS list is set, BETTER_AUTH_SECRET staying as the legacy secret."""
    svc, conn, url = shared_db({"JWT_ALG": "EdDSA"})
    svc.start()
    (ours,) = rows(conn)
    assert not _private_col(ours).startswith("$ba$"), show(conn)
    v = f"7:v7-{H.random_letters(40)}"
    svc.stop()
    svc.env["BETTER_AUTH_SECRETS"] = v
    svc.start()
    ba = ba_factory(url, jwt="eddsa", env_extra={"BETTER_AUTH_SECRETS": v})
    bc = clients(ba)
    u = bc.sign_up(name="Legacy key")
    assert parts(token_of(bc, u))[0]["kid"] == ours["id"], show(conn)
    assert parts(token_of(clients(svc), u))[0]["kid"] == ours["id"], show(conn)
