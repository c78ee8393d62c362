"""Security issue #13 (items 4 and 7, and three of the "Low" list): text from outside.

* Bytes that are not UTF-8 (a header value, a %-escape in a query or a form,
  a lone surrogate escape in JSON) reach no PostgreSQL statement: every
  authsvc route answers as Better Auth does (401, `null`, 404, 400, a 302
  with an error), never 503, and neither the log nor the metrics see a
  database failure.
* A JSON body nested 400,000 deep (AUTHSVC_MAX_BODY_BYTES raised so it fits) is a
  400, and the server lives; an OIDC discovery document nested as deep is
  refused with a log line, not a crash.
* A name or image URL longer than its cap is a 400 (NAME_TOO_LONG /
  IMAGE_URL_TOO_LONG), a provider's long profile is cut to fit.
* A lone surrogate is stored as U+FFFD, as Node stores it.
* A form_post callback with an unrelated cookie, and an internal route with a
  Cookie header, are not refused by the origin check.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import pcsupport as H
from pcsupport.suite import base_env, check_stopped
from pcsupport.fake_idp import FakeIdP

INTERNAL_SECRET = H.sensitive("internal-" + secrets.token_hex(24))
MAX_BODY = 2 * 1024 * 1024
FFFD = "\ufffd"

# the byte strings that PostgreSQL refuses as text (SQLSTATE 22021)
BAD_BYTES = [b"\xff", b"\xed\xb0\x80", b"a\xc3", b"\xc0\xaf"]
BAD_PCT = ["%FF", "%ED%B0%80", "a%C3", "%C0%AF"]
# JSON text (valid JSON) whose strings are lone surrogates
BAD_JSON_STR = ['"\\udc00"', '"\\ud800"', '"x\\udfffy"']


@pytest.fixture(scope="module")
def idp():
    with FakeIdP() as p:
        yield p


@pytest.fixture(scope="module")
def svc(pg, redis_srv, main_db_url, tmp_root, idp):
    env = base_env(pg, redis_srv)
    env.update(idp.google_env())
    env.update({"INTERNAL_SERVICE_SECRET": INTERNAL_SECRET, "AUTHSVC_MAX_BODY_BYTES": str(MAX_BODY),
                "OAUTH_HTTP_TIMEOUT_MS": "3000"})
    s = H.Authsvc(env, workdir=str(tmp_root / "textin"), name="authsvc-textin")
    try:
        yield s
    finally:
        check_stopped(s)


@pytest.fixture
def c(svc):
    cl = H.ApiClient(svc)
    try:
        yield cl
    finally:
        cl.close()


def pg_failures(svc) -> int:
    text = requests.get(svc.admin_url("/metrics"), timeout=10).text
    m = re.search(r'portcullis_authsvc_backend_failures_total\{backend="postgres"\} (\d+)', text)
    assert m, text[:500]
    return int(m.group(1))


def db_trouble(svc, since: int) -> list:
    """Log lines after line `since` that speak of a PostgreSQL failure or of the
    db helper's net (a value that got as far as a statement)."""
    out = []
    for line in svc.log_lines()[since:]:
        low = line.lower()
        if "postgres" in low and ('"error"' in low or "not utf-8" in low or "22021" in low):
            out.append(line)
    return out


class Watch:
    """Asserts on exit: no 5xx was seen, no PostgreSQL failure counted or logged."""

    def __init__(self, svc):
        self.svc = svc
        self.seen = []

    def __enter__(self):
        self.fail0 = pg_failures(self.svc)
        self.log0 = len(self.svc.log_lines())
        return self

    def check(self, what, r, *statuses):
        self.seen.append((what, r.status_code))
        assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
        if statuses:
            assert r.status_code in statuses, f"{what}: {r.status_code} {r.text[:300]}"
        return r

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        H.wait_until(lambda: True, 0.2)
        trouble = db_trouble(self.svc, self.log0)
        assert not trouble, "database trouble logged:\n" + "\n".join(trouble[:10])
        assert pg_failures(self.svc) == self.fail0, "a PostgreSQL failure was counted"
        return False


