"""GATEWAY_PENDING_MAX counts every parked request, a JWKS wait included (issue #14,
point 2).

A request whose JWT names a kid the cache does not know parks on its issuer until
the next JWKS fetch.  Before the fix that wait was never counted as parked, but its
wake-up un-parked it all the same, so each such wait loosened the bound by one: after
N waits a worker admitted GATEWAY_PENDING_MAX + N parked lookups.  Here, on a gateway
of one worker with a small bound:

  * a JWKS wait shows as `parked` on /_stats while it waits, and the gauge comes back
    to 0 (not below) after each;
  * afterwards, with PostgreSQL held up by a table lock, exactly GATEWAY_PENDING_MAX
    API-key lookups park and every one beyond is answered 503 OVERLOADED at once;
  * with the bound full, an unknown kid is refused 503 OVERLOADED instead of parking,
    while a JWT with a known kid (no wait) still passes.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import pcsupport as H
import pcsupport as G
from pcsupport import jwt_issuer as J

PENDING = 3             # GATEWAY_PENDING_MAX
JWKS_WAITS = 4          # unknown-kid waits before the bound is tried
REFETCH_MS = 200        # JWKS_REFETCH_MS and JWKS_KID_REFETCH_MS: keep each wait short


@pytest.fixture(scope="module")
def issuer():
    i = J.FakeIssuer()
    i.add_key("ES256", kid="p-es256")
    try:
        yield i
    finally:
        i.stop()


@pytest.fixture
def pgw(gateway_factory, upstream, issuer):
    table = {
        "jwt_issuers": [{"issuer": issuer.issuer, "jwks_uri": issuer.jwks_uri}],
        "routes": [
            {"prefix": "/j/", "upstream": upstream.url, "auth": ["jwt"]},
            {"prefix": "/k/", "upstream": upstream.url, "auth": ["api_key"]},
        ]}
    env = {"GATEWAY_WORKERS": "1", "GATEWAY_PENDING_MAX": str(PENDING),
           "JWKS_REFETCH_MS": str(REFETCH_MS), "JWKS_KID_REFETCH_MS": str(REFETCH_MS),
           "L2_ENABLED": "false",
           "GATEWAY_PG_POOL": "16", "GATEWAY_PG_TIMEOUT_MS": "15000"}
    return gateway_factory(env, table, name="gateway-pending")


def _get(g, path, headers=None, timeout=20):
    with requests.Session() as s:
        s.trust_env = False
        return s.get(g.url(path), headers={**(headers or {}), "Connection": "close"},
                     timeout=timeout)


def _unknown_kid(issuer):
    return issuer.token("p-es256", key=J.new_private_key("ES256"),
                        headers={"kid": "nokid-" + H.generate_id(12)})


def _parked(g):
    return g.stats().get("parked")   # None: no such gauge (before the fix)


def test_jwks_waits_count_as_parked_and_the_bound_holds(pgw, issuer, pg):
    G.echo(_get(pgw, "/j/x", G.bearer(issuer.token("p-es256"))))    # the set is loaded

    # One slow wait: it is counted while it waits.
    issuer.wait_refetch_window(REFETCH_MS / 1000)
    issuer.delay = 1.0
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", _get(pgw, "/j/x",
                                                                 G.bearer(_unknown_kid(issuer)))))
    t.start()
    try:
        H.wait_until(lambda: issuer.in_flight > 0, 5, interval=0.01, what="the JWKS refetch")
        seen_parked = _parked(pgw)
    finally:
        t.join(10)
        issuer.delay = 0.0
    G.assert_gw_error(out["r"], 401, "JWT_UNKNOWN_KEY")

    # More waits, one at a time; each refetches the set.
    for _ in range(JWKS_WAITS - 1):
        issuer.wait_refetch_window(REFETCH_MS / 1000, slack=0.05)
        h0 = issuer.jwks_hits()
        G.assert_gw_error(_get(pgw, "/j/x", G.bearer(_unknown_kid(issuer))), 401, "JWT_UNKNOWN_KEY")
        assert issuer.jwks_hits() > h0, "the unknown kid did not wait for a refetch"

    # Now fill the bound: PostgreSQL answers nobody while the lock is held.
    n = PENDING + JWKS_WAITS
    lock = pg.connect("authsvc", autocommit=False)
    results, statuses = [], []
    try:
        with lock.cursor() as cur:
            cur.execute('LOCK TABLE "apikey" IN ACCESS EXCLUSIVE MODE')

        def one(_):
            r = _get(pgw, "/k/x", {"x-api-key": G.new_api_key()})
            statuses.append(r.status_code)
            return r

        ex = ThreadPoolExecutor(max_workers=n)
        futs = [ex.submit(one, i) for i in range(n)]
        # Those over the bound come back at once; the parked ones wait for the lock.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and len(statuses) < n - PENDING:
            time.sleep(0.02)
        time.sleep(0.3)             # room for any further (wrongly admitted) answer
        answered_early = len(statuses)
        full_parked = _parked(pgw)
        # With the bound full, an unknown kid may not park either; a known kid needs no wait.
        issuer.wait_refetch_window(REFETCH_MS / 1000, slack=0.05)
        unknown_when_full = _get(pgw, "/j/x", G.bearer(_unknown_kid(issuer)), timeout=5)
        known_when_full = _get(pgw, "/j/x", G.bearer(issuer.token("p-es256")), timeout=5)
    finally:
        lock.rollback()
        lock.close()
    try:
        results = [f.result(timeout=20) for f in futs]
    finally:
        ex.shutdown(wait=True)

    overloaded = [r for r in results if r.status_code == 503
                  and r.json().get("code") == "OVERLOADED"]
    looked_up = [r for r in results if r.status_code == 401]
    for r in overloaded:
        G.assert_gw_error(r, 503, "OVERLOADED")
    for r in looked_up:
        G.assert_gw_error(r, 401, "INVALID_API_KEY")
    assert len(overloaded) == n - PENDING and len(looked_up) == PENDING, (
        f"GATEWAY_PENDING_MAX={PENDING} after {JWKS_WAITS} JWKS waits: {len(looked_up)} "
        f"lookups parked, {len(overloaded)} refused (statuses {sorted(r.status_code for r in results)})")
    assert answered_early == n - PENDING, f"{answered_early} answered while the lock was held"

    G.assert_gw_error(unknown_when_full, 503, "OVERLOADED")
    G.echo(known_when_full)

    # The gauge: 1 during the slow JWKS wait, the bound while full, 0 after, never below.
    assert seen_parked == 1, f"parked during a JWKS wait: {seen_parked}"
    assert full_parked == PENDING, f"parked with the bound full: {full_parked}"
    H.wait_until(lambda: _parked(pgw) == 0, 5, what="parked back to 0")
    assert _parked(pgw) == 0
