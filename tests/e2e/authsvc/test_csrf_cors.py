"""Origin/CSRF checks, callback URL validation and CORS for trusted origins (compat doc §5)."""

import pytest

import pcsupport as H
from pcsupport import assert_error

EVIL = "http://evil.example.test"


@pytest.fixture
def user(client):
    return client.sign_up(name="CSRF User")


# -- cookie-carrying non-GET requests need a trusted Origin ------------------

def test_cookie_post_without_origin_is_403(client, user, db):
    before = db.snapshot()
    r = client.post("sign-out", cookie=user.cookie, origin=None)
    assert_error(r, 403, "MISSING_OR_NULL_ORIGIN")
    assert db.snapshot() == before
    assert client.session_of(user) is not None


def test_cookie_post_with_null_origin_is_403(client, user, db):
    before = db.snapshot()
    r = client.post("update-user", {"name": "X"}, cookie=user.cookie, origin="null")
    assert_error(r, 403, "MISSING_OR_NULL_ORIGIN")
    assert db.snapshot() == before


@pytest.mark.parametrize("origin", [
    EVIL,
    "http://app.example.test.evil.test",
    "http://app.example.test:8080",
    "https://app.example.test",            # scheme matters
    "http://evilapp.example.test",
])
def test_cookie_post_with_untrusted_origin_is_403(client, user, db, origin):
    before = db.snapshot()
    for path, body in (("sign-out", {}), ("revoke-sessions", {}), ("update-user", {"name": "Pwned"})):
        r = client.post(path, body, cookie=user.cookie, origin=origin)
        assert_error(r, 403, "INVALID_ORIGIN")
    assert db.snapshot() == before
    assert client.session_of(user)["user"]["name"] == "CSRF User"


def test_cookie_post_with_trusted_origins(client, user, authsvc, trusted_origins, db):
    for origin in (authsvc.origin, *trusted_origins):
        r = client.post("update-user", {"name": f"From {origin}"}, cookie=user.cookie, origin=origin)
        assert r.status_code == 200, f"{origin}: {r.status_code} {r.text}"
        assert db.user_row(id=user.id)["name"] == f"From {origin}"


def test_cookie_post_with_trusted_referer_and_no_origin(client, user, trusted_origins):
    r = client.post("update-user", {"name": "Via Referer"}, cookie=user.cookie, origin=None,
                    headers={"Referer": trusted_origins[0] + "/settings/profile"})
    assert r.status_code == 200, r.text


def test_cookie_post_with_untrusted_referer_is_403(client, user):
    r = client.post("update-user", {"name": "Via Referer"}, cookie=user.cookie, origin=None,
                    headers={"Referer": EVIL + "/x"})
    assert_error(r, 403, "INVALID_ORIGIN")


def test_bearer_without_cookie_needs_no_origin(client, user):
    r = client.post("update-user", {"name": "Bearer"}, bearer=user.token, origin=None)
    assert r.status_code == 200, r.text
    r = client.post("update-user", {"name": "Bearer Evil Origin"}, bearer=user.token, origin=EVIL)
    # no cookie: the origin check is skipped (Better Auth); CSRF needs ambient credentials
    assert r.status_code == 200, r.text


def test_get_with_cookie_needs_no_origin(client, user):
    r = client.get("get-session", cookie=user.cookie, origin=EVIL)
    assert r.status_code == 200 and r.json() is not None


# -- sign-in / sign-up form CSRF ---------------------------------------------

def test_sign_in_from_untrusted_origin_is_403(client, user, db):
    before = db.snapshot()
    r = client.post("sign-in/email", {"email": user.email, "password": user.password}, origin=EVIL)
    assert_error(r, 403, "INVALID_ORIGIN")
    assert H.SESSION_COOKIE not in H.set_cookies(r)
    assert db.snapshot() == before


def test_sign_up_from_untrusted_origin_is_403(client, db):
    before = db.snapshot()
    email = H.unique_email("csrf")
    r = client.post("sign-up/email", {"name": "X", "email": email, "password": H.new_password()}, origin=EVIL)
    assert_error(r, 403, "INVALID_ORIGIN")
    assert db.snapshot() == before


def test_sign_in_from_trusted_origin(client, user, trusted_origins):
    r = client.post("sign-in/email", {"email": user.email, "password": user.password},
                    origin=trusted_origins[1])
    assert r.status_code == 200, r.text