def raw_url(svc, path, query=""):
    return svc.base_url + (path if path.startswith("/") else "/api/auth/" + path) + (
        "?" + query if query else "")


def json_body(**fields) -> bytes:
    """A JSON object whose values are JSON text given verbatim."""
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


def post_raw(svc, path, data, headers=None, ctype="application/json"):
    h = {"Content-Type": ctype}
    h.update(headers or {})
    return requests.post(raw_url(svc, path), data=data, headers=h, timeout=20, allow_redirects=False)


def get_raw(svc, path, query="", headers=None):
    return requests.get(raw_url(svc, path, query), headers=headers or {}, timeout=20,
                        allow_redirects=False)


# ---------------------------------------------------------------------------
# item 7: bytes that are not UTF-8 never reach PostgreSQL


def test_credentials_that_are_not_utf8(svc, c):
    """Authorization and Cookie on every authsvc route that reads a session."""
    session_routes = [("GET", "get-session"), ("GET", "list-sessions"), ("POST", "sign-out"),
                      ("POST", "update-user"), ("POST", "change-password"),
                      ("POST", "revoke-session"), ("POST", "revoke-sessions"),
                      ("POST", "revoke-other-sessions"), ("GET", "token"),
                      ("POST", "api-key/create"), ("GET", "api-key/list"),
                      ("GET", "api-key/get"), ("POST", "api-key/update"),
                      ("POST", "api-key/delete")]
    bodies = {"update-user": b'{"name":"x"}', "change-password":
              b'{"currentPassword":"Whatever-1-pw","newPassword":"Whatever-2-pw"}',
              "revoke-session": b'{"token":"abc"}', "api-key/update": b'{"keyId":"abc"}',
              "api-key/delete": b'{"keyId":"abc"}'}
    with Watch(svc) as w:
        for bad in BAD_BYTES:
            creds = [{"Authorization": b"Bearer " + bad},
                     {"Authorization": b"Bearer " + bad + b"." + b"A" * 43 + b"="},
                     {"Authorization": b"Bearer tok" + bad + b"en"},
                     {"Cookie": b"better-auth.session_token=" + bad}]
            for hdr in creds:
                for method, path in session_routes:
                    what = f"{method} {path} {hdr!r}"
                    if method == "GET":
                        r = get_raw(svc, path, "id=abc" if path == "api-key/get" else "", hdr)
                    else:
                        h = dict(hdr)
                        if "Cookie" in h:
                            h["Origin"] = c.origin
                        r = post_raw(svc, path, bodies.get(path, b"{}"), h)
                    w.check(what, r)
                    if path == "get-session":
                        assert r.status_code == 200 and r.json() is None, (what, r.text)
                    elif path == "sign-out":
                        assert r.status_code == 200 and r.json() == {"success": True}, (what, r.text)
                    elif path in ("api-key/create", "api-key/list", "api-key/get",
                                  "api-key/update", "api-key/delete", "update-user",
                                  "change-password", "list-sessions", "revoke-session",
                                  "revoke-sessions", "revoke-other-sessions", "token"):
                        assert r.status_code == 401, (what, r.status_code, r.text)


def test_query_values_that_are_not_utf8(svc, c):
    u = c.sign_up(name="Query Bytes")
    auth = {"Authorization": f"Bearer {u.token}"}
    with Watch(svc) as w:
        for pct in BAD_PCT:
            r = w.check(f"api-key/get id={pct}", get_raw(svc, "api-key/get", f"id={pct}", auth), 404)
            assert r.json()["code"] == "KEY_NOT_FOUND"
            w.check(f"api-key/list {pct}", get_raw(svc, "api-key/list", f"x={pct}", auth), 200)
            w.check(f"get-session {pct}",
                    get_raw(svc, "get-session", f"disableRefresh={pct}&disableCookieCache={pct}", auth),
                    200)
            # the OAuth callback: the state is looked up, the rest passed on
            for q in (f"state={pct}", f"state={pct}&code=x", f"state=abc&code={pct}",
                      f"state={pct}&error={pct}", f"state=abc&iss={pct}", f"code={pct}"):
                r = w.check(f"callback {q}", get_raw(svc, "callback/google", q), 302)
                err = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["error"][0]
                assert err in ("state_mismatch", "state_not_found"), (q, r.headers["Location"])
            r = w.check(f"callback json {pct}",
                        get_raw(svc, "callback/google", f"state={pct}", {"Accept": "application/json"}))
            r = w.check(f"error page {pct}", get_raw(svc, "error", f"error={pct}"), 200)
            r = w.check(f"callback/{pct}", get_raw(svc, f"callback/{pct}", f"state={pct}"))


