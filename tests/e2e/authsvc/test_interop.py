"""Interop: a real Better Auth 1.7.25 server and authsvc on ONE database.

A module fixture installs the reference server (tests/e2e/interop/install.sh,
npm, cached) and starts `node server.mjs` on a free loopback port against the
database the session's authsvc migrated, with the same BETTER_AUTH_SECRET and
the same TRUSTED_ORIGINS.  Every test is a real round trip through both
servers: users, passwords, cookies, bearer tokens, sign-out, sliding refresh,
response shapes and error bodies must be interchangeable.

Node and npm are required: without them the tests FAIL (CI installs them,
`make deps` does too).  install.sh is bounded by $PORTCULLIS_NPM_TIMEOUT
(default 300 s) and installs into $PORTCULLIS_NPM_DIR (default under ~/.cache).  The Better Auth server's stdout/stderr are kept in the
run's temp dir (`<tmp>/interop/`), which conftest keeps after a failure.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
import urllib.parse

import pytest

import pcsupport as H
from pcsupport.interop import START_TIMEOUT, BetterAuthServer  # noqa: F401 - START_TIMEOUT: test_interop_jwt
from pcsupport.interop import install as _install, node_env as _node_env
from pcsupport.suite import base_env
from pcsupport.checks import check_stopped

DAY = 86400
CLEARED = ("better-auth.session_token", "better-auth.session_data", "better-auth.dont_remember")
XFF = "203.0.113.7"
UA = "portcullis-interop/1.0"


# ---------------------------------------------------------------------------
# The Better Auth server


@pytest.fixture(scope="module")
def ba(authsvc, main_db_url, secret, trusted_origins, tmp_root):
    """Better Auth 1.7.25 on the main database (the one `authsvc migrate` prepared)."""
    npm_dir = _install()
    logdir = tmp_root / "interop"
    logdir.mkdir(parents=True, exist_ok=True)
    port = H.free_port()
    env = {
        "DATABASE_URL": main_db_url,
        "BETTER_AUTH_SECRET": secret,
        "BETTER_AUTH_URL": f"http://127.0.0.1:{port}",
        "TRUSTED_ORIGINS": ",".join(trusted_origins),
        "PORT": str(port),
    }
    proc = H.Proc(["node", "server.mjs"], env=_node_env(env), cwd=npm_dir,
                  stdout=logdir / f"better-auth-{port}.stdout", stderr=logdir / f"better-auth-{port}.stderr",
                  name="better-auth")
    srv = BetterAuthServer(proc, port, env, logdir)
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}")
            return f"ready {port}" in H.tail(proc.stdout_path, 2000)
        try:
            H.wait_until(ready, START_TIMEOUT, interval=0.05, what=f"Better Auth 'ready {port}'")
        except (TimeoutError, RuntimeError) as e:
            pytest.fail(f"Better Auth server did not start ({e}):\n{srv.logs()}", pytrace=False)
        # Better Auth 1.7 checks the schema on its first request and exits on a
        # mismatch (FACTS.md §2): this request is the schema-compatibility check.
        import requests
        try:
            r = requests.get(srv.base_url + "/api/auth/ok", timeout=20)
            ok = r.status_code == 200 and r.json() == {"ok": True}
            detail = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            ok, detail = False, repr(e)
        if not ok or proc.poll() is not None:
            time.sleep(0.3)
            pytest.fail("Better Auth rejected the database that `authsvc migrate` created "
                        f"(GET /api/auth/ok -> {detail}); its schema check says:\n{srv.logs()}",
                        pytrace=False)
        yield srv
    finally:
        rc = proc.stop(signal.SIGTERM, timeout=10)
        if proc.forced:
            print(f"better-auth did not exit within 10 s of SIGTERM (rc {rc}); logs in {logdir}")


@pytest.fixture(autouse=True)
def _ba_alive(ba):
    yield
    if not ba.running:
        pytest.fail(f"the Better Auth server died during this test (rc {ba.proc.returncode}):\n{ba.logs()}",
                    pytrace=False)


@pytest.fixture
def shared_origin(trusted_origins):
    """A front-end origin both servers trust (TRUSTED_ORIGINS)."""
    return trusted_origins[0]


@pytest.fixture
def bac(ba, shared_origin):
    c = H.ApiClient(ba, origin=shared_origin, xff=XFF)
    c.http.headers["User-Agent"] = UA
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def proxied_authsvc(pg, redis_srv, authsvc, tmp_root):
    """authsvc as Better Auth is set up here: the client address comes from
    X-Forwarded-For, which authsvc believes only from a trusted proxy (the test
    client on 127.0.0.1 plays the proxy; Better Auth trusts the header from anyone)."""
    svc = H.Authsvc(base_env(pg, redis_srv, TRUSTED_PROXIES="127.0.0.1"), migrate=False,
                    workdir=str(tmp_root / "authsvc-interop"), name="authsvc-interop")
    try:
        yield svc
    finally:
        check_stopped(svc)


@pytest.fixture
def asc(proxied_authsvc, shared_origin):
    c = H.ApiClient(proxied_authsvc, origin=shared_origin, xff=XFF)
    c.http.headers["User-Agent"] = UA
    try:
        yield c
    finally:
        c.close()


# ---------------------------------------------------------------------------
# Helpers


def _shape(v):
    """JSON structure with key order and value types, without the values."""
    if isinstance(v, dict):
        return [(k, _shape(x)) for k, x in v.items()]
    if isinstance(v, list):
        return [_shape(x) for x in v]
    return "null" if v is None else type(v).__name__


def _cookies(resp):
    """[(name, value_is_empty, {attr: value})] in header order."""
    out = []
    for h in H.set_cookie_headers(resp):
        name, value, attrs = H.parse_set_cookie(h)
        attrs = {k: (v.lower() if k == "samesite" and isinstance(v, str) else v) for k, v in attrs.items()}
        out.append((name, value == "", attrs))
    return out


def _describe(label, r):
    try:
        body = r.text
    except Exception:  # noqa: BLE001
        body = "<?>"
    hdrs = {k: v for k, v in r.headers.items() if k.lower() not in ("date", "connection", "keep-alive")}
    return (f"{label}: {r.request.method} {r.request.url}\n  -> {r.status_code} {hdrs}\n"
            f"     set-cookie: {H.set_cookie_headers(r)}\n     body: {body[:600]}")


def _both(ra, rb):
    return _describe("Better Auth", ra) + "\n" + _describe("authsvc", rb)


def assert_same_exchange(ra, rb, *, body_values=False):
    """Same status, content-type, body key order/types (or values), Set-Cookie names and
    attributes, and the same set-auth-token / cache-control behaviour."""
    ctx = _both(ra, rb)
    assert ra.status_code == rb.status_code, "status differs\n" + ctx
    ta = (ra.headers.get("content-type") or "").split(";")[0].strip()
    tb = (rb.headers.get("content-type") or "").split(";")[0].strip()
    assert ta == tb, "content-type differs\n" + ctx
    if ta == "application/json":
        ja, jb = ra.json(), rb.json()
        if body_values:
            assert _items(ja) == _items(jb), "body differs\n" + ctx
        else:
            assert _shape(ja) == _shape(jb), "body shape (keys, order, types) differs\n" + ctx
    assert _cookies(ra) == _cookies(rb), "Set-Cookie differs\n" + ctx
    assert ("set-auth-token" in ra.headers) == ("set-auth-token" in rb.headers), "set-auth-token\n" + ctx
    # authsvc may add Cache-Control: no-store everywhere (harmless); where Better Auth
    # sends cache headers (get-session), authsvc must send the same
    for h in ("cache-control", "pragma"):
        if h in ra.headers:
            assert (ra.headers[h]).replace(" ", "") == (rb.headers.get(h) or "").replace(" ", ""), \
                f"{h} differs\n" + ctx


def _items(v):
    """Values with key order, for an exact comparison that also sees order."""
    if isinstance(v, dict):
        return [(k, _items(x)) for k, x in v.items()]
    if isinstance(v, list):
        return [_items(x) for x in v]
    return v


def _iso(s):
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def _days_left(s):
    return (_iso(s) - dt.datetime.now(dt.timezone.utc)).total_seconds() / DAY


def _session_cookie(resp):
    return H.set_cookies(resp).get(H.SESSION_COOKIE)


def _check_issued(resp, secret, token):
    """A session cookie and set-auth-token for token, signed with the shared secret."""
    signed = H.signed_value(secret, token)
    c = _session_cookie(resp)
    assert c is not None, _describe("response", resp)
    assert urllib.parse.unquote(c[0]) == signed, _describe("response", resp)
    assert resp.headers.get("set-auth-token") == signed, _describe("response", resp)


# ---------------------------------------------------------------------------
# 1. Users signed up on one side sign in on the other


def test_better_auth_user_signs_in_on_authsvc(bac, asc, db, secret):
    u = bac.sign_up(name="BA Native")
    assert u.id and u.token
    r = asc.post("sign-in/email", {"email": u.email, "password": u.password})
    assert r.status_code == 200, _describe("authsvc sign-in of a Better Auth user", r)
    body = r.json()
    assert body["user"]["id"] == u.id, body
    assert body["user"]["email"] == u.email.lower() and body["user"]["name"] == "BA Native"
    _check_issued(r, secret, body["token"])
    row = db.session_row(body["token"])
    assert row and row["userId"] == u.id
    # the user object is the same row, rendered identically by both servers
    rb = bac.post("sign-in/email", {"email": u.email, "password": u.password})
    assert rb.status_code == 200, rb.text
    assert _items(rb.json()["user"]) == _items(body["user"]), _both(rb, r)


def test_authsvc_user_signs_in_on_better_auth(bac, asc, db, secret):
    u = asc.sign_up(name="Portcullis Native")
    assert u.id and u.token
    r = bac.post("sign-in/email", {"email": u.email, "password": u.password})
    assert r.status_code == 200, _describe("Better Auth sign-in of an authsvc user", r)
    body = r.json()
    assert body["user"]["id"] == u.id, body
    assert body["user"]["email"] == u.email.lower() and body["user"]["name"] == "Portcullis Native"
    _check_issued(r, secret, body["token"])
    row = db.session_row(body["token"])
    assert row and row["userId"] == u.id
    ra = asc.post("sign-in/email", {"email": u.email, "password": u.password})
    assert ra.status_code == 200, ra.text
    assert _items(ra.json()["user"]) == _items(body["user"]), _both(r, ra)


def test_mixed_case_email_is_found_by_the_other_side(bac, asc):
    email = H.unique_email("Mixed").replace("mixed", "MiXeD").replace("example.com", "Example.COM")
    u = bac.sign_up(email=email)
    r = asc.post("sign-in/email", {"email": email.upper(), "password": u.password})
    assert r.status_code == 200, _describe("authsvc", r)
    assert r.json()["user"]["id"] == u.id
    v = asc.sign_up(email=H.unique_email("Other").upper())
    r = bac.post("sign-in/email", {"email": v.email.lower(), "password": v.password})
    assert r.status_code == 200, _describe("Better Auth", r)
    assert r.json()["user"]["id"] == v.id


# ---------------------------------------------------------------------------
# 2. Cookies and bearer tokens are accepted both ways


@pytest.mark.parametrize("issuer", ["authsvc", "better-auth"])
@pytest.mark.parametrize("cred", ["cookie", "bearer"])
def test_session_issued_by_one_side_is_accepted_by_the_other(bac, asc, secret, issuer, cred):
    src, dst = (asc, bac) if issuer == "authsvc" else (bac, asc)
    u = src.sign_up(name=f"Issued by {issuer}")
    r = src.post("sign-in/email", {"email": u.email, "password": u.password})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    if cred == "cookie":
        value = _session_cookie(r)[0]
        kw = {"cookie": f"{H.SESSION_COOKIE}={value}"}
    else:
        kw = {"bearer": r.headers["set-auth-token"]}
    g = dst.get("get-session", **kw)
    assert g.status_code == 200, _describe("get-session", g)
    body = g.json()
    assert body is not None, f"{issuer}'s {cred} not accepted by the other server\n" + _describe("get-session", g)
    assert body["session"]["token"] == token
    assert body["user"]["id"] == u.id and body["session"]["userId"] == u.id
    # the same session, read back by the issuer: identical bodies (same row)
    own = src.get("get-session", **kw)
    assert own.status_code == 200 and own.json() is not None, own.text
    assert body["session"]["id"] == own.json()["session"]["id"]
    assert _items(own.json()) == _items(body), _both(*((own, g) if src is bac else (g, own)))


@pytest.mark.parametrize("issuer", ["authsvc", "better-auth"])
def test_raw_bearer_token_is_accepted_by_the_other_side(bac, asc, issuer):
    src, dst = (asc, bac) if issuer == "authsvc" else (bac, asc)
    u = src.sign_up()
    g = dst.get("get-session", bearer=u.token)
    assert g.status_code == 200 and g.json() is not None, _describe("get-session (raw bearer)", g)
    assert g.json()["session"]["token"] == u.token and g.json()["user"]["id"] == u.id


@pytest.mark.parametrize("issuer", ["authsvc", "better-auth"])
def test_tampered_cookie_is_refused_by_both(bac, asc, secret, issuer):
    src = asc if issuer == "authsvc" else bac
    u = src.sign_up()
    bad = H.cookie_value("some-other-secret-0123456789abcdef0123", u.token)
    ra = bac.get("get-session", cookie=f"{H.SESSION_COOKIE}={bad}")
    rb = asc.get("get-session", cookie=f"{H.SESSION_COOKIE}={bad}")
    assert ra.status_code == 200 and ra.json() is None, _describe("Better Auth", ra)
    assert rb.status_code == 200 and rb.json() is None, _describe("authsvc", rb)
    assert_same_exchange(ra, rb, body_values=True)


# ---------------------------------------------------------------------------
# 3. Sign-out on one side ends the session on the other


@pytest.mark.parametrize("where", ["better-auth", "authsvc"])
@pytest.mark.parametrize("cred", ["cookie", "bearer"])
def test_sign_out_ends_the_session_for_the_other_side(bac, asc, db, where, cred):
    out_c, other = (bac, asc) if where == "better-auth" else (asc, bac)
    u = other.sign_up(name="Signing out")           # issued by the other side
    kw = {"cookie": u.cookie} if cred == "cookie" else {"bearer": u.response.headers["set-auth-token"]}
    assert other.session_of(**kw)["session"]["token"] == u.token
    assert out_c.session_of(**kw)["session"]["token"] == u.token
    r = out_c.post("sign-out", {}, **kw)
    assert r.status_code == 200 and r.json() == {"success": True}, _describe("sign-out", r)
    assert db.session_row(u.token) is None, "sign-out left the row in PostgreSQL"
    g = other.get("get-session", **kw)
    assert g.status_code == 200, g.text
    assert g.json() is None, f"session signed out on {where} still valid on the other server\n" + \
        _describe("get-session", g)
    assert out_c.session_of(**kw) is None


def test_sign_out_responses_match(bac, asc):
    ua, ub = bac.sign_up(), asc.sign_up()
    ra = bac.post("sign-out", {}, cookie=ua.cookie)
    rb = asc.post("sign-out", {}, cookie=ub.cookie)
    assert ra.status_code == 200, ra.text
    assert_same_exchange(ra, rb, body_values=True)


# ---------------------------------------------------------------------------
# 4. Password changes


@pytest.mark.parametrize("where", ["better-auth", "authsvc"])
def test_password_changed_on_one_side_works_on_the_other(bac, asc, where):
    chg, other = (bac, asc) if where == "better-auth" else (asc, bac)
    u = other.sign_up(name="Changing password")
    new = H.new_password("New")
    r = chg.post("change-password", {"currentPassword": u.password, "newPassword": new}, cookie=u.cookie)
    assert r.status_code == 200, _describe(f"change-password on {where}", r)
    old_try = other.post("sign-in/email", {"email": u.email, "password": u.password})
    assert old_try.status_code == 401, "old password still works on the other side\n" + \
        _describe("sign-in", old_try)
    assert old_try.json().get("code") == "INVALID_EMAIL_OR_PASSWORD", old_try.text
    new_try = other.post("sign-in/email", {"email": u.email, "password": new})
    assert new_try.status_code == 200, "new password refused on the other side\n" + _describe("sign-in", new_try)
    assert new_try.json()["user"]["id"] == u.id
    # and on the side that changed it
    assert chg.post("sign-in/email", {"email": u.email, "password": u.password}).status_code == 401
    assert chg.post("sign-in/email", {"email": u.email, "password": new}).status_code == 200
    # a plain change-password keeps the session (both sides)
    assert other.session_of(u)["session"]["token"] == u.token


@pytest.mark.parametrize("where", ["better-auth", "authsvc"])
def test_change_password_revoking_other_sessions_crosses_over(bac, asc, db, secret, where):
    chg, other = (bac, asc) if where == "better-auth" else (asc, bac)
    u = other.sign_up()                                 # session A, issued by the other side
    s2 = chg.sign_in(u.email, u.password)               # session B, on the changing side
    new = H.new_password("Rev")
    r = chg.post("change-password", {"currentPassword": u.password, "newPassword": new,
                                     "revokeOtherSessions": True}, cookie=s2.cookie)
    assert r.status_code == 200, _describe("change-password", r)
    tok = r.json()["token"]
    assert tok and tok not in (u.token, s2.token), r.text
    _check_issued(r, secret, tok)
    assert other.session_of(u) is None, "revoked session still valid on the other side"
    assert other.session_of(cookie=s2.cookie) is None
    assert other.session_of(cookie=H.SESSION_COOKIE + "=" + H.cookie_value(secret, tok))["user"]["id"] == u.id
    assert db.scalar('select count(*) from "session" where "userId" = %s', (u.id,)) == 1


def test_change_password_responses_match(bac, asc):
    ua, ub = bac.sign_up(), asc.sign_up()
    ra = bac.post("change-password", {"currentPassword": ua.password, "newPassword": H.new_password()},
                  cookie=ua.cookie)
    rb = asc.post("change-password", {"currentPassword": ub.password, "newPassword": H.new_password()},
                  cookie=ub.cookie)
    assert ra.status_code == 200, ra.text
    assert_same_exchange(ra, rb)


@pytest.mark.parametrize("where", ["better-auth", "authsvc"])
def test_update_user_is_seen_by_the_other_side(bac, asc, where):
    upd, other = (bac, asc) if where == "better-auth" else (asc, bac)
    u = other.sign_up(name="Before")
    r = upd.post("update-user", {"name": "After"}, cookie=u.cookie)
    assert r.status_code == 200 and r.json() == {"status": True}, _describe("update-user", r)
    s = other.session_of(u)
    assert s["user"]["name"] == "After"
    assert _items(s) == _items(upd.session_of(u))


# ---------------------------------------------------------------------------
# 5. Response shapes


def _pair_sign_up(bac, asc, **extra):
    bodies = []
    for c in (bac, asc):
        b = {"name": "Shape User", "email": H.unique_email("shape"), "password": H.new_password()}
        b.update(extra)
        bodies.append((c.post("sign-up/email", b), b))
    return bodies


def test_sign_up_responses_match(bac, asc, secret):
    (ra, _), (rb, _) = _pair_sign_up(bac, asc)
    assert ra.status_code == 200, ra.text
    assert_same_exchange(ra, rb)
    assert ra.headers.get("access-control-expose-headers", "").lower() == \
        rb.headers.get("access-control-expose-headers", "").lower(), _both(ra, rb)
    for r in (ra, rb):
        _check_issued(r, secret, r.json()["token"])


def test_sign_in_responses_match(bac, asc, secret):
    ua, ub = bac.sign_up(), asc.sign_up()
    ra = bac.post("sign-in/email", {"email": ua.email, "password": ua.password})
    rb = asc.post("sign-in/email", {"email": ub.email, "password": ub.password})
    assert ra.status_code == 200, ra.text
    assert_same_exchange(ra, rb)
    for r in (ra, rb):
        _check_issued(r, secret, r.json()["token"])


def test_sign_in_remember_me_false_responses_match(bac, asc):
    ua, ub = bac.sign_up(), asc.sign_up()
    ra = bac.post("sign-in/email", {"email": ua.email, "password": ua.password, "rememberMe": False})
    rb = asc.post("sign-in/email", {"email": ub.email, "password": ub.password, "rememberMe": False})
    assert ra.status_code == 200, ra.text
    assert_same_exchange(ra, rb)
    # dont_remember = "true." + HMAC(secret, "true"): the same constant on both
    assert H.set_cookies(ra)["better-auth.dont_remember"][0] == H.set_cookies(rb)["better-auth.dont_remember"][0]


def test_get_session_responses_match(bac, asc):
    ua, ub = bac.sign_up(), asc.sign_up()
    ra, rb = bac.get_session(ua), asc.get_session(ub)
    assert ra.status_code == 200 and ra.json(), ra.text
    assert_same_exchange(ra, rb)
    sa, sb = ra.json()["session"], rb.json()["session"]
    assert sa["ipAddress"] == sb["ipAddress"] and sa["userAgent"] == sb["userAgent"] == UA, _both(ra, rb)
    # no session at all
    assert_same_exchange(bac.get("get-session"), asc.get("get-session"), body_values=True)


def test_stored_rows_match(bac, asc, db):
    """The rows each side writes for a sign-up have the same columns filled the same way."""
    ua, ub = bac.sign_up(name="Row"), asc.sign_up(name="Row")

    def norm(row, drop):
        return {k: (type(v).__name__ if k not in ("providerId", "name", "emailVerified", "image",
                                                 "ipAddress", "userAgent") else v)
                for k, v in row.items() if k not in drop}
    assert norm(db.user_row(id=ua.id), ()) == norm(db.user_row(id=ub.id), ())
    ca, cb = db.credential(ua.id), db.credential(ub.id)
    assert ca["accountId"] == ua.id and cb["accountId"] == ub.id
    assert norm(ca, ()) == norm(cb, ())
    assert norm(db.session_row(ua.token), ()) == norm(db.session_row(ub.token), ()), \
        (db.session_row(ua.token), db.session_row(ub.token))


# ---------------------------------------------------------------------------
# 6. Error parity


def _same_error(ra, rb, status, code):
    ctx = _both(ra, rb)
    assert ra.status_code == status and ra.json().get("code") == code, "Better Auth itself changed?\n" + ctx
    assert rb.status_code == status, f"authsvc status differs\n{ctx}"
    assert rb.json().get("code") == code, f"authsvc code differs\n{ctx}"
    assert _items(ra.json()) == _items(rb.json()), f"error body differs\n{ctx}"
    assert_same_exchange(ra, rb, body_values=True)


@pytest.mark.parametrize("owner", ["better-auth", "authsvc"])
def test_wrong_password_error_matches(bac, asc, owner):
    u = (bac if owner == "better-auth" else asc).sign_up()
    bad = {"email": u.email, "password": H.new_password("Wrong")}
    _same_error(bac.post("sign-in/email", bad), asc.post("sign-in/email", bad), 401, "INVALID_EMAIL_OR_PASSWORD")


def test_unknown_email_error_matches(bac, asc):
    bad = {"email": H.unique_email("nobody"), "password": H.new_password()}
    _same_error(bac.post("sign-in/email", bad), asc.post("sign-in/email", bad), 401, "INVALID_EMAIL_OR_PASSWORD")


@pytest.mark.parametrize("owner", ["better-auth", "authsvc"])
@pytest.mark.parametrize("case", ["same", "upper"])
def test_duplicate_email_across_servers(bac, asc, db, owner, case):
    first, second = (bac, asc) if owner == "better-auth" else (asc, bac)
    u = first.sign_up()
    email = u.email if case == "same" else u.email.upper()
    body = {"name": "Dup", "email": email, "password": H.new_password()}
    r2 = second.post("sign-up/email", body)
    r1 = first.post("sign-up/email", dict(body, email=email))
    ra, rb = (r1, r2) if first is bac else (r2, r1)
    _same_error(ra, rb, 422, "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL")
    assert db.scalar('select count(*) from "user" where lower(email) = lower(%s)', (email,)) == 1


@pytest.mark.parametrize("password,code", [("short", "PASSWORD_TOO_SHORT"), ("x" * 129, "PASSWORD_TOO_LONG")],
                         ids=["short", "long"])
def test_password_length_errors_match(bac, asc, password, code):
    def body():
        return {"name": "Len", "email": H.unique_email("len"), "password": password}
    _same_error(bac.post("sign-up/email", body()), asc.post("sign-up/email", body()), 400, code)


def test_change_password_wrong_current_matches(bac, asc):
    ua, ub = bac.sign_up(), asc.sign_up()
    b = {"currentPassword": H.new_password("Nope"), "newPassword": H.new_password()}
    _same_error(bac.post("change-password", b, cookie=ua.cookie), asc.post("change-password", b, cookie=ub.cookie),
                400, "INVALID_PASSWORD")


def test_untrusted_origin_error_matches(bac, asc):
    ua, ub = bac.sign_up(), asc.sign_up()
    ra = bac.post("sign-out", {}, cookie=ua.cookie, origin="http://evil.example")
    rb = asc.post("sign-out", {}, cookie=ub.cookie, origin="http://evil.example")
    _same_error(ra, rb, 403, "INVALID_ORIGIN")


# ---------------------------------------------------------------------------
# 7. Sliding refresh, expiry and rememberMe:false across servers


@pytest.mark.parametrize("refresher", ["better-auth", "authsvc"])
def test_sliding_refresh_written_by_one_side_is_read_by_the_other(bac, asc, db, secret, refresher):
    ref, other = (bac, asc) if refresher == "better-auth" else (asc, bac)
    u = other.sign_up()
    db.execute('update "session" set "expiresAt" = now() + interval \'5 days\' where token = %s', (u.token,))
    r = ref.get_session(u)
    assert r.status_code == 200 and r.json(), r.text
    assert 6.9 < _days_left(r.json()["session"]["expiresAt"]) <= 7.01, _describe("refreshing get-session", r)
    _check_issued(r, secret, u.token)
    assert _session_cookie(r)[1].get("max-age") == "604800"
    left = db.seconds_left(u.token)
    assert 7 * DAY - 120 < float(left) <= 7 * DAY + 5, left
    # the other side reads the refreshed row and does not refresh again
    g = other.get_session(u)
    assert g.status_code == 200 and g.json(), g.text
    assert g.json()["session"]["expiresAt"] == r.json()["session"]["expiresAt"], _both(r, g)
    assert g.json()["session"]["updatedAt"] == r.json()["session"]["updatedAt"], _both(r, g)
    assert not H.set_cookie_headers(g) and "set-auth-token" not in g.headers, _describe("get-session", g)


def test_sliding_refresh_responses_match(bac, asc, db):
    ua, ub = bac.sign_up(), asc.sign_up()
    for u in (ua, ub):
        db.execute('update "session" set "expiresAt" = now() + interval \'5 days\' where token = %s', (u.token,))
    ra, rb = bac.get_session(ua), asc.get_session(ub)
    assert ra.status_code == 200 and ra.json(), ra.text
    assert_same_exchange(ra, rb)


@pytest.mark.parametrize("issuer", ["better-auth", "authsvc"])
def test_expired_session_is_dead_on_both(bac, asc, db, issuer):
    src = bac if issuer == "better-auth" else asc
    u1, u2 = src.sign_up(), src.sign_up()
    for u in (u1, u2):
        db.execute('update "session" set "expiresAt" = now() - interval \'1 minute\' where token = %s',
                   (u.token,))
    ra, rb = bac.get_session(u1), asc.get_session(u2)
    assert ra.status_code == 200 and ra.json() is None, ra.text
    assert_same_exchange(ra, rb, body_values=True)
    assert db.session_row(u1.token) is None and db.session_row(u2.token) is None, \
        "an expired session row was not deleted on read"


@pytest.mark.parametrize("issuer", ["better-auth", "authsvc"])
def test_dont_remember_cookie_is_honoured_by_the_other_side(bac, asc, db, issuer):
    src, dst = (bac, asc) if issuer == "better-auth" else (asc, bac)
    u = src.sign_up()
    r = src.post("sign-in/email", {"email": u.email, "password": u.password, "rememberMe": False})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    jar = H.set_cookies(r)
    cookie = "; ".join(f"{n}={jar[n][0]}" for n in (H.SESSION_COOKIE, "better-auth.dont_remember"))
    before = db.seconds_left(token)
    assert DAY - 120 < float(before) <= DAY + 5, before
    # a 1-day session is "due" for refresh at once; the signed dont_remember cookie
    # from the other server must stop the refresh
    g = dst.get("get-session", cookie=cookie)
    assert g.status_code == 200 and g.json() and g.json()["session"]["token"] == token, _describe("get-session", g)
    assert not H.set_cookie_headers(g), "dont_remember cookie of the other side ignored\n" + _describe("gs", g)
    assert abs(float(db.seconds_left(token)) - float(before)) < 30
    assert _days_left(g.json()["session"]["expiresAt"]) < 1.01
