"""SIGHUP reloads the routes file (issue 17), with real processes: the gateway, the demo
upstream, a WebSocket upstream, authsvc, Redis, PostgreSQL.

A new table is validated whole before it is used: a file with any error is refused, the
routes in use stay, and the log says where (routes[i].key, or the line and column of a
JSON syntax error). Requests, streams and tunnels that began on the old table finish on
it; new ones take the new table at once. What L1 knows of a key (its permission bits) is
judged against the table the request runs on. Upstreams new to the gateway, host names
included, get their pools on each worker. Under continuous load, reloads fail no
request."""

import asyncio
import json
import threading
import time

import pytest
import requests
import websockets

import pcsupport as G
from pcsupport.wsupstream import WsUpstream


def _table(up, *routes):
    return {"routes": [dict({"upstream": up.url, "auth": ["none"]}, **r) for r in routes]}


def _log_has(g, text, timeout=5.0):
    G.wait_until(lambda: text in g.log_path.read_text(errors="replace"), timeout,
                 what=f"{text!r} in {g.log_path}")


def test_reload_swaps_routes_and_counts(gateway_factory, upstream):
    g = gateway_factory(route_table=_table(upstream, {"prefix": "/a/"}), name="gateway-reload")
    assert g.get("/a/x").status_code == 200
    assert g.get("/b/x").status_code == 404
    assert g.reload(_table(upstream, {"prefix": "/b/"}))
    assert g.get("/b/x").status_code == 200
    assert g.get("/a/x").status_code == 404, "a removed route must be gone at once"
    st = g.stats()
    assert st["reloads"] == 1 and st["reloads_failed"] == 0
    _log_has(g, "(generation 2)")
    m = g.metrics()
    assert "portcullis_gateway_reloads_total 1" in m
    # the counters by route survive the reload, under their prefix
    assert 'portcullis_gateway_requests_total{route="/a/",status="200"} 1' in m
    assert 'portcullis_gateway_requests_total{route="/b/",status="200"} 1' in m


@pytest.mark.parametrize("text, where", [
    ('{"routes": [{"prefix": "/c/", "upstream": "http://127.0.0.1:1", "auth": ["none"],}]}',
     "line 1"),
    ('{"routes": [{"prefix": "/c/", "upstream": "http://127.0.0.1:1", "auth": ["none"], '
     '"timeout_ms": "soon"}]}', "routes[0].timeout_ms"),
    ('{"routes": [{"prefix": "/c/", "upstream": "ftp://x", "auth": ["none"]}]}',
     "routes[0].upstream"),
    ('{"routes": [{"prefix": "/c/", "upstream": "https://127.0.0.1:1", "auth": ["none"], '
     '"ca_file": "/nonexistent/ca.pem"}]}', "routes[0].ca_file"),
    ('{"routes": []}', "at least one route"),
])
def test_a_bad_file_is_refused_and_the_old_routes_stay(gateway_factory, upstream, text, where):
    g = gateway_factory(route_table=_table(upstream, {"prefix": "/a/"}), name="gateway-reload-bad")
    assert not g.reload(text), "a bad routes file must be refused"
    assert g.get("/a/x").status_code == 200, "the routes in use must stay"
    assert g.get("/c/x").status_code == 404
    _log_has(g, "reload refused")
    line = [ln for ln in g.log_path.read_text().splitlines() if "reload refused" in ln][-1]
    assert where in line, line
    assert g.stats()["reloads_failed"] == 1
    # a good file after a bad one is taken
    assert g.reload(_table(upstream, {"prefix": "/a/"}, {"prefix": "/c/"}))
    assert g.get("/c/x").status_code == 200


def test_a_request_in_flight_finishes_on_its_table(gateway_factory, upstream):
    g = gateway_factory({"UPSTREAM_TIMEOUT_SECONDS": "5"}, route_table=_table(upstream, {"prefix": "/slow"}),
                        name="gateway-reload-fly")
    out = {}

    def slow():
        out["r"] = requests.get(g.url("/slow?ms=1500"), timeout=10)
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.4)   # the request is upstream by now
    assert g.reload(_table(upstream, {"prefix": "/other/"}))
    assert g.get("/slow?ms=1").status_code == 404
    assert g.stats()["route_tables"] == 2, "the request in flight holds the old table"
    t.join()
    assert out["r"].status_code == 200, out["r"].text
    G.wait_until(lambda: g.stats()["route_tables"] == 1, 5,
                 what="the old table freed once its last request ended")