def test_form_fields_that_are_not_utf8(svc, c, db):
    email = H.unique_email("form")
    pw = H.new_password("Form")
    with Watch(svc) as w:
        for pct in BAD_PCT:
            form = f"email={pct}&password={pct}"
            r = w.check("sign-in form", post_raw(svc, "sign-in/email", form, ctype=FORM), 400, 401)
            form = f"name={pct}&email={pct}%40example.com&password={urllib.parse.quote(pw)}"
            w.check("sign-up form bad email", post_raw(svc, "sign-up/email", form, ctype=FORM), 400)
            w.check("callback form_post",
                    post_raw(svc, "callback/google", f"state={pct}&code={pct}", ctype=FORM), 302)
        # a name of %FF signs up, stored as URLSearchParams reads it: U+FFFD
        form = f"name=%FF&email={urllib.parse.quote(email)}&password={urllib.parse.quote(pw)}"
        r = w.check("sign-up form bad name", post_raw(svc, "sign-up/email", form, ctype=FORM), 200)
        assert r.json()["user"]["name"] == FFFD
        assert db.user_row(email=email)["name"] == FFFD


FORM = "application/x-www-form-urlencoded"


def test_json_lone_surrogates_on_every_body(svc, c, db):
    """JSON "\\udc00" and friends on every route with a body: never 503, and what is
    stored is U+FFFD, as Node (TextEncoder / node-postgres) stores it."""
    u = c.sign_up(name="Surrogates")
    auth = {"Authorization": f"Bearer {u.token}"}
    svc_auth = {"x-service-auth": INTERNAL_SECRET}
    with Watch(svc) as w:
        for s in BAD_JSON_STR:
            want = "".join(FFFD if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in json.loads(s))
            assert FFFD in want
            pw = json.dumps(H.new_password("Sur"))
            w.check("sign-in email", post_raw(svc, "sign-in/email", json_body(email=s, password=pw)), 400)
            w.check("sign-in password", post_raw(svc, "sign-in/email",
                                                 json_body(email='"nobody@example.com"', password=s)), 401)
            w.check("sign-in callbackURL", post_raw(svc, "sign-in/email",
                                                    json_body(email='"nobody@example.com"', password=pw,
                                                              callbackURL=s)), 403)
            w.check("sign-up email", post_raw(svc, "sign-up/email",
                                              json_body(name='"n"', email=s, password=pw)), 400)
            em = H.unique_email("sur")
            r = w.check("sign-up name", post_raw(svc, "sign-up/email",
                                                 json_body(name=s, email=json.dumps(em), password=pw,
                                                           image=s)), 200)
            row = db.user_row(email=em)
            assert row["name"] == want and row["image"] == want, row
            assert r.json()["user"]["name"] == want
            w.check("update-user", post_raw(svc, "update-user", json_body(name=s, image=s), auth), 200)
            assert db.user_row(id=u.id)["name"] == want
            w.check("change-password current", post_raw(svc, "change-password",
                                                        json_body(currentPassword=s, newPassword=pw), auth), 400)
            w.check("revoke-session", post_raw(svc, "revoke-session", json_body(token=s), auth), 200)
            w.check("sign-in/social provider", post_raw(svc, "sign-in/social", json_body(provider=s)), 404)
            w.check("sign-in/social loginHint", post_raw(svc, "sign-in/social",
                                                         json_body(provider='"google"', loginHint=s,
                                                                   callbackURL='"/x"')), 200)
            w.check("sign-in/social idToken", post_raw(svc, "sign-in/social",
                                                       json_body(provider='"google"',
                                                                 idToken='{"token":' + s + '}')), 401)
            w.check("api-key create", post_raw(svc, "api-key/create",
                                               json_body(name=s, prefix=s, metadata='{' + s + ':' + s + '}'),
                                               auth))
            for path in ("api-key/update", "api-key/delete"):
                w.check(path, post_raw(svc, path, json_body(keyId=s, name=s), auth), 400, 404)
            w.check("internal validate key", post_raw(svc, "/api/internal/validate",
                                                      json_body(key=s), svc_auth), 200)
            w.check("internal validate token", post_raw(svc, "/api/internal/validate",
                                                        json_body(token=s), svc_auth), 200)
            w.check("internal create", post_raw(svc, "/api/internal/api-key/create",
                                                json_body(userId=s, name=s), svc_auth), 400, 404)
            w.check("internal update", post_raw(svc, "/api/internal/api-key/update",
                                                json_body(userId=s, keyId=s), svc_auth), 400, 404)
            w.check("sign-out", post_raw(svc, "sign-out", json_body(callbackURL=s)), 200, 403)


