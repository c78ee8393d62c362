"""Sliding sessions in the browser (issue 16): when the gateway refreshes a session
that came in the Better Auth cookie, the answer re-sends that cookie with the new
Max-Age, once, as Better Auth's get-session does (docs/gateway.md, "Sliding sessions
in the browser"). Real gateway, authsvc, PostgreSQL and Redis; the upstreams are
recording Python upstreams that add Set-Cookie lines of their own; the last test
compares the line with the one a real Better Auth 1.7.25 server sends on its own
refresh of the same session, and has that server accept the refreshed cookie."""

from __future__ import annotations

import signal
import time
import urllib.parse

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport.pyupstream import PyUpstream

DAY = 86400
NAME = "better-auth.session_token"
UP_COOKIES = [b"app=1; Path=/", b"pref=dark; Max-Age=60"]
UP_LINES = b"".join(b"Set-Cookie: " + c + b"\r\n" for c in UP_COOKIES)
CLEARING = b"better-auth.session_token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"


@pytest.fixture(scope="module")
def ups():
    u = {"set": PyUpstream(answer_lines=UP_LINES),
         "clear": PyUpstream(answer_lines=b"Set-Cookie: " + CLEARING + b"\r\n" + UP_LINES)}
    yield u
    for x in u.values():
        x.stop()


def _routes(ups, dead):
    return {"routes": [
        {"prefix": "/s/", "upstream": ups["set"].url, "auth": ["session"]},
        {"prefix": "/clear/", "upstream": ups["clear"].url, "auth": ["session"]},
        {"prefix": "/strip/", "upstream": ups["set"].url, "auth": ["session"],
         "response_headers": {"remove": ["Set-Cookie"]}},
        {"prefix": "/deads/", "upstream": dead, "auth": ["session"]},
    ]}


@pytest.fixture(scope="module")
def rgw(pg, redis_srv, live_authsvc, secret, gw_dir, ups, dead_upstream_url):
    g = G.Gateway(G.gw_base_env(pg, redis_srv, secret), _routes(ups, dead_upstream_url),
                  workdir=gw_dir, name="gateway-refresh-cookie")
    try:
        yield g
    finally:
        G.check_stopped(g)


def _get(g, path, headers):
    """One request on a new connection (no cookie jar between requests)."""
    return requests.get(g.url(path), headers=headers, timeout=10, allow_redirects=False)


def _left(sql, token):
    return float(sql.scalar('select extract(epoch from "expiresAt" - now()) from "session" '
                            'where token = %s', (token,)))


def _make_due(sql, redis_client, u, *, expires="2 days"):
    """The row as a day-old-or-more session leaves it; authsvc's Redis entry (with
    the sign-in expiry) dropped, so the gateway reads the row."""
    sql.execute(f'update "session" set "expiresAt" = now() + interval \'{expires}\', '
                '"updatedAt" = now() - interval \'5 days\' where token = %s', (u.token,))
    redis_client.delete(H.session_key(u.token))


def _session_lines(r, name=NAME):
    return [h for h in H.set_cookie_headers(r) if h.split("=", 1)[0].strip() == name]


def _want(secret, token, max_age=604800, name=NAME, secure=False):
    return (f"{name}={H.cookie_value(secret, token)}; Max-Age={max_age}; Path=/; HttpOnly"
            f"{'; Secure' if secure else ''}; SameSite=Lax")


def _wait_moved(sql, token, above=6.9 * DAY):
    H.wait_until(lambda: _left(sql, token) > above, 3, what="sliding refresh UPDATE of expiresAt")


def test_due_cookie_session_gets_the_cookie_once(rgw, sql, redis_client, user, secret):
    _make_due(sql, redis_client, user)
    assert _left(sql, user.token) < 2.01 * DAY
    r = _get(rgw, "/s/a", G.cookie(user))
    assert r.status_code == 200, r.text
    lines = H.set_cookie_headers(r)
    # the upstream's own lines first, kept as sent, then ours: exactly one
    assert lines == [c.decode() for c in UP_COOKIES] + [_want(secret, user.token)], lines
    # the value is the one the client holds (authsvc's sign-in cookie)
    assert _session_lines(r)[0].split(";")[0] == user.cookie
    _wait_moved(sql, user.token)
    assert _left(sql, user.token) <= 7 * DAY + 5
    # later requests (L1 has the new expiry) carry none; the upstream's stay
    for path in ("/s/b", "/s/c"):
        r2 = _get(rgw, path, G.cookie(user))
        assert r2.status_code == 200
        assert H.set_cookie_headers(r2) == [c.decode() for c in UP_COOKIES], H.set_cookie_headers(r2)


