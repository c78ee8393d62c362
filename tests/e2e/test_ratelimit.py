"""Sign-in/sign-up rate limiting per IP and path, kept in Redis (compat doc §8):
3 requests per 10 s, then 429 with X-Retry-After."""

import time

import pytest

import harness as H

_n = [0]


@pytest.fixture
def limited(authsvc_factory, client_for):
    """A server with rate limiting on and its own Redis prefix (fresh counters)."""
    _n[0] += 1
    prefix = f"rl{_n[0]}-{int(time.time())}:"
    svc = authsvc_factory({"RATE_LIMIT_ENABLED": "true", "REDIS_PREFIX": prefix}, name="authsvc-rl")
    return client_for(svc)


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


def test_multi_valued_forwarded_for_is_not_trusted(limited):
    """Without trusted proxies only a single-valued X-Forwarded-For is used; otherwise the
    peer address (here 127.0.0.1) is the key, so spoofed lists share one counter."""
    for i in range(3):
        r = _sign_in(limited, f"10.0.{i}.1, 10.0.{i}.2")
        assert r.status_code == 401, r.text
    assert_429(_sign_in(limited, "10.9.9.1, 10.9.9.2"))
    assert_429(_sign_in(limited, None))
    assert _sign_in(limited, "198.51.100.6").status_code == 401


def test_counters_are_shared_between_instances(authsvc_factory, client_for):
    prefix = f"rlshared-{int(time.time())}:"
    a = client_for(authsvc_factory({"RATE_LIMIT_ENABLED": "true", "REDIS_PREFIX": prefix}, name="authsvc-rl-a"))
    b = client_for(authsvc_factory({"RATE_LIMIT_ENABLED": "true", "REDIS_PREFIX": prefix}, name="authsvc-rl-b"))
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
