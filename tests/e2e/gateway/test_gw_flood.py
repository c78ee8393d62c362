"""A flood of random well-formed API keys (each distinct, each sent several times at
once, through x-api-key, Bearer and the path) touches PostgreSQL at most once per
distinct key: asserted from /_stats pg_queries on a gateway of its own."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

import pcsupport as G

N_RANDOM = 200
N_VALID = 20
COPIES = 3
THREADS = 24


def _flood(g, jobs):
    local = threading.local()

    def one(job):
        key, src = job
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
            s.trust_env = False
        if src == "path":
            r = s.get(g.url(f"/oc/{key}/x"), timeout=15)
        elif src == "bearer":
            r = s.get(g.url("/k/x"), headers=G.bearer(key), timeout=15)
        else:
            r = s.get(g.url("/k/x"), headers={"x-api-key": key}, timeout=15)
        return key, r.status_code

    with ThreadPoolExecutor(THREADS) as ex:
        return list(ex.map(one, jobs))


def _jobs(keys):
    jobs = []
    srcs = ("x-api-key", "bearer", "path")
    for k in keys:                  # the copies of one key are adjacent: sent at once
        jobs.extend((k, srcs[i % 3]) for i in range(COPIES))
    return jobs


def test_random_key_flood_one_query_per_distinct_key(gateway_factory, keys, mod_user):
    g = gateway_factory({"L1_NEGATIVE_TTL_SECONDS": "120", "GATEWAY_PG_POOL": "2"}, name="gateway-flood")
    valid = [keys.create(mod_user.id) for _ in range(N_VALID)]
    random_keys = [G.new_api_key(random.choice(["pc_", "", "sk-live_"])) for _ in range(N_RANDOM)]
    assert len(set(random_keys)) == N_RANDOM
    allkeys = random_keys + [k.key for k in valid]
    random.shuffle(allkeys)
    valid_set = {k.key for k in valid}

    s0 = g.stats()
    results = _flood(g, _jobs(allkeys))
    s1 = g.stats()
    wrong = [(k[:6], st) for k, st in results if st != (200 if k in valid_set else 401)]
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:10]}"
    distinct = len(allkeys)
    queries = s1["pg_queries"] - s0["pg_queries"]
    assert queries <= distinct, (f"{queries} PostgreSQL queries for {distinct} distinct keys "
                                 f"({len(results)} requests): {s0} -> {s1}")
    assert s1["pg_errors"] == s0["pg_errors"]

    # the same flood again: everything from L1 (negative entries for the unknown keys)
    results = _flood(g, _jobs(allkeys))
    s2 = g.stats()
    assert all(st == (200 if k in valid_set else 401) for k, st in results)
    assert s2["pg_queries"] == s1["pg_queries"], (s1, s2)
    assert s2["l1_negative_hits"] - s1["l1_negative_hits"] == N_RANDOM * COPIES, (s1, s2)
    assert s2["l1_hits"] - s1["l1_hits"] == N_VALID * COPIES, (s1, s2)


def test_concurrent_misses_for_one_key_share_one_query(gateway_factory, keys, mod_user):
    """40 requests for one unknown and one valid key, all at once."""
    g = gateway_factory({"L1_NEGATIVE_TTL_SECONDS": "120"}, name="gateway-flight")
    valid = keys.create(mod_user.id)
    unknown = G.new_api_key()
    s0 = g.stats()
    jobs = [(unknown, "x-api-key")] * 40 + [(valid.key, "bearer")] * 40
    random.shuffle(jobs)
    results = _flood(g, jobs)
    assert sorted({(k == valid.key, st) for k, st in results}) == [(False, 401), (True, 200)]
    s1 = g.stats()
    assert s1["pg_queries"] - s0["pg_queries"] <= 2, (s0, s1)