def test_client_encoding_does_not_change_the_value(rgw, sql, redis_client, user, secret):
    """A cookie sent without percent-encoding is answered in Better Auth's encoding."""
    _make_due(sql, redis_client, user)
    r = _get(rgw, "/s/raw", {"Cookie": f"a=b; {NAME}={user.signed}"})
    assert r.status_code == 200, r.text
    assert _session_lines(r) == [_want(secret, user.token)], H.set_cookie_headers(r)
    _wait_moved(sql, user.token)


def test_session_not_due_gets_none(rgw, sql, user):
    before = _left(sql, user.token)
    assert before > 6.9 * DAY
    for path in ("/s/n1", "/s/n2"):
        r = _get(rgw, path, G.cookie(user))
        assert r.status_code == 200
        assert H.set_cookie_headers(r) == [c.decode() for c in UP_COOKIES], H.set_cookie_headers(r)
    time.sleep(0.3)
    assert abs(_left(sql, user.token) - before) < 5


@pytest.mark.parametrize("how", ["signed", "raw"])
def test_bearer_session_is_refreshed_without_a_cookie(rgw, sql, redis_client, user, how):
    _make_due(sql, redis_client, user)
    r = _get(rgw, "/s/bearer", G.bearer(user.signed if how == "signed" else user.token))
    assert r.status_code == 200, r.text
    assert not _session_lines(r), H.set_cookie_headers(r)
    assert H.set_cookie_headers(r) == [c.decode() for c in UP_COOKIES]
    _wait_moved(sql, user.token)


def test_upstream_setting_the_session_cookie_wins(rgw, sql, redis_client, user):
    """An upstream that sets (here: clears, as a sign-out does) the session cookie
    is the one the browser hears; the refresh adds no second line."""
    _make_due(sql, redis_client, user)
    r = _get(rgw, "/clear/x", G.cookie(user))
    assert r.status_code == 200, r.text
    assert _session_lines(r) == [CLEARING.decode()], H.set_cookie_headers(r)
    assert H.set_cookie_headers(r)[1:] == [c.decode() for c in UP_COOKIES]
    _wait_moved(sql, user.token)


def test_route_removing_set_cookie_keeps_the_refresh(rgw, sql, redis_client, user, secret):
    _make_due(sql, redis_client, user)
    r = _get(rgw, "/strip/x", G.cookie(user))
    assert r.status_code == 200, r.text
    assert H.set_cookie_headers(r) == [_want(secret, user.token)]
    r2 = _get(rgw, "/strip/y", G.cookie(user))
    assert H.set_cookie_headers(r2) == []


def test_forward_auth_200_carries_it(rgw, sql, redis_client, user, secret):
    _make_due(sql, redis_client, user)
    fa = {"X-Original-URI": "/s/x", **G.cookie(user)}
    r = _get(rgw, "/_auth", fa)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-user-id") == user.id
    assert H.set_cookie_headers(r) == [_want(secret, user.token)], H.set_cookie_headers(r)
    _wait_moved(sql, user.token)
    r2 = _get(rgw, "/_auth", fa)
    assert r2.status_code == 200 and H.set_cookie_headers(r2) == []


def test_own_error_after_the_refresh_carries_it(rgw, sql, redis_client, user, secret):
    """The row has moved even when the upstream cannot answer: the 502 says so."""
    _make_due(sql, redis_client, user)
    r = _get(rgw, "/deads/x", G.cookie(user))
    assert r.status_code == 502, r.text
    assert H.set_cookie_headers(r) == [_want(secret, user.token)], H.set_cookie_headers(r)
    _wait_moved(sql, user.token)


def test_refused_session_gets_none(rgw, sql, redis_client, user):
    sql.execute('update "session" set "expiresAt" = now() - interval \'1 minute\' where token = %s',
                (user.token,))
    redis_client.delete(H.session_key(user.token))
    r = _get(rgw, "/s/x", G.cookie(user))
    assert r.status_code == 401 and H.set_cookie_headers(r) == []


def test_dont_remember_stops_the_refresh(rgw, sql, live_authsvc, secret):
    """rememberMe:false: a one-day row, a browser-session cookie and the signed
    dont_remember cookie. With that cookie nothing is refreshed (Better Auth and
    authsvc neither); without it the session is refreshed as any other."""
    c = H.ApiClient(live_authsvc)
    try:
        u = c.sign_up()
        r = c.post("sign-in/email", {"email": u.email, "password": u.password, "rememberMe": False})
        assert r.status_code == 200, r.text
    finally:
        c.close()
    token = r.json()["token"]
    jar = H.set_cookies(r)
    dr = c.dont_remember_name
    assert "max-age" not in jar[NAME][1] and dr in jar, H.set_cookie_headers(r)
    both = f"{NAME}={jar[NAME][0]}; {dr}={jar[dr][0]}"
    before = _left(sql, token)
    assert DAY - 120 < before <= DAY + 5
    for i in range(2):
        g = _get(rgw, f"/s/dr{i}", {"Cookie": both})
        assert g.status_code == 200, g.text
        assert not _session_lines(g), H.set_cookie_headers(g)
    time.sleep(0.3)
    assert abs(_left(sql, token) - before) < 30, "a rememberMe:false session was refreshed"
    # a forged dont_remember cookie is no dont_remember cookie
    forged = f"{NAME}={jar[NAME][0]}; {dr}=true.{'A' * 43}%3D"
    g = _get(rgw, "/s/forged", {"Cookie": forged})
    assert g.status_code == 200
    assert _session_lines(g) == [_want(secret, token)], H.set_cookie_headers(g)
    _wait_moved(sql, token)