def test_cross_site_navigation_login_is_blocked(client, user, db):
    before = db.snapshot()
    r = client.post("sign-in/email", {"email": user.email, "password": user.password},
                    headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                             "Sec-Fetch-Dest": "document"})
    assert_error(r, 403, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED")
    assert db.snapshot() == before


def test_same_origin_fetch_login_is_allowed(client, user, authsvc):
    r = client.post("sign-in/email", {"email": user.email, "password": user.password},
                    origin=authsvc.origin,
                    headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
    assert r.status_code == 200, r.text


# -- callback URLs ------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://evil.example.test/phish",
    "//evil.example.test/phish",
    "/\\evil.example.test",
    "javascript:alert(1)",
    "http://app.example.test.evil.test/",
    "/%2F%2Fevil.example.test/x",
])
def test_untrusted_callback_url_is_403(client, user, db, url):
    before = db.snapshot()
    r = client.post("sign-in/email", {"email": user.email, "password": user.password, "callbackURL": url})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    assert H.SESSION_COOKIE not in H.set_cookies(r)
    r = client.post("sign-up/email", {"name": "Cb", "email": H.unique_email("cb"),
                                      "password": H.new_password(), "callbackURL": url})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    r = client.post("sign-out", {"callbackURL": url}, cookie=user.cookie)
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    assert db.snapshot() == before
    assert client.session_of(user) is not None


def test_untrusted_callback_url_in_query_is_403(client, user, db):
    before = db.snapshot()
    r = client.post("sign-in/email", {"email": user.email, "password": user.password},
                    params={"callbackURL": "https://evil.example.test/"})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    r = client.post("sign-out", {}, cookie=user.cookie, params={"callbackURL": "https://evil.example.test/"})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    assert db.snapshot() == before


def test_callback_url_must_be_a_string(client, user, db):
    before = db.snapshot()
    r = client.post("sign-in/email", {"email": user.email, "password": user.password, "callbackURL": 5})
    assert r.status_code == 400, r.text
    assert db.snapshot() == before


@pytest.mark.parametrize("url", ["/dashboard", "/a/b?x=1", "http://app.example.test/welcome"])
def test_trusted_callback_url_is_accepted(client, user, url):
    r = client.post("sign-in/email", {"email": user.email, "password": user.password, "callbackURL": url})
    assert r.status_code == 200, r.text
    assert r.json()["url"] == url


def test_wildcard_trusted_origin(authsvc_factory, client_for):
    svc = authsvc_factory({"TRUSTED_ORIGINS": "https://*.wild.example.test"}, name="authsvc-wild")
    c = client_for(svc)
    body = {"email": H.unique_email("wild"), "password": "Wrong-password-9"}
    r = c.post("sign-in/email", body, origin="https://a.wild.example.test")
    assert r.status_code == 401, f"origin check should pass, credentials fail: {r.status_code} {r.text}"
    r = c.post("sign-in/email", body, origin="https://wild.example.test.evil.test")
    assert_error(r, 403, "INVALID_ORIGIN")


# -- CORS ---------------------------------------------------------------------

def test_cors_for_trusted_origin(client, user, trusted_origins):
    origin = trusted_origins[0]
    r = client.get("get-session", cookie=user.cookie, origin=origin)
    assert r.status_code == 200
    assert r.headers.get("Access-Control-Allow-Origin") == origin
    assert r.headers.get("Access-Control-Allow-Credentials") == "true"
    r = client.post("sign-in/email", {"email": user.email, "password": user.password}, origin=origin)
    assert r.status_code == 200, r.text
    assert r.headers.get("Access-Control-Allow-Origin") == origin
    assert "set-auth-token" in r.headers.get("Access-Control-Expose-Headers", "").lower()


def test_no_cors_for_untrusted_origin(client, user):
    r = client.get("get-session", cookie=user.cookie, origin=EVIL)
    acao = r.headers.get("Access-Control-Allow-Origin")
    assert acao in (None, ""), f"untrusted origin got Access-Control-Allow-Origin: {acao}"
    assert r.headers.get("Access-Control-Allow-Credentials") in (None, "", "false")


