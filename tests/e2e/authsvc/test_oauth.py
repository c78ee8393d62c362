"""Issue 8: sign in with Google or any OIDC provider, restricted to ALLOWED_DOMAINS.

A fake provider (fake_idp.py: a real HTTP server on loopback signing real
RS256 ID tokens, checking PKCE, client credentials and redirect_uri) stands in
for Google and for a generic OIDC issuer. Every test walks the browser flow:
POST /sign-in/social -> the provider's /authorize -> GET /callback/:provider
with the state cookie, then looks at the rows PostgreSQL really holds.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse

import pytest
import requests

import pcsupport as H
from pcsupport.suite import base_env, check_stopped as _check_stopped
from pcsupport.fake_idp import FakeIdP, s256

ALLOWED = "acme.test,acme-corp.test"
TF_COOKIE = "better-auth.two_factor"
STATE_COOKIE = "better-auth.state"
TIMEOUT_MS = 1500


def email(domain="acme.test", tag="g"):
    return f"{tag}-{secrets.token_hex(5)}@{domain}"


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as p:
        yield p


@pytest.fixture(autouse=True)
def _reset_idp(request):
    if "idp" not in request.fixturenames:
        yield
        return
    p = request.getfixturevalue("idp")
    p.delay.clear()
    p.fail.clear()
    p.sign_with_foreign_key = False
    p.id_token_overrides = {}
    p.omit_email_in_id_token = False
    yield


def _start(pg, redis_srv, tmp_root, name, extra):
    env = base_env(pg, redis_srv)
    env.update({"OAUTH_HTTP_TIMEOUT_MS": str(TIMEOUT_MS)})
    env.update(extra)
    return H.Authsvc(env, workdir=str(tmp_root / "oauth"), name=name)


@pytest.fixture(scope="module")
def gsvc(pg, redis_srv, main_db_url, tmp_root, idp):
    """authsvc with Google pointed at the fake provider, two allowed domains."""
    svc = _start(pg, redis_srv, tmp_root, "authsvc-google",
                 {**idp.google_env(), "ALLOWED_DOMAINS": ALLOWED})
    try:
        yield svc
    finally:
        _check_stopped(svc)


class Flow:
    def __init__(self):
        self.start = self.authorize = self.callback = None
        self.state = self.state_cookie = None

    @property
    def location(self):
        return self.callback.headers.get("Location")

    def error(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.location).query)
        return q.get("error", [None])[0]


def begin(svc, provider="google", **body):
    body = {"provider": provider, **body}
    return requests.post(svc.api("sign-in/social"), json=body, timeout=20, allow_redirects=False)


def state_cookie_of(r):
    v = H.set_cookies(r).get(STATE_COOKIE)
    return v[0] if v else None


def sign_in(svc, idp, *, provider="google", cookie=True, accept=None, before_callback=None,
            **body):
    """The browser's walk. Returns a Flow with the three responses."""
    f = Flow()
    body.setdefault("callbackURL", "/dashboard")
    body.setdefault("errorCallbackURL", "/oops")
    f.start = begin(svc, provider, **body)
    assert f.start.status_code == 200, f.start.text
    url = f.start.json()["url"]
    f.state = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]
    f.state_cookie = state_cookie_of(f.start)
    H.sensitive(f.state)
    f.authorize = requests.get(url, allow_redirects=False, timeout=20)
    assert f.authorize.status_code == 302, f.authorize.text
    cb = f.authorize.headers["Location"]
    if before_callback:
        before_callback(f)
    headers = {}
    if cookie:
        headers["Cookie"] = f"{STATE_COOKIE}={f.state_cookie if cookie is True else cookie}"
    if accept:
        headers["Accept"] = accept
    f.callback = requests.get(cb, headers=headers, allow_redirects=False, timeout=30)
    for v, _ in H.set_cookies(f.callback).values():
        H.sensitive(v)
        H.sensitive(urllib.parse.unquote(v))
    return f


def session_cookie(r):
    v = H.set_cookies(r).get(H.SESSION_COOKIE)
    return f"{H.SESSION_COOKIE}={v[0]}" if v and v[0] else None