def test_user_agent_that_is_not_utf8(svc, c, db):
    """The User-Agent is stored with the session: bytes that are not UTF-8 become
    U+FFFD instead of failing the sign-in."""
    with Watch(svc) as w:
        for bad in BAD_BYTES:
            u = c.sign_up(name="UA")
            r = w.check("sign-in", requests.post(svc.api("sign-in/email"),
                                                 json={"email": u.email, "password": u.password},
                                                 headers={"User-Agent": b"agent/" + bad}, timeout=20), 200)
            tok = r.json()["token"]
            H.sensitive(tok)
            ua = db.session_row(tok)["userAgent"]
            assert ua == ("agent/" + bad.decode("utf-8", "replace")), repr(ua)
            r = w.check("sign-up", requests.post(
                svc.api("sign-up/email"), headers={"User-Agent": b"x" + bad},
                json={"name": "n", "email": H.unique_email("ua"), "password": H.new_password()},
                timeout=20), 200)
            H.sensitive(r.json()["token"])


def test_other_headers_that_are_not_utf8(svc, c):
    u = c.sign_up(name="Headers")
    with Watch(svc) as w:
        for bad in BAD_BYTES:
            hdrs = {"X-Request-Id": b"id" + bad, "Origin": b"http://x" + bad,
                    "Accept": b"text/html" + bad, "Referer": b"http://r" + bad,
                    "Authorization": f"Bearer {u.token}".encode()}
            r = w.check("get-session", get_raw(svc, "get-session", "", hdrs), 200)
            assert r.json()["user"]["id"] == u.id
            w.check("internal secret", post_raw(svc, "/api/internal/validate", b'{"key":"x"}',
                                                {"x-service-auth": b"s" + bad}), 401)


# ---------------------------------------------------------------------------
# the Low list: name and image caps


@pytest.mark.parametrize("field,n,code", [("name", 257, "NAME_TOO_LONG"),
                                          ("name", 60000, "NAME_TOO_LONG"),
                                          ("image", 2049, "IMAGE_URL_TOO_LONG"),
                                          ("image", 60000, "IMAGE_URL_TOO_LONG")])
def test_long_name_or_image_is_400(svc, c, db, field, n, code):
    u = c.sign_up(name="Caps")
    value = "n" * n if field == "name" else "https://img.example/" + "i" * (n - 20)
    assert len(value) == n
    em = H.unique_email("cap")
    body = {"name": "ok", "email": em, "password": H.new_password()}
    body[field] = value
    H.assert_error(c.post("sign-up/email", body), 400, code)
    assert db.user_row(email=em) is None
    H.assert_error(c.post("update-user", {field: value}, bearer=u.token), 400, code)
    assert db.user_row(id=u.id)[field] in ("Caps", None)