def test_an_open_tunnel_outlives_reloads(gateway_factory):
    up = WsUpstream()
    try:
        g = gateway_factory(route_table=_table(up, {"prefix": "/ws/"}), name="gateway-reload-ws")

        async def talk():
            async with websockets.connect(f"ws://127.0.0.1:{g.port}/ws/echo",
                                          ping_interval=None) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                for i in range(3):
                    loop = asyncio.get_running_loop()
                    took = await loop.run_in_executor(
                        None, g.reload, _table(up, {"prefix": f"/v{i}/"}))
                    assert took
                    await ws.send(f"after {i}")
                    assert await ws.recv() == f"after {i}"
                # the tunnel's table and the current one; those between are gone
                assert G.wait_until(lambda: g.stats()["route_tables"] == 2, 5, what="2 tables")
        asyncio.run(asyncio.wait_for(talk(), 30))
        assert g.get("/ws/echo").status_code == 404
        G.wait_until(lambda: g.stats()["route_tables"] == 1, 5,
                     what="the tunnel's table freed once it closed")
    finally:
        up.stop()


def test_key_permissions_follow_the_table(gateway_factory, upstream, keys, mod_user):
    """L1 keeps a key's permission bits for the table they were computed on: after a
    reload that asks more of the route, the cached key is judged again."""
    read = {"prefix": "/p/", "auth": ["api_key"], "permissions": {"files": ["read"]}}
    write = dict(read, permissions={"files": ["read", "write"]})
    g = gateway_factory(route_table=_table(upstream, read), name="gateway-reload-perm")
    k = keys.create(mod_user.id, permissions={"files": ["read"]})
    for _ in range(3):
        assert g.get("/p/x", headers={"x-api-key": k.key}).status_code == 200
    assert g.reload(_table(upstream, write))
    r = g.get("/p/x", headers={"x-api-key": k.key})
    assert r.status_code == 403 and r.json()["code"] == "INSUFFICIENT_PERMISSIONS", r.text
    assert g.reload(_table(upstream, read))
    assert g.get("/p/x", headers={"x-api-key": k.key}).status_code == 200


def test_a_new_upstream_by_host_name_gets_pools(gateway_factory, upstream):
    g = gateway_factory(route_table=_table(upstream, {"prefix": "/a/"}), name="gateway-reload-up")
    by_name = upstream.url.replace("127.0.0.1", "localhost")
    assert g.reload({"routes": [
        {"prefix": "/a/", "upstream": upstream.url, "auth": ["none"]},
        {"prefix": "/n/", "upstream": by_name, "auth": ["none"]},
    ]})
    for _ in range(6):   # both workers, over new connections
        r = requests.get(g.url("/n/x"), headers={"Connection": "close"}, timeout=5)
        assert r.status_code == 200, r.text


def test_reloads_under_load_fail_no_request(gateway_factory, upstream):
    a = _table(upstream, {"prefix": "/a/"}, {"prefix": "/b/"})
    b = _table(upstream, {"prefix": "/b/"}, {"prefix": "/a/", "timeout_ms": 5000})
    g = gateway_factory(route_table=a, name="gateway-reload-load")
    stop = threading.Event()
    counts = {"ok": 0, "bad": []}

    def hammer():
        s = requests.Session()
        s.trust_env = False
        while not stop.is_set():
            try:
                r = s.get(g.url("/a/x"), timeout=5)
                if r.status_code == 200:
                    counts["ok"] += 1
                else:
                    counts["bad"].append(r.status_code)
            except requests.RequestException as e:
                counts["bad"].append(repr(e))
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            assert g.reload(b if i % 2 == 0 else a)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert counts["bad"] == [], counts["bad"][:5]
    assert counts["ok"] > 20
    assert g.stats()["reloads"] == 20
    G.wait_until(lambda: g.stats()["route_tables"] == 1, 5,
                 what="every replaced table freed, busy workers or idle")