def test_preflight_for_trusted_origin(client, trusted_origins):
    origin = trusted_origins[1]
    r = client.request("OPTIONS", "sign-in/email", origin=origin,
                       headers={"Access-Control-Request-Method": "POST",
                                "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 204, r.text
    assert r.headers.get("Access-Control-Allow-Origin") == origin
    assert r.headers.get("Access-Control-Allow-Credentials") == "true"
    assert "POST" in r.headers.get("Access-Control-Allow-Methods", "").upper()
    assert "content-type" in r.headers.get("Access-Control-Allow-Headers", "").lower()


def test_preflight_for_untrusted_origin(client):
    r = client.request("OPTIONS", "sign-in/email", origin=EVIL,
                       headers={"Access-Control-Request-Method": "POST"})
    assert r.status_code < 500
    assert r.headers.get("Access-Control-Allow-Origin") in (None, "")


# -- security issue #13 item 5: URLs read as a browser reads them ------------
#
# A wildcard origin must not let through a URL whose host a browser reads as
# another host (backslash, userinfo, encoding), and only http(s) URLs and safe
# root-relative paths are redirect targets, whatever the patterns say.

WILD = "https://*.wild.example.test"        # scheme wildcard
BARE = "*.bare.example.test"                # scheme-less wildcard

# (field, error code) for each redirect target Better Auth checks
TARGETS = [("callbackURL", "INVALID_CALLBACK_URL"),
           ("errorCallbackURL", "INVALID_ERROR_CALLBACK_URL"),
           ("newUserCallbackURL", "INVALID_NEW_USER_CALLBACK_URL")]


@pytest.fixture(scope="module")
def wild_svc(pg, redis_srv, tmp_root):
    from pcsupport.suite import base_env, check_stopped
    env = base_env(pg, redis_srv)
    env["TRUSTED_ORIGINS"] = ",".join([*env["TRUSTED_ORIGINS"].split(","), WILD, BARE])
    svc = H.Authsvc(env, workdir=str(tmp_root / "wild"), name="authsvc-wild-urls")
    try:
        yield svc
    finally:
        check_stopped(svc)


@pytest.fixture
def wc(wild_svc, client_for):
    return client_for(wild_svc)


BAD_ABSOLUTE = [
    # browsers read the host of these as evil.test
    "https://evil.test\\.wild.example.test/",
    "https://evil.test\\@x.wild.example.test/",
    "https://evil.test%5c.wild.example.test/",
    "https:/\\evil.test",
    "https://x.wild.example.test@evil.test/",
    "https://evil.test?.wild.example.test",
    "https://evil.test#.wild.example.test",
    # userinfo on a trusted host: no legitimate use in a redirect
    "https://evil@x.wild.example.test/",
    # not http(s), though the host matches the scheme-less wildcard
    "javascript://x.bare.example.test/%0aalert(1)",
    "JavaScript://x.bare.example.test/%0aalert(1)",
    "data://x.bare.example.test/,<script>alert(1)</script>",
    "vbscript://x.bare.example.test/%0amsgbox(1)",
    "ws://x.bare.example.test/",
    "ftp://x.bare.example.test/",
    # label boundaries and ports
    "https://evilwild.example.test/",
    "https://wild.example.test/",
    "https://x.bare.example.test:8443/",
    # tabs, newlines and spaces: dropped by browsers, refused here
    "https://x.wild.example.test\t/",
    "https://x.wild\n.example.test/",
    " https://x.wild.example.test/",
]

BAD_RELATIVE = ["//evil.test", "/\\evil.test", "\\\\evil.test", "\\/evil.test", "/.//evil.test",
                "/a/..//evil.test", "/%2f/evil.test", "/%5Cevil.test", "/\t/evil.test",
                "/\n/evil.test", "evil.test/x"]


@pytest.mark.parametrize("url", BAD_ABSOLUTE + BAD_RELATIVE)
def test_wildcard_redirect_tricks_are_403_on_every_route(wc, db, url):
    u = wc.sign_up(name="Wild")
    before = db.snapshot()
    r = wc.post("sign-in/email", {"email": u.email, "password": u.password, "callbackURL": url})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    assert H.SESSION_COOKIE not in H.set_cookies(r)
    r = wc.post("sign-up/email", {"name": "W", "email": H.unique_email("wild"),
                                  "password": H.new_password(), "callbackURL": url})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    r = wc.post("sign-out", {"callbackURL": url}, cookie=u.cookie)
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    r = wc.post("sign-in/email", {"email": u.email, "password": u.password},
                params={"callbackURL": url})
    assert_error(r, 403, "INVALID_CALLBACK_URL")
    # sign-in/social: all three targets (checked before the provider is looked up)
    for field, code in TARGETS:
        r = wc.post("sign-in/social", {"provider": "google", field: url})
        assert_error(r, 403, code)
    assert db.snapshot() == before
    assert wc.session_of(u) is not None


@pytest.mark.parametrize("field,code", TARGETS)
def test_form_encoded_redirect_targets_are_checked(wc, field, code):
    """A form body is what the route reads too: its targets are checked like JSON's."""
    for url in ("https://evil.test/", "https://evil.test\\.wild.example.test/",
                "javascript://x.bare.example.test/%0aalert(1)"):
        r = wc.request("POST", "sign-in/social", data={"provider": "google", field: url},
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert_error(r, 403, code)
    # every occurrence counts, not just the first
    r = wc.request("POST", "sign-in/social",
                   data=[("provider", "google"), (field, "/ok"), (field, "https://evil.test/")],
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 403, code)


@pytest.mark.parametrize("url", [
    "https://a.wild.example.test/welcome",
    "https://a.b.wild.example.test/x?y=1#z",
    "HTTPS://A.WILD.EXAMPLE.TEST/upper",
    "https://a.wild.example.test:443/default-port",
    "https://x.bare.example.test/",
    "http://x.bare.example.test/",
    "http://app.example.test/welcome",
    "/dashboard", "/a/b?next=//not-a-path", "/a#frag", "/caf%C3%A9",
])
def test_wildcard_and_relative_valid_cases_still_pass(wc, url):
    u = wc.sign_up(name="Wild OK")
    r = wc.post("sign-in/email", {"email": u.email, "password": u.password, "callbackURL": url})
    assert r.status_code == 200, r.text
    assert r.json()["url"] == url and r.headers["Location"] == url


@pytest.mark.parametrize("origin", [
    "https://evil.test\\.wild.example.test",
    "https://evil.test\\@x.wild.example.test",
    "https://x.wild.example.test@evil.test",
    "javascript://x.bare.example.test",
    "https://evilwild.example.test",
])
def test_wildcard_origin_tricks_are_403_and_get_no_cors(wc, origin):
    u = wc.sign_up(name="Wild Origin")
    r = wc.post("update-user", {"name": "Pwned"}, cookie=u.cookie, origin=origin)
    assert_error(r, 403, "INVALID_ORIGIN")
    r = wc.get("get-session", cookie=u.cookie, origin=origin)
    assert r.headers.get("Access-Control-Allow-Origin") in (None, ""), r.headers
    r = wc.request("OPTIONS", "sign-in/email", origin=origin,
                   headers={"Access-Control-Request-Method": "POST"})
    assert r.headers.get("Access-Control-Allow-Origin") in (None, ""), r.headers
    # a Referer is reduced to its origin the same way
    r = wc.post("update-user", {"name": "Pwned"}, cookie=u.cookie, origin=None,
                headers={"Referer": origin + "/page"})
    assert_error(r, 403, "INVALID_ORIGIN")


def test_wildcard_origin_valid_cases(wc):
    u = wc.sign_up(name="Wild Origin OK")
    for origin in ("https://a.wild.example.test", "https://a.b.wild.example.test",
                   "https://x.bare.example.test", "http://x.bare.example.test"):
        r = wc.post("update-user", {"name": "Fine"}, cookie=u.cookie, origin=origin)
        assert r.status_code == 200, f"{origin}: {r.text}"
        r = wc.get("get-session", cookie=u.cookie, origin=origin)
        assert r.headers.get("Access-Control-Allow-Origin") == origin


@pytest.mark.parametrize("var", ["TRUSTED_ORIGINS", "BETTER_AUTH_TRUSTED_ORIGINS"])
@pytest.mark.parametrize("value", [
    "*", "https://*", "*.*", "http://*:*", "https://app.example.test,*",
    "https://*example.test", "https://pre-*.example.test", "https://*.example.*",
    "javascript://*.example.test", "myapp://callback", "https://app.example.test/path",
    "https://u@app.example.test", "app.example.test",
])
def test_unsafe_trusted_origins_are_refused_at_start(pg, redis_srv, var, value):
    from pcsupport.suite import base_env
    env = base_env(pg, redis_srv)
    env[var] = value
    r = H.run_authsvc([], env=env, timeout=15)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, f"{var}={value!r} was accepted"
    assert var in err, err