def test_name_and_image_at_the_cap_are_fine(svc, c, db):
    # 256 UTF-16 units, one of them an astral character (two units)
    name = "\U0001f600" + "n" * 254
    image = "https://img.example/" + "i" * (2048 - 20)
    u = c.sign_up(name=name, image=image)
    assert db.user_row(id=u.id)["name"] == name
    r = c.get("get-session", bearer=u.token)
    assert r.json()["user"]["image"] == image
    assert len(r.headers.get("set-auth-jwt", "")) < 8000
    H.assert_error(c.post("update-user", {"name": name + "x"}, bearer=u.token), 400, "NAME_TOO_LONG")
    r = c.post("update-user", {"name": "n" * 256, "image": None}, bearer=u.token)
    assert r.status_code == 200, r.text


def test_provider_profile_is_cut_to_the_caps(svc, idp, db):
    """A provider's 300-character name is cut to 256 characters; an overlong
    picture URL is left out; the sign-in works."""
    from test_oauth import sign_in, session_cookie
    em = f"long-{secrets.token_hex(4)}@acme.test"
    idp.login(email=em, name="\u00e9" * 300, picture="https://img.example/" + "p" * 2100)
    f = sign_in(svc, idp)
    assert session_cookie(f.callback), f.location
    row = db.user_row(email=em)
    assert row["name"] == "\u00e9" * 256 and row["image"] is None, (len(row["name"]), row["image"])


# ---------------------------------------------------------------------------
# the Low list: a lone surrogate in a password hashes as Better Auth hashes it


def test_lone_surrogate_password_matches_node(svc, c, db):
    """Sign up with a password holding "\\ud800": the stored scrypt hash is the
    one for U+FFFD (what TextEncoder makes of it before Better Auth's scrypt),
    and signing in with "\\ufffd" in its place works."""
    em = H.unique_email("lone")
    raw = json_body(name='"n"', email=json.dumps(em), password='"Lone-\\ud800-surrogate"')
    r = post_raw(svc, "sign-up/email", raw)
    assert r.status_code == 200, r.text
    H.sensitive(r.json()["token"])
    stored = db.credential(r.json()["user"]["id"])["password"]
    assert H.scrypt_verify("Lone-\ufffd-surrogate", stored)
    assert not H.scrypt_verify("Lone-?-surrogate", stored)
    c.sign_in(em, "Lone-\ufffd-surrogate")
    r = post_raw(svc, "sign-in/email", json_body(email=json.dumps(em), password='"Lone-\\udfff-surrogate"'))
    assert r.status_code == 200, r.text
    H.sensitive(r.json()["token"])


# ---------------------------------------------------------------------------
# item 4: JSON nested deep


def test_body_nested_400000_deep_is_400(svc, c):
    depth = 400000
    for raw in (b'{"name":' + b"[" * depth + b"]" * depth + b',"email":"d@example.com","password":"x"}',
                b'{"callbackURL":' + b"{\"a\":" * 300000 + b"1" + b"}" * 300000 + b"}",
                b"[" * depth + b"]" * depth):
        assert len(raw) < MAX_BODY
        for path in ("sign-up/email", "sign-in/email", "update-user", "sign-in/social"):
            r = post_raw(svc, path, raw)
            H.assert_error(r, 400, "BAD_REQUEST", "VALIDATION_ERROR")
    assert c.get("/health").status_code == 200
    c.sign_up()


def test_body_at_the_depth_limit_is_read(svc, c):
    # 64 levels: the body object and 63 arrays
    raw = b'{"name":' + b"[" * 63 + b"]" * 63 + b',"email":"d@example.com","password":"x"}'
    r = post_raw(svc, "sign-up/email", raw)
    body = H.assert_error(r, 400, "VALIDATION_ERROR")
    assert "[body.name]" in body["message"], body
    raw = b'{"name":' + b"[" * 64 + b"]" * 64 + b',"email":"d@example.com","password":"x"}'
    H.assert_error(post_raw(svc, "sign-up/email", raw), 400, "BAD_REQUEST")


