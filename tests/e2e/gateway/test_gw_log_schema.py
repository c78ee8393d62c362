"""One access-log schema for both programs (issue 17): every line has ts, level, prog,
event "access", req_id, client_ip, method, path, status, latency_us, bytes_in and
bytes_out; a request with a credential has user_id and cred_id (the session id or the
key id, never the secret); user_agent when one was sent; the gateway adds route and
upstream. Read from the log files of a real gateway and a real authsvc."""

import json
import time

import requests

COMMON = {"ts", "level", "prog", "event", "req_id", "client_ip", "method", "path", "status",
          "latency_us", "bytes_in", "bytes_out"}


def _access(proc, req_id, timeout=5.0):
    """The access line with req_id from proc's log (the gateway writes in batches)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            lines = proc.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            if req_id in line:
                d = json.loads(line)
                if d.get("event") == "access" and d.get("req_id") == req_id:
                    return d
        assert time.monotonic() < deadline, f"no access line for {req_id} in {proc.log_path}"
        time.sleep(0.1)


def _rid(tag):
    return f"{tag}{int(time.time() * 1e6):x}"[:40]


def test_gateway_lines(gateway_factory, upstream, keys, mod_user, user, sql):
    g = gateway_factory(route_table={"routes": [
        {"prefix": "/k/", "upstream": upstream.url, "auth": ["api_key"]},
        {"prefix": "/s/", "upstream": upstream.url, "auth": ["session"]},
    ]}, name="gateway-log-schema")
    key = keys.create(mod_user.id)
    body = b"x" * 1000
    rid = _rid("schemak")
    r = g.post("/k/echo", data=body, headers={"x-api-key": key.key, "X-Request-Id": rid,
                                               "User-Agent": "schema-test/1.0"})
    assert r.status_code == 200
    d = _access(g, rid)
    assert COMMON <= set(d), COMMON - set(d)
    assert d["prog"] == "gateway" and d["level"] == "info" and d["client_ip"] == "127.0.0.1"
    assert d["method"] == "POST" and d["path"] == "/k/echo" and d["status"] == 200
    assert d["auth"] == "api_key" and d["user_id"] == mod_user.id
    assert d["cred_id"] == key.id and key.key not in json.dumps(d)
    assert d["user_agent"] == "schema-test/1.0"
    assert d["upstream"] == upstream.url and d["route"] == "/k/"
    assert d["bytes_in"] >= 1000 + len("POST /k/echo HTTP/1.1\r\n"), d["bytes_in"]
    assert d["bytes_out"] >= len(r.content) + 50, (d["bytes_out"], len(r.content))
    assert d["bytes_out"] < len(r.content) + 4096
    # a session: its id, never its token
    rid = _rid("schemas")
    r = g.get("/s/x", headers={"Cookie": user.cookie, "X-Request-Id": rid})
    assert r.status_code == 200
    d = _access(g, rid)
    assert d["auth"] == "session" and d["cred_id"] == sql.session_id(user.token), d
    assert user.token not in json.dumps(d)
    # refused before any upstream: no upstream, no user
    rid = _rid("schemar")
    assert g.get("/k/x", headers={"x-api-key": "pk_bogus", "X-Request-Id": rid}).status_code == 401
    d = _access(g, rid)
    assert COMMON <= set(d) and "upstream" not in d and "cred_id" not in d and d["status"] == 401


def test_authsvc_lines(live_authsvc, user, sql):
    rid = _rid("schemaa")
    r = requests.get(live_authsvc.api("get-session"), timeout=5,
                     headers={"Cookie": user.cookie, "X-Request-Id": rid,
                              "User-Agent": "schema-test/2.0"})
    assert r.status_code == 200 and r.json()["user"]["id"] == user.id
    d = _access(live_authsvc, rid)
    assert COMMON <= set(d), COMMON - set(d)
    assert d["prog"] == "authsvc" and d["level"] == "info" and d["event"] == "access"
    assert d["client_ip"] == "127.0.0.1" and d["status"] == 200
    assert d["user_id"] == user.id and d["cred_id"] == sql.session_id(user.token)
    assert d["user_agent"] == "schema-test/2.0" and user.token not in json.dumps(d)
    assert d["bytes_out"] >= len(r.content) and d["bytes_out"] < len(r.content) + 4096
    assert d["bytes_in"] > len("GET /api/auth/get-session HTTP/1.1\r\n")
    # the two programs share the field names of the common part
    assert set(d) & COMMON == COMMON


def test_gateway_line_hides_a_reset_link_token(gateway_factory, upstream):
    """authsvc (or Better Auth) behind a public route: the reset link's token is a
    path segment, and the gateway logs it as :token, as authsvc does."""
    g = gateway_factory(route_table={"routes": [
        {"prefix": "/api/auth/", "upstream": upstream.url, "auth": ["none"]},
    ]}, name="gateway-log-reset")
    token = "Zq8" + "x7Kp2" * 4
    rid = _rid("schemat")
    r = g.get(f"/api/auth/reset-password/{token}?callbackURL=/r", headers={"X-Request-Id": rid})
    assert r.status_code == 200 and r.json()["path"].endswith(token)
    d = _access(g, rid)
    assert d["path"] == "/api/auth/reset-password/:token", d
    assert token not in g.log_path.read_text(errors="replace")
