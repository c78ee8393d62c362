"""Sign-in/sign-up rate limiting per IP and path, kept in Redis (compat doc §8):
3 requests per 10 s, then 429 with X-Retry-After.

The client address is the TCP peer (here always 127.0.0.1) unless the peer is
one of TRUSTED_PROXIES; then X-Forwarded-For is read from the right. Most
tests here run with TRUSTED_PROXIES=127.0.0.1, standing in for a proxy in
front, so that X-Forwarded-For can name many clients."""

import http.client
import time

import pytest

import pcsupport as H

_n = [0]


@pytest.fixture
def limited(authsvc_factory, client_for):
    """A server with rate limiting on, its own Redis prefix (fresh counters), and
    the loopback peer as a trusted proxy (so X-Forwarded-For names the client)."""
    return client_for(_limited_svc(authsvc_factory, {"TRUSTED_PROXIES": "127.0.0.1"}))


def _limited_svc(authsvc_factory, env):
    _n[0] += 1
    prefix = f"rl{_n[0]}-{int(time.time())}:"
    return authsvc_factory({"RATE_LIMIT_ENABLED": "true", "REDIS_PREFIX": prefix, **env},
                           name="authsvc-rl")


def _sign_in(c, xff, **kw):
    # an unknown email: 401 when allowed, 429 when limited
    return c.post("sign-in/email", {"email": "ratelimit@example.com", "password": "Wrong-password-1"},
                  xff=xff, **kw)


def assert_429(r):
    assert r.status_code == 429, f"expected 429, got {r.status_code}: {r.text[:200]}"
    retry = r.headers.get("X-Retry-After")
    assert retry is not None, r.headers
    assert 0 <= int(retry) <= 10, retry
    body = r.json()
    assert "message" in body, body
    return int(retry)


def test_fourth_sign_in_within_10s_is_429(limited):
    for i in range(3):
        r = _sign_in(limited, "198.51.100.1")
        assert r.status_code == 401, f"attempt {i + 1}: {r.status_code} {r.text}"
    assert_429(_sign_in(limited, "198.51.100.1"))
    assert_429(_sign_in(limited, "198.51.100.1"))


def test_limits_are_per_ip(limited):
    for _ in range(3):
        _sign_in(limited, "198.51.100.2")
    assert_429(_sign_in(limited, "198.51.100.2"))
    assert _sign_in(limited, "198.51.100.3").status_code == 401


def test_limits_are_per_path(limited):
    for _ in range(3):
        _sign_in(limited, "198.51.100.4")
    assert_429(_sign_in(limited, "198.51.100.4"))
    # sign-up from the same IP has its own counter (an invalid body: 400, not 429)
    r = limited.post("sign-up/email", {"name": "x"}, xff="198.51.100.4")
    assert r.status_code == 400, r.text
    # routes without a special rule allow far more than 3
    for _ in range(10):
        r = limited.get("get-session", xff="198.51.100.4")
        assert r.status_code == 200, r.text


def test_sign_up_is_limited(limited, db):
    ip = "198.51.100.5"
    statuses = []
    for _ in range(3):
        statuses.append(limited.post("sign-up/email", {"name": "x"}, xff=ip).status_code)
    assert statuses == [400, 400, 400]
    before = db.snapshot()
    r = limited.post("sign-up/email", {"name": "RL", "email": H.unique_email("rl"),
                                       "password": H.new_password()}, xff=ip)
    assert_429(r)
    assert db.snapshot() == before


def test_forwarded_for_is_read_from_the_right(limited):
    """Behind a trusted proxy the right-most address is the one the proxy saw; what
    the client wrote to its left is ignored, so rotating it does not help."""
    for i in range(3):
        r = _sign_in(limited, f"10.0.{i}.1, 198.51.100.11")
        assert r.status_code == 401, r.text
    assert_429(_sign_in(limited, "10.9.9.1, 198.51.100.11"))
    assert_429(_sign_in(limited, "198.51.100.11"))
    assert _sign_in(limited, "198.51.100.12, 198.51.100.6").status_code == 401
    # no header from the proxy: the proxy's own address
    for _ in range(3):
        assert _sign_in(limited, None).status_code == 401
    assert_429(_sign_in(limited, None))


def test_counters_are_shared_between_instances(authsvc_factory, client_for):
    prefix = f"rlshared-{int(time.time())}:"
    env = {"RATE_LIMIT_ENABLED": "true", "REDIS_PREFIX": prefix, "TRUSTED_PROXIES": "127.0.0.1"}
    a = client_for(authsvc_factory(env, name="authsvc-rl-a"))
    b = client_for(authsvc_factory(env, name="authsvc-rl-b"))
    for c in (a, b, a):
        assert _sign_in(c, "198.51.100.7").status_code == 401
    assert_429(_sign_in(b, "198.51.100.7"))


@pytest.mark.slow
def test_limit_resets_after_the_window(limited):
    ip = "198.51.100.8"
    for _ in range(3):
        _sign_in(limited, ip)
    retry = assert_429(_sign_in(limited, ip))
    time.sleep(min(retry, 10) + 0.5)
    r = _sign_in(limited, ip)
    if r.status_code == 429:            # X-Retry-After rounds down: allow one more second
        time.sleep(1.0)
        r = _sign_in(limited, ip)
    assert r.status_code == 401, r.text


def test_disabled_rate_limit_never_429(client):
    for _ in range(5):
        r = _sign_in(client, "198.51.100.9")
        assert r.status_code == 401, r.text


def test_429_is_json_with_a_message(limited):
    for _ in range(3):
        _sign_in(limited, "198.51.100.10")
    r = _sign_in(limited, "198.51.100.10")
    assert_429(r)
    assert "application/json" in r.headers.get("content-type", "")
    assert r.json()["message"] == "Too many requests. Please try again later."