class DocServer:
    """A loopback HTTP server answering every GET with one JSON document."""

    def __init__(self, body: bytes):
        self.body = body
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

        self.port = H.free_port()
        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def deep_doc(depth: int, top: dict) -> bytes:
    text = json.dumps(top)
    return (text[:-1] + ',"x":' + "[" * depth + "]" * depth + "}").encode()


def test_oidc_discovery_nested_deep(pg, redis_srv, main_db_url, tmp_root, authsvc_factory):
    """A hostile issuer's discovery document nested 400,000 deep: refused with a log
    line (the provider stays unavailable), the server lives."""
    srv = DocServer(b"")
    try:
        srv.body = deep_doc(400000, {"issuer": srv.base, "authorization_endpoint": srv.base + "/a",
                                     "token_endpoint": srv.base + "/t", "jwks_uri": srv.base + "/j"})
        s = authsvc_factory({"OIDC_PROVIDERS": "deep", "OIDC_DEEP_ISSUER": srv.base,
                             "OIDC_DEEP_CLIENT_ID": "cid", "OIDC_DEEP_CLIENT_SECRET": "csecret-deep-1",
                             "OAUTH_HTTP_TIMEOUT_MS": "3000"}, name="authsvc-deepdisc")
        H.wait_until(lambda: srv.hits > 0, 10, what="a discovery request")
        r = requests.post(s.api("sign-in/social"), json={"provider": "deep"}, timeout=20)
        assert r.status_code == 503 and r.json()["code"] == "PROVIDER_UNAVAILABLE", r.text
        assert s.running, s.stderr_text()[-2000:]
        assert requests.get(s.url("/health"), timeout=5).status_code == 200
        H.wait_until(lambda: any("deep" in l and "discover" in l.lower() for l in s.log_lines()),
                     10, what="a logged refusal of the discovery document")
    finally:
        srv.close()


# ---------------------------------------------------------------------------
# the Low list: the origin check and cookies that mean nothing to a route


def test_form_post_callback_with_an_unrelated_cookie(svc):
    """The provider's form_post carries the browser's other cookies (SameSite=None
    ones) and the provider's Origin: it must still turn into the GET."""
    r = requests.post(svc.api("callback/google"), data={"code": "c1", "state": "s1"},
                      headers={"Cookie": "analytics=1; theme=dark",
                               "Origin": "https://accounts.google.com"},
                      timeout=20, allow_redirects=False)
    assert r.status_code == 302, r.text
    loc = urllib.parse.urlsplit(r.headers["Location"])
    assert loc.path == "/api/auth/callback/google"
    assert urllib.parse.parse_qs(loc.query) == {"code": ["c1"], "state": ["s1"]}
    # and without Origin at all
    r = requests.post(svc.api("callback/google"), data={"code": "c2", "state": "s2"},
                      headers={"Cookie": "analytics=1"}, timeout=20, allow_redirects=False)
    assert r.status_code == 302, r.text


def test_internal_routes_with_a_cookie_header(svc, c):
    u = c.sign_up(name="Internal Cookie")
    h = {"x-service-auth": INTERNAL_SECRET, "Cookie": "some=thing"}
    r = requests.post(svc.url("/api/internal/validate"), json={"token": u.token}, headers=h, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json()["valid"] is True and r.json()["userId"] == u.id
    r = requests.post(svc.url("/api/internal/api-key/create"), json={"userId": u.id},
                      headers={**h, "Origin": "http://evil.example"}, timeout=20)
    assert r.status_code == 200, r.text
    H.sensitive(r.json()["key"])
    # the secret is still what counts
    r = requests.post(svc.url("/api/internal/validate"), json={"token": u.token},
                      headers={"Cookie": "some=thing"}, timeout=20)
    assert r.status_code == 401, r.text
    # and the origin check still guards the public routes
    r = c.post("update-user", {"name": "x"}, cookie=u.cookie, origin=None)
    H.assert_error(r, 403, "MISSING_OR_NULL_ORIGIN")
