"""Helpers for test_gw_limits.py (issue 4, gateway side): API keys made through
authsvc's routes, bursts of requests spread over several gateways at once, and the
apikey row the gateways write their counters back to.  No fixtures here."""

from __future__ import annotations

import collections
import threading
import time

import requests

import pcsupport as H

INTERNAL_SECRET = H.sensitive("svc-" + H.generate_id(40))


class Key:
    """A key as authsvc's create answered it (plaintext registered as sensitive)."""

    def __init__(self, body: dict):
        self.body = body
        self.key = H.sensitive(body["key"])
        self.id = body["id"]
        self.user_id = body["referenceId"]
        self.hash = H.token_hash(self.key)

    def __repr__(self):
        return f"Key(id={self.id!r})"


class KeyApi:
    """authsvc's API-key routes: the public ones with a user's session (bearer), the
    internal ones with INTERNAL_SERVICE_SECRET in x-service-auth."""

    def __init__(self, svc):
        self.http = H.ApiClient(svc)

    def close(self):
        self.http.close()

    def sign_up(self, name="Limits User"):
        return self.http.sign_up(name=name)

    def create(self, user, body=None) -> Key:
        r = self.http.post("api-key/create", body or {}, bearer=user.token)
        assert r.status_code == 200, f"api-key/create: {r.status_code} {r.text[:300]}"
        return Key(r.json())

    def update(self, user, body) -> dict:
        r = self.http.post("api-key/update", body, bearer=user.token)
        assert r.status_code == 200, f"api-key/update: {r.status_code} {r.text[:300]}"
        return r.json()

    def internal_create(self, user, **fields) -> Key:
        r = self.http.post("/api/internal/api-key/create", {"userId": user.id, **fields},
                           headers={"x-service-auth": INTERNAL_SECRET})
        assert r.status_code == 200, f"internal create: {r.status_code} {r.text[:300]}"
        return Key(r.json())

    def internal_update(self, user, key: Key, **fields) -> dict:
        r = self.http.post("/api/internal/api-key/update",
                           {"keyId": key.id, "userId": user.id, **fields},
                           headers={"x-service-auth": INTERNAL_SECRET})
        assert r.status_code == 200, f"internal update: {r.status_code} {r.text[:300]}"
        return r.json()


# ---------------------------------------------------------------------------
# bursts


class Result:
    __slots__ = ("gw", "status", "code", "retry_after", "resp", "error")

    def __init__(self, gw, resp=None, error=None):
        self.gw, self.resp, self.error = gw, resp, error
        self.status = resp.status_code if resp is not None else None
        self.retry_after = resp.headers.get("retry-after") if resp is not None else None
        self.code = None
        if resp is not None and resp.status_code != 200:
            try:
                self.code = resp.json().get("code")
            except ValueError:
                self.code = "<not json>"

    def __repr__(self):
        return f"<gw{self.gw} {self.status} {self.code} ra={self.retry_after} err={self.error}>"


def burst(gws, n: int, headers: dict, path: str = "/k/limits", threads: int = 12,
          timeout: float = 20.0) -> list:
    """n requests at once, request i to gws[i % len(gws)], from `threads` threads that
    start together (each with its own keep-alive connections).  Bounded: every request
    has a 10 s timeout and the whole burst `timeout` seconds."""
    threads = max(1, min(threads, n))
    results = [None] * n
    start = threading.Barrier(threads)

    def run(t):
        s = requests.Session()
        s.trust_env = False
        try:
            try:
                start.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
            for i in range(t, n, threads):
                g = gws[i % len(gws)]
                try:
                    results[i] = Result(i % len(gws), s.get(g.url(path), headers=headers, timeout=10))
                except requests.RequestException as e:
                    results[i] = Result(i % len(gws), error=repr(e))
        finally:
            s.close()

    ts = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + timeout
    for t in ts:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in ts), f"burst of {n} did not finish within {timeout}s"
    missing = [i for i, r in enumerate(results) if r is None or r.error]
    assert not missing, f"{len(missing)} requests failed: {[results[i] for i in missing[:5]]}"
    return results


def tally(results) -> dict:
    """{(status, code): count}; code is None for a 200."""
    return dict(collections.Counter((r.status, r.code) for r in results))


def sequential(g, n: int, headers: dict, path: str = "/k/limits") -> list:
    """n requests one after the other on g's keep-alive connection."""
    return [Result(0, g.get(path, headers=headers)) for _ in range(n)]


# ---------------------------------------------------------------------------
# the apikey row


def row(sql, key_id) -> dict | None:
    with sql.conn.cursor() as cur:
        cur.execute('select *, now() as "_now" from "apikey" where id = %s', (key_id,))
        r = cur.fetchone()
        if r is None:
            return None
        return dict(zip([d.name for d in cur.description], r))


def db_now(sql):
    return sql.scalar("select now()")


def wait_row(sql, key_id, pred, timeout: float, what: str):
    """Polls the row until pred(row) holds; returns (row, seconds waited)."""
    t0 = time.monotonic()
    last = None
    while True:
        last = row(sql, key_id)
        if last is not None and pred(last):
            return last, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            show = {k: last.get(k) for k in ("remaining", "requestCount", "lastRequest",
                                             "lastRefillAt")} if last else None
            raise AssertionError(f"{what}: not within {timeout}s; row now {show}")
        time.sleep(0.05)


def key_headers(key) -> dict:
    return {"x-api-key": key.key if hasattr(key, "key") else key}


def poll_each(gws, headers, status, timeout=2.0, path="/k/limits"):
    """For every gateway in turn: requests until one answers `status`.  Returns, per
    gateway, (seconds from this call until it answered so, that response, statuses
    seen before)."""
    t0 = time.monotonic()
    out = []
    for g in gws:
        seen = []
        while True:
            r = g.get(path, headers=headers)
            if r.status_code == status:
                out.append((time.monotonic() - t0, r, seen))
                break
            seen.append(r.status_code)
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"{g.name}: no {status} within {timeout}s; saw {seen[-10:]} "
                                     f"(last {r.status_code} {r.text[:200]})")
            time.sleep(0.002)
    return out