def test_secure_cookie_name_and_max_age_from_config(gateway_factory, sql, redis_client, secret, user,
                                                    ups, dead_upstream_url):
    """https:// BETTER_AUTH_URL: the __Secure- name and Secure; Max-Age is
    SESSION_EXPIRES_IN_SECONDS (2 h here, refreshed once 60 s old)."""
    g = gateway_factory({"BETTER_AUTH_URL": "https://auth.example.com", "SESSION_EXPIRES_IN_SECONDS": "7200",
                         "SESSION_UPDATE_AGE_SECONDS": "60"}, _routes(ups, dead_upstream_url),
                        name="gateway-refresh-secure")
    _make_due(sql, redis_client, user, expires="1 hour")
    name = "__Secure-" + NAME
    cookie = {"Cookie": f"{name}={H.cookie_value(secret, user.token)}"}
    r = _get(g, "/s/sec", cookie)
    assert r.status_code == 200, r.text
    assert _session_lines(r, name) == [_want(secret, user.token, 7200, name, secure=True)], \
        H.set_cookie_headers(r)
    assert not _session_lines(r)
    _wait_moved(sql, user.token, above=7100)
    assert _left(sql, user.token) <= 7205
    r2 = _get(g, "/s/sec2", cookie)
    assert r2.status_code == 200 and not _session_lines(r2, name)


# ---------------------------------------------------------------------------
# Better Auth 1.7.25 (tests/e2e/interop) on the same database


@pytest.fixture(scope="module")
def ba(main_db_url, secret, trusted_origins, gw_dir):
    from pcsupport import interop as TA
    d = TA.install()
    port = H.free_port()
    env = {"DATABASE_URL": main_db_url, "BETTER_AUTH_SECRET": secret,
           "BETTER_AUTH_URL": f"http://127.0.0.1:{port}", "TRUSTED_ORIGINS": ",".join(trusted_origins),
           "PORT": str(port)}
    proc = H.Proc(["node", "server.mjs"], env=TA.node_env(env), cwd=str(d),
                  stdout=gw_dir / f"ba-refresh-{port}.stdout", stderr=gw_dir / f"ba-refresh-{port}.stderr",
                  name="better-auth-refresh")
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}: {H.tail(proc.stderr_path)}")
            return f"ready {port}" in H.tail(proc.stdout_path, 2000)
        H.wait_until(ready, TA.START_TIMEOUT, what="Better Auth 1.7.25")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop(signal.SIGTERM, timeout=10)


def test_same_line_as_better_auth_and_better_auth_accepts_it(rgw, ba, sql, redis_client, user):
    """Better Auth refreshes the session and sends its line; the session is made due
    again and the gateway refreshes it: the two lines are the same, byte for byte.
    Better Auth then takes the gateway's cookie and, the row being fresh, sends none."""
    _make_due(sql, redis_client, user)
    b = requests.get(ba + "/api/auth/get-session", headers=G.cookie(user), timeout=20)
    assert b.status_code == 200 and b.json() and b.json()["session"]["token"] == user.token, b.text
    ba_lines = _session_lines(b)
    assert len(ba_lines) == 1, H.set_cookie_headers(b)
    _wait_moved(sql, user.token)

    _make_due(sql, redis_client, user)
    r = _get(rgw, "/s/ba", G.cookie(user))
    assert r.status_code == 200, r.text
    assert _session_lines(r) == ba_lines, (H.set_cookie_headers(r), ba_lines)
    _wait_moved(sql, user.token)

    value = _session_lines(r)[0].split(";")[0]
    b2 = requests.get(ba + "/api/auth/get-session", headers={"Cookie": value}, timeout=20)
    assert b2.status_code == 200 and b2.json(), b2.text
    assert b2.json()["session"]["token"] == user.token
    assert b2.json()["user"]["id"] == user.id
    assert not _session_lines(b2), "Better Auth refreshed a session the gateway had just refreshed"
    assert urllib.parse.unquote(value.split("=", 1)[1]) == user.signed
