"""Headers sent on more than one line, and Bearer values read by one rule (security
issue #13, items 9 and 10, and the UTF-8 log item):

- no X-Forwarded-For line of an untrusted client reaches the upstream
  (haproxy's `option forwardfor` adds its own line after the client's);
- a Cookie header split over several lines is read whole, by the gateway and authsvc;
- BEARER_REQUIRE_SIGNATURE refuses raw session tokens at the gateway as at authsvc;
- raw bytes 0x80-0xff in a path leave the log lines valid UTF-8."""

import json

import pytest

import pcsupport as H
import pcsupport as G


def _raw(port, target, lines):
    req = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + \
        b"".join(l.encode() + b"\r\n" for l in lines) + b"Connection: close\r\n\r\n"
    return G.raw_http(port, req)


def test_no_x_forwarded_for_line_of_a_stranger_reaches_the_upstream(gw):
    """Every line is dropped, not only the first (a trusted proxy's lines are all kept,
    in order: test_gw_route_rules.py)."""
    st, _, body, _ = _raw(gw.port, "/pub/xff", ["X-Forwarded-For: 203.0.113.9",
                                                "X-Forwarded-For: 198.51.100.7, 192.0.2.1"])
    assert st == 200, body
    xff = json.loads(body)["headers"]["x-forwarded-for"]
    assert xff == "127.0.0.1", xff


def test_session_cookie_on_a_later_cookie_line_gateway(gw, mod_user):
    lines = ["Cookie: theme=dark; lang=en", f"Cookie: {mod_user.cookie}"]
    st, _, body, _ = _raw(gw.port, "/s/cookies", lines)
    assert st == 200, body
    assert json.loads(body)["headers"]["x-user-id"] == mod_user.id
    st, h, _, _ = _raw(gw.port, "/_auth", [*lines, "X-Original-URI: /s/x"])
    assert st == 200 and h.get("x-user-id") == mod_user.id, h


def test_session_cookie_on_a_later_cookie_line_authsvc(live_authsvc, mod_user):
    port = int(live_authsvc.base_url.rsplit(":", 1)[1].split("/")[0])
    st, _, body, _ = _raw(port, "/api/auth/get-session",
                          ["Cookie: theme=dark", f"Cookie: {mod_user.cookie}"])
    assert st == 200, body
    got = json.loads(body)
    assert got and got["user"]["id"] == mod_user.id, got


@pytest.fixture
def strict_gateway(gateway_factory):
    return gateway_factory({"BEARER_REQUIRE_SIGNATURE": "true"}, name="gateway-strict-bearer")


def test_gateway_honours_bearer_require_signature(strict_gateway, mod_user):
    g = strict_gateway
    body = G.assert_gw_error(g.get("/s/x", headers=G.bearer(mod_user.token)), 401, "INVALID_TOKEN")
    assert "signed" in body["message"], body
    G.assert_gw_error(g.get("/_auth", headers={**G.bearer(mod_user.token), "X-Original-URI": "/s/x"}),
                      401, "INVALID_TOKEN")
    assert G.echo(g.get("/s/x", headers=G.bearer(mod_user.signed)))["headers"]["x-user-id"] == mod_user.id
    # cookies are signed anyway
    assert g.get("/s/x", headers=G.cookie(mod_user)).status_code == 200


def test_gateway_default_still_takes_raw_tokens(gw, mod_user):
    """The default (false) is Better Auth's bearer plugin's, in both programs."""
    assert G.echo(gw.get("/s/x", headers=G.bearer(mod_user.token)))["headers"]["x-user-id"] == mod_user.id


def test_authsvc_and_gateway_agree(authsvc_factory, strict_gateway, mod_user):
    svc = authsvc_factory({"BEARER_REQUIRE_SIGNATURE": "true"}, name="authsvc-strict-bearer")
    c = H.ApiClient(svc)
    try:
        for value, ok in ((mod_user.token, False), (mod_user.signed, True)):
            r = c.get("get-session", bearer=value, origin=None)
            at_authsvc = r.status_code == 200 and r.json() is not None
            at_gateway = strict_gateway.get("/s/x", headers=G.bearer(value)).status_code == 200
            assert at_authsvc == at_gateway == ok, (value[:6], at_authsvc, at_gateway)
    finally:
        c.close()


@pytest.mark.parametrize("prog", ["gateway", "authsvc"])
def test_bad_bearer_require_signature_value_stops_both(prog):
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": "c" * 40,
           "REDIS_URL": "redis://127.0.0.1:1", "BEARER_REQUIRE_SIGNATURE": "maybe",
           "UPSTREAM_URL": "http://127.0.0.1:9", "GATEWAY_LISTEN": f"127.0.0.1:{H.free_port()}",
           "AUTHSVC_LISTEN": f"127.0.0.1:{H.free_port()}"}
    mk = G.gateway_env if prog == "gateway" else H.authsvc_env
    r = H.run_bounded([H.binary(prog)], env=mk(env), timeout=10)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0 and "BEARER_REQUIRE_SIGNATURE" in err, (r.returncode, err)


def _utf8_lines(path, marker: bytes):
    return [l for l in path.read_bytes().split(b"\n") if marker in l]


def test_raw_bytes_in_the_original_uri_leave_the_access_log_valid_utf8(gateway_factory):
    """The gateway's parser refuses raw bytes in a request target (400); X-Original-URI
    may hold them (obs-text), and the access log writes that path."""
    g = gateway_factory({}, name="gateway-utf8-log")
    st, _, _, _ = G.raw_http(g.port, b"GET /_auth HTTP/1.1\r\nHost: a\r\n"
                             b"X-Original-URI: /pub/caf\xc3\xa9/\xff\xfe/\xc0\xaf\r\n"
                             b"X-Request-Id: utf8-log-test-0002\r\nConnection: close\r\n\r\n")
    assert st == 200
    H.wait_until(lambda: _utf8_lines(g.log_path, b"utf8-log-test-0002"), 5, what="access log line")
    raw = _utf8_lines(g.log_path, b"utf8-log-test-0002")[0]
    entry = json.loads(raw.decode("utf-8"))     # raises on invalid UTF-8
    assert entry["path"] == "/pub/caf\u00e9/\u00ff\u00fe/\u00c0\u00af", entry


def test_raw_bytes_in_a_path_leave_the_authsvc_log_valid_utf8(authsvc_factory):
    svc = authsvc_factory({}, name="authsvc-utf8-log")
    port = int(svc.base_url.rsplit(":", 1)[1].split("/")[0])
    st, _, _, _ = G.raw_http(port, b"GET /api/auth/caf\xc3\xa9\xff\xfe HTTP/1.1\r\nHost: a\r\n"
                             b"Connection: close\r\n\r\n")
    assert st is not None

    def lines():
        return [l for l in svc.log_path.read_bytes().split(b"\n") if b"/api/auth/caf" in l]
    H.wait_until(lines, 5, what="authsvc access log line")
    for raw in lines():
        json.loads(raw.decode("utf-8"))         # raises on invalid UTF-8