# -- security issue #13 item 6: the limit must not trust a header by default ----

def test_rotating_forwarded_for_from_an_untrusted_peer_is_limited(authsvc_factory, client_for):
    """The default: no trusted proxies, so X-Forwarded-For is the client's own claim
    and the limit keys on the TCP peer."""
    c = client_for(_limited_svc(authsvc_factory, {}))
    statuses = [_sign_in(c, f"203.0.113.{i}").status_code for i in range(1, 11)]
    assert statuses[:3] == [401, 401, 401], statuses
    assert statuses[3:] == [429] * 7, statuses
    for xff in ("198.51.100.99", "198.51.100.99, 198.51.100.98", None):
        assert_429(_sign_in(c, xff))


def test_forwarded_for_from_a_peer_outside_trusted_proxies_is_ignored(authsvc_factory, client_for):
    c = client_for(_limited_svc(authsvc_factory, {"TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8"}))
    statuses = [_sign_in(c, f"203.0.113.{i}").status_code for i in range(20, 26)]
    assert statuses == [401, 401, 401, 429, 429, 429], statuses


def test_empty_ip_address_header_means_the_peer(authsvc_factory, client_for):
    c = client_for(_limited_svc(authsvc_factory, {"TRUSTED_PROXIES": "127.0.0.1",
                                                  "IP_ADDRESS_HEADER": ""}))
    statuses = [_sign_in(c, f"203.0.113.{i}").status_code for i in range(30, 36)]
    assert statuses == [401, 401, 401, 429, 429, 429], statuses


def test_other_ip_address_header(authsvc_factory, client_for):
    c = client_for(_limited_svc(authsvc_factory, {"TRUSTED_PROXIES": "127.0.0.1",
                                                  "IP_ADDRESS_HEADER": "X-Real-IP"}))
    for _ in range(3):
        r = _sign_in(c, "198.51.100.40", headers={"X-Real-IP": "198.51.100.41"})
        assert r.status_code == 401, r.text
    assert_429(_sign_in(c, "198.51.100.42", headers={"X-Real-IP": "198.51.100.41"}))
    assert _sign_in(c, None, headers={"X-Real-IP": "198.51.100.43"}).status_code == 401


def test_five_spellings_of_one_address_are_one_client(limited):
    spellings = ["203.0.113.77", "::ffff:203.0.113.77", "::FFFF:203.0.113.77",
                 "0:0:0:0:0:ffff:cb00:714d", "[::ffff:cb00:714d]:4711"]
    statuses = [_sign_in(limited, s).status_code for s in spellings]
    assert statuses == [401, 401, 401, 429, 429], statuses


def test_ipv6_clients_are_limited_by_their_64(limited):
    statuses = [_sign_in(limited, a).status_code
                for a in ("2001:db8:7:1::1", "2001:db8:7:1::2", "2001:DB8:7:1:ffff::3",
                          "2001:db8:7:1:0:0:0:4")]
    assert statuses == [401, 401, 401, 429], statuses
    assert _sign_in(limited, "2001:db8:7:2::1").status_code == 401


def _raw_sign_in(svc, header_lines):
    """A request with several X-Forwarded-For lines (requests cannot send that)."""
    body = b'{"email":"ratelimit@example.com","password":"Wrong-password-1"}'
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    try:
        conn.putrequest("POST", "/api/auth/sign-in/email")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        for v in header_lines:
            conn.putheader("X-Forwarded-For", v)
        conn.endheaders(body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_trusted_proxy_chain_and_several_header_lines(authsvc_factory):
    svc = _limited_svc(authsvc_factory, {"TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"})
    # two proxies (10.x and the loopback peer): the client is left of the 10.x hop,
    # and lines are one list in order, so a client-written first line changes nothing
    chains = [["6.6.6.1", "198.51.100.50, 10.1.2.3"], ["198.51.100.50, 10.1.2.3"],
              ["6.6.6.2, 198.51.100.50", "10.7.7.7"], ["198.51.100.50", "10.0.0.1, 10.0.0.2"]]
    assert [_raw_sign_in(svc, c) for c in chains] == [401, 401, 401, 429]
    assert _raw_sign_in(svc, ["198.51.100.51", "10.0.0.1"]) == 401


def test_session_ip_comes_from_a_trusted_proxy_only(authsvc_factory, client_for):
    for env, want in (({}, "127.0.0.1"), ({"TRUSTED_PROXIES": "127.0.0.1"}, "203.0.113.7")):
        svc = authsvc_factory(env, name="authsvc-ip")
        c = client_for(svc)
        u = c.sign_up(name="IP")
        r = c.post("sign-in/email", {"email": u.email, "password": u.password},
                   xff="::FFFF:203.0.113.7")
        assert r.status_code == 200, r.text
        s = c.get("get-session", cookie=f"{H.SESSION_COOKIE}={H.set_cookies(r)[H.SESSION_COOKIE][0]}")
        assert s.json()["session"]["ipAddress"] == want, (env, s.json()["session"])


@pytest.mark.parametrize("value", ["nonsense", "10.0.0.1/8", "10.0.0.0/33", "127.0.0.1:80",
                                   "127.0.0.1,example.com"])
def test_bad_trusted_proxies_are_refused_at_start(pg, redis_srv, value):
    from pcsupport.suite import base_env
    env = base_env(pg, redis_srv)
    env["TRUSTED_PROXIES"] = value
    r = H.run_authsvc([], env=env, timeout=15)
    assert r.returncode != 0, f"TRUSTED_PROXIES={value!r} was accepted"
    assert "TRUSTED_PROXIES" in r.stderr.decode(errors="replace")