def get_session(svc, cookie):
    r = requests.get(svc.api("get-session"), headers={"Cookie": cookie}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def core_counts(db):
    return {t: db.scalar(f'select count(*) from "{t}"') for t in ("user", "account", "session")}


# ---------------------------------------------------------------------------
# The start of the flow


def test_sign_in_social_answers_url_state_row_and_cookie(gsvc, idp, db, secret):
    r = begin(gsvc, callbackURL="/dashboard", errorCallbackURL="http://app.example.test/err",
              newUserCallbackURL="/welcome", additionalData={"plan": "pro"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["url", "redirect"] and body["redirect"] is True
    assert r.headers["Location"] == body["url"]
    u = urllib.parse.urlsplit(body["url"])
    assert f"{u.scheme}://{u.netloc}{u.path}" == idp.url("authorize")
    q = dict(urllib.parse.parse_qsl(u.query))
    state = q["state"]
    assert len(state) == 32 and all(c.isalnum() or c in "-_" for c in state)
    assert q["response_type"] == "code" and q["client_id"] == idp.client_id
    assert q["redirect_uri"] == gsvc.base_url + "/api/auth/callback/google"
    assert q["scope"].split() == ["email", "profile", "openid"]
    assert q["code_challenge_method"] == "S256" and q["include_granted_scopes"] == "true"
    # the signed state cookie (better-call format, Max-Age 300)
    value, attrs = H.set_cookies(r)[STATE_COOKIE]
    assert urllib.parse.unquote(value) == H.signed_value(secret, state)
    assert attrs["max-age"] == "300" and attrs["path"] == "/" and attrs.get("httponly")
    assert attrs["samesite"].lower() == "lax"
    # the verification row, Better Auth 1.7's format
    row = db.dicts('select *, extract(epoch from "expiresAt" - now()) as left from verification '
                   'where identifier = %s', (f"auth-state:{state}",))
    assert len(row) == 1
    assert 590 < row[0]["left"] <= 600
    v = json.loads(row[0]["value"])
    assert list(v) == ["plan", "callbackURL", "codeVerifier", "errorURL", "newUserURL",
                       "expiresAt", "oauthState"]
    assert v["plan"] == "pro" and v["callbackURL"] == "/dashboard"
    assert v["errorURL"] == "http://app.example.test/err" and v["newUserURL"] == "/welcome"
    assert v["oauthState"] == state
    assert len(v["codeVerifier"]) == 128 and s256(v["codeVerifier"]) == q["code_challenge"]
    assert abs(v["expiresAt"] - time.time() * 1000 - 600000) < 10000
    H.sensitive(v["codeVerifier"])
    H.sensitive(state)


def test_sign_in_social_refusals(gsvc):
    r = begin(gsvc, provider="github")
    H.assert_error(r, 404, "PROVIDER_NOT_FOUND")
    H.assert_error(begin(gsvc, callbackURL="https://evil.example.org/x"), 403, "INVALID_CALLBACK_URL")
    H.assert_error(begin(gsvc, errorCallbackURL="https://evil.example.org/x"), 403,
                   "INVALID_ERROR_CALLBACK_URL")
    H.assert_error(begin(gsvc, newUserCallbackURL="//evil.example.org"), 403,
                   "INVALID_NEW_USER_CALLBACK_URL")
    for field, code in (("callbackURL", "INVALID_CALLBACK_URL"),
                        ("errorCallbackURL", "INVALID_ERROR_CALLBACK_URL"),
                        ("newUserCallbackURL", "INVALID_NEW_USER_CALLBACK_URL")):
        for url in ("http://evil.test\\.app.example.test/", "http://evil.test\\@app.example.test/",
                    "javascript://app.example.test/%0aalert(1)", "/\\evil.example.org"):
            H.assert_error(begin(gsvc, **{field: url}), 403, code)
    r = requests.post(gsvc.api("sign-in/social"), json={}, timeout=10)
    H.assert_error(r, 400, "VALIDATION_ERROR")


def _rewrite_state(db, key, value):
    """A before_callback that rewrites one redirect target in the state row, as a
    Better Auth server sharing the database may have stored it (its server-side
    check lets javascript: URLs through a scheme-less wildcard, issue #13)."""
    def hook(f):
        ident = f"auth-state:{f.state}"
        v = json.loads(db.scalar("select value from verification where identifier = %s", (ident,)))
        v[key] = value
        db.execute("update verification set value = %s where identifier = %s", (json.dumps(v), ident))
    return hook


@pytest.mark.parametrize("key", ["callbackURL", "newUserURL"])
@pytest.mark.parametrize("url", ["javascript://app.example.test/%0aalert(1)",
                                 "https://evil.test\\.app.example.test/",
                                 "data://app.example.test/,x", "//evil.test", "/\\evil.test"])
def test_callback_rechecks_stored_redirect_targets(gsvc, idp, db, key, url):
    idp.login(email=email(), hd="acme.test")
    before = core_counts(db)
    f = sign_in(gsvc, idp, newUserCallbackURL="/welcome", before_callback=_rewrite_state(db, key, url))
    assert f.callback.status_code == 302, f.callback.text
    assert f.location == "/oops?error=invalid_callback_url", f.location
    assert session_cookie(f.callback) is None
    assert core_counts(db) == before
    assert db.scalar("select count(*) from verification where identifier = %s",
                     (f"auth-state:{f.state}",)) == 0      # the state is spent all the same


def test_callback_drops_an_unsafe_stored_error_url(gsvc, idp, db):
    idp.login(email=email("outsider.test"), hd="outsider.test")
    f = sign_in(gsvc, idp, before_callback=_rewrite_state(
        db, "errorURL", "javascript://app.example.test/%0aalert(1)"))
    assert f.location == gsvc.base_url + "/api/auth/error?error=domain_not_allowed", f.location


# ---------------------------------------------------------------------------
# Allowed and refused


def test_new_user_on_allowed_domain(gsvc, idp, db):
    e = email("acme.test").upper().replace("ACME.TEST", "Acme.Test")
    claims = idp.login(email=e, hd="acme.test", name="Ada Lovelace")
    f = sign_in(gsvc, idp, newUserCallbackURL="/welcome")
    assert f.callback.status_code == 302, f.callback.text
    assert f.location == "/welcome"
    # state consumed, cookie expired, session cookie + set-auth-token
    assert db.scalar("select count(*) from verification where identifier = %s",
                     (f"auth-state:{f.state}",)) == 0
    assert H.set_cookies(f.callback)[STATE_COOKIE][1]["max-age"] == "0"
    cookie = session_cookie(f.callback)
    assert cookie and f.callback.headers.get("set-auth-token")
    user = db.user_row(email=e.lower())
    assert user and user["emailVerified"] is True and user["name"] == "Ada Lovelace"
    assert user["image"] == claims["picture"]
    acc = db.dicts('select * from account where "userId" = %s', (user["id"],))
    assert len(acc) == 1
    a = acc[0]
    assert a["providerId"] == "google" and a["accountId"] == claims["sub"]
    at = idp.seen("token")[-1]
    assert a["accessToken"] in idp.access and a["refreshToken"].startswith("rt-")
    assert a["idToken"].count(".") == 2 and a["password"] is None
    assert a["scope"] == idp.scope.replace(" ", ",")
    left = (a["accessTokenExpiresAt"] - a["createdAt"]).total_seconds()
    assert abs(left - idp.expires_in) < 10
    # the token request carried the PKCE verifier, the secret and the redirect_uri
    assert at[2]["client_secret"] == idp.client_secret and len(at[2]["code_verifier"]) == 128
    assert at[2]["redirect_uri"] == gsvc.base_url + "/api/auth/callback/google"
    s = get_session(gsvc, cookie)
    assert s["user"]["email"] == e.lower() and s["user"]["id"] == user["id"]


def test_returning_user_updates_tokens(gsvc, idp, db):
    e = email("acme-corp.test")
    claims = idp.login(email=e, hd="acme-corp.test")
    f1 = sign_in(gsvc, idp, newUserCallbackURL="/welcome")
    assert f1.location == "/welcome"
    uid = db.user_row(email=e)["id"]
    old = db.dicts('select * from account where "userId" = %s', (uid,))[0]
    idp.login(sub=claims["sub"], email=e, hd="acme-corp.test")
    f2 = sign_in(gsvc, idp, newUserCallbackURL="/welcome")
    assert f2.callback.status_code == 302 and f2.location == "/dashboard"
    acc = db.dicts('select * from account where "userId" = %s', (uid,))
    assert len(acc) == 1 and acc[0]["id"] == old["id"]
    assert acc[0]["accessToken"] != old["accessToken"] and acc[0]["updatedAt"] > old["updatedAt"]
    assert db.scalar('select count(*) from "user" where email = %s', (e,)) == 1
    assert get_session(gsvc, session_cookie(f2.callback))["user"]["id"] == uid


@pytest.mark.parametrize("case", ["other_domain", "no_hd", "hd_other", "unverified"])
def test_refused_identities_write_nothing(gsvc, idp, db, case):
    kw = {"other_domain": dict(email=email("gmail.test"), hd="acme.test"),
          "no_hd": dict(email=email("acme.test")),
          "hd_other": dict(email=email("acme.test"), hd="evil.test"),
          "unverified": dict(email=email("acme.test"), hd="acme.test", email_verified=False)}[case]
    idp.login(**kw)
    before = core_counts(db)
    f = sign_in(gsvc, idp)
    assert f.callback.status_code == 302
    want = "email_not_verified" if case == "unverified" else "domain_not_allowed"
    assert f.location == f"/oops?error={want}"
    assert session_cookie(f.callback) is None and "set-auth-token" not in f.callback.headers
    assert core_counts(db) == before
    assert db.user_row(email=kw["email"]) is None


def test_refused_domain_is_json_403_for_api_callers(gsvc, idp, db):
    idp.login(email=email("outsider.test"), hd="outsider.test")
    before = core_counts(db)
    f = sign_in(gsvc, idp, accept="application/json")
    H.assert_error(f.callback, 403, "DOMAIN_NOT_ALLOWED")
    assert core_counts(db) == before


def test_default_error_url_and_error_page(gsvc, idp):
    idp.login(email=email("outsider.test"), hd="outsider.test")
    f = sign_in(gsvc, idp, errorCallbackURL=None)
    assert f.location == gsvc.base_url + "/api/auth/error?error=domain_not_allowed"
    page = requests.get(f.location, timeout=10)
    assert page.status_code == 200 and "domain_not_allowed" in page.text
    assert page.headers["content-type"].startswith("text/html")


# ---------------------------------------------------------------------------
# State: mismatch, replay, expiry; PKCE


def test_state_cookie_missing_or_forged(gsvc, idp, db, secret):
    idp.login(email=email(), hd="acme.test")
    before = core_counts(db)
    tokens_before = len(idp.seen("token"))
    f = sign_in(gsvc, idp, cookie=False)
    assert f.location == "/oops?error=state_mismatch"
    # the row is left for the browser that owns it
    assert db.scalar("select count(*) from verification where identifier = %s",
                     (f"auth-state:{f.state}",)) == 1
    other = urllib.parse.quote(H.signed_value(secret, "x" * 32), safe="")
    f2 = sign_in(gsvc, idp, cookie=other)
    assert f2.location == "/oops?error=state_mismatch"
    forged = urllib.parse.quote(f"{'y' * 32}.{'A' * 43}=", safe="")
    f3 = sign_in(gsvc, idp, cookie=forged)
    assert f3.location == "/oops?error=state_mismatch"
    assert core_counts(db) == before
    assert len(idp.seen("token")) == tokens_before     # no code was ever exchanged


def test_unknown_or_missing_state(gsvc):
    r = requests.get(gsvc.base_url + "/api/auth/callback/google?code=abc&state=nosuchstate",
                     allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == gsvc.base_url + "/api/auth/error?error=state_mismatch"
    r = requests.get(gsvc.base_url + "/api/auth/callback/google?code=abc",
                     allow_redirects=False, timeout=10)
    assert r.headers["Location"].endswith("/api/auth/error?error=state_not_found")


def test_replayed_callback_is_refused(gsvc, idp, db):
    idp.login(email=email(), hd="acme.test")
    f = sign_in(gsvc, idp)
    assert f.location == "/welcome" or f.location == "/dashboard"
    before = core_counts(db)
    again = requests.get(f.authorize.headers["Location"],
                         headers={"Cookie": f"{STATE_COOKIE}={f.state_cookie}"},
                         allow_redirects=False, timeout=10)
    assert again.status_code == 302
    assert again.headers["Location"].endswith("/api/auth/error?error=state_mismatch")
    assert session_cookie(again) is None
    assert core_counts(db) == before


def test_concurrent_callbacks_one_wins(gsvc, idp, db):
    # one state, four racing callbacks: one session, the others state_mismatch
    idp.login(email=email(), hd="acme.test")
    start = begin(gsvc, callbackURL="/dashboard", errorCallbackURL="/oops")
    url = start.json()["url"]
    cb = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
    ck = state_cookie_of(start)
    out = []

    def hit():
        out.append(requests.get(cb, headers={"Cookie": f"{STATE_COOKIE}={ck}"},
                                allow_redirects=False, timeout=30))
    ts = [threading.Thread(target=hit) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    ok = [r for r in out if session_cookie(r)]
    assert len(ok) == 1, [r.headers.get("Location") for r in out]
    # the losers find the row gone (default error URL) or lose the DELETE (/oops)
    assert all(r.headers["Location"].endswith("?error=state_mismatch")
               for r in out if not session_cookie(r))


def test_expired_state_is_refused(gsvc, idp, db):
    idp.login(email=email(), hd="acme.test")
    before = core_counts(db)

    def expire(f):
        db.execute("update verification set \"expiresAt\" = now() - interval '1 second', "
                   "value = jsonb_set(value::jsonb, '{expiresAt}', to_jsonb(1000))::text "
                   "where identifier = %s", (f"auth-state:{f.state}",))
    f = sign_in(gsvc, idp, before_callback=expire)
    assert f.location == "/oops?error=state_mismatch"
    assert core_counts(db) == before
    assert db.scalar("select count(*) from verification where identifier = %s",
                     (f"auth-state:{f.state}",)) == 0


def test_pkce_mismatch_is_refused_by_the_provider(gsvc, idp, db):
    idp.login(email=email(), hd="acme.test")
    before = core_counts(db)

    def tamper(f):
        db.execute("update verification set value = jsonb_set(value::jsonb, '{codeVerifier}', "
                   "to_jsonb(repeat('a', 128)))::text where identifier = %s",
                   (f"auth-state:{f.state}",))
    f = sign_in(gsvc, idp, before_callback=tamper)
    assert f.location == "/oops?error=invalid_code"
    assert idp.seen("token")[-1][2]["code_verifier"] == "a" * 128
    assert core_counts(db) == before


def test_provider_error_is_passed_on(gsvc, idp, db):
    start = begin(gsvc, callbackURL="/dashboard", errorCallbackURL="/oops")
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(start.json()["url"]).query)["state"][0]
    r = requests.get(gsvc.base_url + f"/api/auth/callback/google?error=access_denied&state={state}",
                     headers={"Cookie": f"{STATE_COOKIE}={state_cookie_of(start)}"},
                     allow_redirects=False, timeout=10)
    assert r.headers["Location"] == "/oops?error=access_denied"


def test_form_post_callback_redirects_to_get(gsvc):
    r = requests.post(gsvc.base_url + "/api/auth/callback/google",
                      data={"code": "c1", "state": "s1"}, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == gsvc.base_url + "/api/auth/callback/google?code=c1&state=s1"


# ---------------------------------------------------------------------------
# ID token checks


@pytest.mark.parametrize("fault", ["foreign_key", "wrong_aud", "expired", "wrong_iss"])
def test_bad_id_tokens_are_refused(gsvc, idp, db, fault):
    idp.login(email=email(), hd="acme.test")
    if fault == "foreign_key":
        idp.sign_with_foreign_key = True
    elif fault == "wrong_aud":
        idp.id_token_overrides = {"aud": "someone-else", "azp": "someone-else"}
    elif fault == "expired":
        idp.id_token_overrides = {"exp": int(time.time()) - 600}
    else:
        idp.id_token_overrides = {"iss": "https://accounts.evil.test"}
    before = core_counts(db)
    f = sign_in(gsvc, idp)
    assert f.location == "/oops?error=unable_to_get_user_info"
    assert core_counts(db) == before


def test_rotated_signing_key_is_fetched(gsvc, idp, db):
    idp.login(email=email(), hd="acme.test")
    assert sign_in(gsvc, idp).location in ("/dashboard", "/welcome")   # keys cached
    n = len(idp.seen("jwks"))
    time.sleep(10.2)    # the refetch-on-unknown-kid bound
    idp.rotate_key()
    idp.login(email=email(), hd="acme.test")
    f = sign_in(gsvc, idp)
    assert f.location in ("/dashboard", "/welcome"), f.location
    assert len(idp.seen("jwks")) == n + 1


# ---------------------------------------------------------------------------
# Provider down or slow


def test_token_endpoint_failing(gsvc, idp, db):
    idp.login(email=email(), hd="acme.test")
    idp.fail["token"] = 503
    before = core_counts(db)
    f = sign_in(gsvc, idp)
    assert f.location == "/oops?error=provider_unavailable"
    assert core_counts(db) == before


def test_token_endpoint_slow_times_out_without_blocking(gsvc, idp, db):
    idp.login(email=email(), hd="acme.test")
    idp.delay["token"] = TIMEOUT_MS / 1000 + 2
    result = {}

    def slow():
        t0 = time.monotonic()
        result["f"] = sign_in(gsvc, idp)
        result["t"] = time.monotonic() - t0
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.5)
    # the loop is free while the provider dawdles
    t0 = time.monotonic()
    for _ in range(5):
        assert requests.get(gsvc.base_url + "/api/auth/ok", timeout=5).status_code == 200
        assert requests.get(gsvc.api("get-session"), timeout=5).status_code == 200
    assert time.monotonic() - t0 < 1.0
    th.join(30)
    assert result["f"].location == "/oops?error=provider_unavailable"
    assert result["t"] < TIMEOUT_MS / 1000 + 1.5


def test_provider_down(pg, redis_srv, tmp_root, idp, db):
    dead = f"http://127.0.0.1:{H.free_port()}"
    env = {**idp.google_env(), "GOOGLE_TOKEN_URL": dead + "/token", "ALLOWED_DOMAINS": ALLOWED}
    svc = _start(pg, redis_srv, tmp_root, "authsvc-down", env)
    try:
        idp.login(email=email(), hd="acme.test")
        f = sign_in(svc, idp)
        assert f.location == "/oops?error=provider_unavailable"
    finally:
        _check_stopped(svc)
    env2 = {**idp.google_env(), "GOOGLE_JWKS_URL": dead + "/jwks", "ALLOWED_DOMAINS": ALLOWED}
    svc = _start(pg, redis_srv, tmp_root, "authsvc-nojwks", env2)
    try:
        before = core_counts(db)
        f = sign_in(svc, idp)
        assert f.location == "/oops?error=provider_unavailable"
        assert not [r for r in idp.requests if r[1].endswith("/token") and
                    r[2].get("code") == urllib.parse.parse_qs(
                        urllib.parse.urlsplit(f.authorize.headers["Location"]).query)["code"][0]]
        assert core_counts(db) == before
    finally:
        _check_stopped(svc)


# ---------------------------------------------------------------------------
# Linking rules (Better Auth 1.7: both sides must have verified the email)


def _local_user(db, svc, e, verified):
    c = H.ApiClient(svc)
    try:
        u = c.sign_up(e)
    finally:
        c.close()
    db.execute('update "user" set "emailVerified" = %s where id = %s', (verified, u.id))
    return u


def test_links_to_verified_local_user(gsvc, idp, db):
    e = email()
    u = _local_user(db, gsvc, e, True)
    claims = idp.login(email=e, hd="acme.test")
    f = sign_in(gsvc, idp, newUserCallbackURL="/welcome")
    assert f.location == "/dashboard"     # not a new user
    acc = db.dicts('select "providerId", "accountId" from account where "userId" = %s '
                   'order by "providerId"', (u.id,))
    assert acc == [{"providerId": "credential", "accountId": u.id},
                   {"providerId": "google", "accountId": claims["sub"]}]
    assert get_session(gsvc, session_cookie(f.callback))["user"]["id"] == u.id


def test_does_not_link_to_unverified_local_user(gsvc, idp, db):
    e = email()
    u = _local_user(db, gsvc, e, False)
    idp.login(email=e, hd="acme.test")
    before = core_counts(db)
    f = sign_in(gsvc, idp)
    assert f.location == "/oops?error=account_not_linked"
    assert core_counts(db) == before
    assert db.scalar('select count(*) from account where "userId" = %s', (u.id,)) == 1


# ---------------------------------------------------------------------------
# ID token sign-in (non-browser)


def test_id_token_sign_in(gsvc, idp, db):
    e = email()
    claims = idp.login(email=e, hd="acme.test")
    tok = idp.id_token(claims)
    r = begin(gsvc, idToken={"token": tok})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["redirect", "token", "user"] and body["redirect"] is False
    H.sensitive(body["token"])
    assert body["user"]["email"] == e and body["user"]["emailVerified"] is True
    assert session_cookie(r)
    idp.login(email=email("outsider.test"), hd="outsider.test")
    before = core_counts(db)
    r = begin(gsvc, idToken={"token": idp.id_token(idp.user)})
    H.assert_error(r, 403, "DOMAIN_NOT_ALLOWED")
    idp.sign_with_foreign_key = True
    r = begin(gsvc, idToken={"token": idp.id_token(claims)})
    H.assert_error(r, 401, "INVALID_TOKEN")
    assert core_counts(db) == before


# ---------------------------------------------------------------------------
# Generic OIDC with discovery, several providers at once, any domain


def test_generic_oidc_and_google_together(pg, redis_srv, tmp_root, idp, db):
    acme = FakeIdP(issuer_path="/realms/acme").start()
    try:
        acme.omit_email_in_id_token = True     # the email comes from userinfo
        env = {**idp.google_env(), **acme.oidc_env("acme-sso"), "OIDC_PROVIDERS": "acme-sso"}
        svc = _start(pg, redis_srv, tmp_root, "authsvc-oidc", env)
        try:
            e = email("anything.test")
            claims = acme.login(email=e)
            f = sign_in(svc, acme, provider="acme-sso")
            assert f.callback.status_code == 302 and f.location == "/dashboard", f.location
            assert len(acme.seen(".well-known/openid-configuration")) >= 1
            assert acme.seen("userinfo"), "userinfo was not asked"
            u = db.user_row(email=e)
            assert u and u["emailVerified"] is True
            acc = db.dicts('select "providerId", "accountId" from account where "userId" = %s',
                           (u["id"],))
            assert acc == [{"providerId": "acme-sso", "accountId": claims["sub"]}]
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(f.start.json()["url"]).query))
            assert q["redirect_uri"] == svc.base_url + "/api/auth/callback/acme-sso"
            assert "include_granted_scopes" not in q
            # Google on the same server, no domain rule: hd not needed
            idp.login(email=email("gmail.test"))
            assert sign_in(svc, idp).location == "/dashboard"
        finally:
            _check_stopped(svc)
    finally:
        acme.stop()


def test_oidc_discovery_down_then_up(pg, redis_srv, tmp_root):
    port = H.free_port()
    acme = FakeIdP(port=port)
    env = {**acme.oidc_env("acme"), "OIDC_PROVIDERS": "acme"}
    svc = _start(pg, redis_srv, tmp_root, "authsvc-disc", env)
    try:
        H.assert_error(begin(svc, "acme"), 503, "PROVIDER_UNAVAILABLE")
        acme.start()
        acme.login(email=email("x.test"))
        H.wait_until(lambda: begin(svc, "acme").status_code == 200, 15, interval=0.5,
                     what="rediscovery")
        f = sign_in(svc, acme, provider="acme")
        assert f.location == "/dashboard"
    finally:
        _check_stopped(svc)
        acme.stop()


@pytest.mark.parametrize("env,var", [
    ({"GOOGLE_CLIENT_ID": "x"}, "GOOGLE_CLIENT_SECRET"),
    ({"OIDC_PROVIDERS": "acme"}, "OIDC_ACME_ISSUER"),
    ({"OIDC_PROVIDERS": "acme", "OIDC_ACME_ISSUER": "http://127.0.0.1:9"}, "OIDC_ACME_CLIENT_ID"),
    ({"OIDC_PROVIDERS": "Bad Name!"}, "OIDC_PROVIDERS"),
    ({"ALLOWED_DOMAINS": "not a domain"}, "ALLOWED_DOMAINS"),
    ({"GOOGLE_CLIENT_ID": "x", "GOOGLE_CLIENT_SECRET": "y", "GOOGLE_TOKEN_URL": "ftp://x"},
     "GOOGLE_TOKEN_URL"),
])
def test_config_errors_name_the_variable(env, var):
    r = H.run_authsvc([], env={"BETTER_AUTH_SECRET": "s" * 40, "DATABASE_URL": "postgres://x@127.0.0.1:1/x",
                               **env})
    assert r.returncode == 2, r.stderr
    assert var in r.stderr.decode(), r.stderr


def test_help_lists_the_variables():
    out = H.run_authsvc(["--help"]).stdout.decode()
    for v in ("GOOGLE_CLIENT_ID", "GOOGLE_JWKS_URL", "ALLOWED_DOMAINS", "OIDC_PROVIDERS",
              "OAUTH_HTTP_TIMEOUT_MS"):
        assert v in out


# ---------------------------------------------------------------------------
# Interop: a Better Auth 1.7.25 server on the same database accepts the result

from test_interop import ba  # noqa: E402,F401 - the module fixture (node server.mjs)


def test_better_auth_accepts_the_oidc_session(gsvc, idp, db, ba):
    e = email()
    claims = idp.login(email=e, hd="acme.test", name="Grace Hopper")
    f = sign_in(gsvc, idp)
    cookie = session_cookie(f.callback)
    assert cookie
    r = requests.get(ba.base_url + "/api/auth/get-session", headers={"Cookie": cookie}, timeout=20)
    assert r.status_code == 200, r.text
    s = r.json()
    assert s and s["user"]["email"] == e and s["user"]["name"] == "Grace Hopper"
    assert s["user"]["emailVerified"] is True
    # the bearer form (set-auth-token) too
    r = requests.get(ba.base_url + "/api/auth/get-session", timeout=20,
                     headers={"Authorization": "Bearer " + f.callback.headers["set-auth-token"]})
    assert r.status_code == 200 and r.json()["user"]["email"] == e
    # Better Auth reads the account row we wrote (scope parsed from the comma list)
    r = requests.get(ba.base_url + "/api/auth/list-accounts", headers={"Cookie": cookie}, timeout=20)
    assert r.status_code == 200, r.text
    accs = [a for a in r.json() if a["providerId"] == "google"]
    assert len(accs) == 1 and accs[0]["accountId"] == claims["sub"]
    assert set(accs[0]["scopes"]) == set(idp.scope.split())
    # and signing out there ends the session here
    r = requests.post(ba.base_url + "/api/auth/sign-out", headers={"Cookie": cookie,
                      "Origin": "http://app.example.test"}, json={}, timeout=20)
    assert r.status_code == 200, r.text
    assert get_session(gsvc, cookie) is None


def test_social_sign_in_with_two_factor_on(pg, redis_srv, tmp_root, idp, db):
    """TWO_FACTOR_ENABLED: a new OIDC user gets twoFactorEnabled false (Better Auth's
    default), and a user with 2FA on signs in with Google at once: Better Auth 1.7.25's
    twoFactor hook matches /sign-in/email, /sign-in/username and /sign-in/phone-number
    only, not the OAuth callback."""
    svc = _start(pg, redis_srv, tmp_root, "authsvc-google-2fa",
                 {**idp.google_env(), "ALLOWED_DOMAINS": ALLOWED, "TWO_FACTOR_ENABLED": "true"})
    try:
        e = email("acme.test")
        idp.login(email=e, hd="acme.test")
        f = sign_in(svc, idp)
        assert f.callback.status_code == 302, f.callback.text
        s = get_session(svc, session_cookie(f.callback))
        assert s["user"]["twoFactorEnabled"] is False
        assert db.scalar('select "twoFactorEnabled" from "user" where "email" = %s', (e,)) is False
        db.execute('update "user" set "twoFactorEnabled" = true where "email" = %s', (e,))
        idp.login(email=e, hd="acme.test")
        f = sign_in(svc, idp)
        assert f.callback.status_code == 302 and f.location == "/dashboard", f.callback.text
        assert get_session(svc, session_cookie(f.callback))["user"]["twoFactorEnabled"] is True
        assert TF_COOKIE not in H.set_cookies(f.callback)
    finally:
        _check_stopped(svc)
