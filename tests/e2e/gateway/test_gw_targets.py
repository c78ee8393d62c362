"""Routes with several upstream targets, and upstream host names (issue 16).

Targets: "upstream": [url, ...] is balanced round-robin; a target that refuses a
connection is skipped for UPSTREAM_FAIL_TIMEOUT_MS (passive health) and the request goes
to the next one, whatever its method, since nothing reached the refusing target; when
every target is down the answer is 502; a target that comes back gets requests again.

Names: upstream host names are resolved by the gateway's own resolver (evdns) against a
real DNS server run by the test (pcsupport.dnsserver, GATEWAY_RESOLVER), again when the
TTL runs out, with pooled connections to an old address not reused; a name that does not
resolve is 502 until it does; /etc/hosts names never reach DNS; a resolver that does not
answer costs a request its route's timeout_ms, never the loop."""

import json
import socket
import threading
import time

import pytest
import requests

import pcsupport as G
from pcsupport.dnsserver import TYPE_A, DnsServer
from pcsupport.pyupstream import PyUpstream


def _factory(cls):
    """make(**kw) -> cls(**kw), each stopped after the test."""
    made = []

    def make(**kw):
        made.append(cls(**kw))
        return made[-1]

    return make, made


@pytest.fixture
def ups():
    make, made = _factory(PyUpstream)
    yield make
    for u in made:
        u.stop()


@pytest.fixture
def dns():
    make, made = _factory(DnsServer)
    yield make
    for d in made:
        d.stop()


def _route(prefix, upstream, **kw):
    return dict({"prefix": prefix, "upstream": upstream, "auth": ["none"]}, **kw)


def _dead_url():
    return f"http://127.0.0.1:{G.free_port()}"


def _served(u, tag):
    return [e for e in u.saw(tag) if e["answered"]]


# ---- targets ----

def test_round_robin_spreads_requests_evenly(gateway_factory, ups):
    a, b, c = ups(), ups(), ups()
    g = gateway_factory(route_table={"routes": [_route("/rr/", [a.url, b.url, c.url])]},
                        name="gateway-rr")
    for i in range(30):
        assert G.echo(g.get(f"/rr/even-{i}"))["path"] == f"/rr/even-{i}"
    counts = [len(_served(u, "/rr/even-")) for u in (a, b, c)]
    assert counts == [10, 10, 10], counts


def test_each_target_keeps_its_own_base_path_and_host(gateway_factory, ups):
    a, b = ups(), ups()
    g = gateway_factory(route_table={"routes": [
        _route("/bp/", [a.url + "/one", b.url + "/two"])]}, name="gateway-rr-base")
    seen = {G.echo(g.get(f"/bp/x{i}"))["path"] for i in range(4)}
    assert seen == {"/one/bp/x0", "/two/bp/x1", "/one/bp/x2", "/two/bp/x3"} or \
        seen == {"/two/bp/x0", "/one/bp/x1", "/two/bp/x2", "/one/bp/x3"}, seen
    assert {e["headers"]["host"] for e in a.seen} == {f"127.0.0.1:{a.port}"}
    assert {e["headers"]["host"] for e in b.seen} == {f"127.0.0.1:{b.port}"}


def test_refusing_target_is_skipped_and_comes_back(gateway_factory, ups):
    live = ups()
    dead = _dead_url()
    dead_port = int(dead.rsplit(":", 1)[1])
    g = gateway_factory({"UPSTREAM_FAIL_TIMEOUT_MS": "1500"},
                        route_table={"routes": [_route("/hc/", [dead, live.url])]},
                        name="gateway-rr-health")
    before = g.stats()["upstream_skips"]
    for i in range(20):
        assert G.echo(g.get(f"/hc/skip-{i}"))["path"] == f"/hc/skip-{i}"
    # a POST that met the refusing target went on to the live one, once
    r = g.post("/hc/post-once", data=b"payload", headers={"Content-Type": "text/plain"})
    assert G.echo(r)["body"] == "payload"
    assert len(live.saw("/hc/post-once")) == 1
    skips = g.stats()["upstream_skips"] - before
    assert 1 <= skips <= 2, skips          # once per fail timeout (two workers may race)
    assert "connection failed" in g.log_path.read_text(errors="replace")
    # the target comes back: after the fail timeout it gets requests again
    back = ups(port=dead_port)
    deadline = time.monotonic() + 10
    i = 0
    while time.monotonic() < deadline and not _served(back, "/hc/back-"):
        assert G.echo(g.get(f"/hc/back-{i}"))["path"] == f"/hc/back-{i}"
        i += 1
        time.sleep(0.05)
    assert _served(back, "/hc/back-"), "the target that came back got no request in 10 s"
    assert i >= 5, f"came back after {i} requests: it was not skipped for 1.5 s"


def test_all_targets_down_is_502_fast(gateway_factory):
    g = gateway_factory(route_table={"routes": [_route("/alldead/", [_dead_url(), _dead_url()])]},
                        name="gateway-rr-alldead")
    for _ in range(4):
        t0 = time.monotonic()
        G.assert_gw_error(g.get("/alldead/x"), 502, "UPSTREAM_UNAVAILABLE")
        assert time.monotonic() - t0 < 2.0


def test_target_that_does_not_connect_in_time_is_passed_over(gateway_factory, ups):
    # a target that accepts nothing within the route's timeout: a loopback listener whose
    # backlog is full, so that a connect to it hangs
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    full_port = ls.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", full_port))
            except BlockingIOError:
                pass
            fillers.append(s)
        live = ups()
        g = gateway_factory(route_table={"routes": [
            _route("/slowc/", [f"http://127.0.0.1:{full_port}", live.url], timeout_ms=400)]},
            name="gateway-rr-connect-timeout")
        t0 = time.monotonic()
        for i in range(4):
            assert G.echo(g.get(f"/slowc/t{i}"))["path"] == f"/slowc/t{i}"
        took = time.monotonic() - t0
        assert took < 3.0, took            # at most one or two connect timeouts, then skipped
    finally:
        for s in fillers:
            s.close()
        ls.close()


@pytest.mark.parametrize("upstream,needle", [
    ([], "routes[0].upstream: an array of 1 to 16"),
    ([f"http://127.0.0.1:{9000 + i}" for i in range(17)], "routes[0].upstream: an array of 1 to 16"),
    (["http://127.0.0.1:9", "http://127.0.0.1:9"], "routes[0].upstream[1]"),
    (["http://127.0.0.1:9", 5], "routes[0].upstream[1]"),
    (["http://127.0.0.1:9", "ftp://x"], "routes[0].upstream"),
    ({"url": "http://127.0.0.1:9"}, "routes[0].upstream"),
])
def test_bad_target_lists_are_start_up_errors(tmp_path, upstream, needle):
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [_route("/a/", upstream)]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
           "BETTER_AUTH_SECRET": "c" * 40, "REDIS_URL": "redis://127.0.0.1:1",
           "GATEWAY_LISTEN": f"127.0.0.1:{G.free_port()}", "GATEWAY_ROUTES": str(routes)}
    r = G.run_bounded([G.binary("gateway")], env=G.gateway_env(env), timeout=10)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2 and needle in err, err


@pytest.mark.parametrize("value", ["dns.example", "127.0.0.1:99999", "127.0.0.1,,", "1.2.3.4:x"])
def test_bad_resolver_is_a_start_up_error(tmp_path, value):
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"routes": [_route("/a/", "http://127.0.0.1:9")]}))
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none",
           "BETTER_AUTH_SECRET": "c" * 40, "REDIS_URL": "redis://127.0.0.1:1",
           "GATEWAY_LISTEN": f"127.0.0.1:{G.free_port()}", "GATEWAY_ROUTES": str(routes),
           "GATEWAY_RESOLVER": value}
    r = G.run_bounded([G.binary("gateway")], env=G.gateway_env(env), timeout=10)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2 and "GATEWAY_RESOLVER" in err, err


# ---- names ----

NAME = "svc.portcullis.test"


def test_name_follows_dns_when_its_ttl_runs_out(gateway_factory, ups, dns):
    d = dns()
    first = ups(bind="127.0.0.2")
    second = ups(bind="127.0.0.3", port=first.port)
    d.set(NAME, ["127.0.0.2"], ttl=1)
    url = f"http://{NAME}:{first.port}"
    g = gateway_factory({"GATEWAY_RESOLVER": d.addr},
                        route_table={"routes": [_route("/dns/", url)]}, name="gateway-dns")
    for i in range(10):
        assert G.echo(g.get(f"/dns/one-{i}"))["path"] == f"/dns/one-{i}"
    assert len(_served(first, "/dns/one-")) == 10
    assert {e["headers"]["host"] for e in first.seen} == {f"{NAME}:{first.port}"}
    # the name moves: within the TTL (1 s) and a little, requests (on pooled connections
    # too) reach the new address and never the old one again
    d.set(NAME, ["127.0.0.3"], ttl=1)
    moved_at = time.monotonic()
    deadline = moved_at + 6
    i = 0
    while time.monotonic() < deadline and not _served(second, "/dns/two-"):
        assert G.echo(g.get(f"/dns/two-{i}"))["path"] == f"/dns/two-{i}"
        i += 1
        time.sleep(0.02)
    assert _served(second, "/dns/two-"), "the gateway still used the old address after 6 s"
    took = time.monotonic() - moved_at
    assert took < 4.0, took
    for k in range(20):
        G.echo(g.get(f"/dns/after-{k}"))
    assert not first.saw("/dns/after-"), "a pooled connection to the old address was reused"
    assert len(_served(second, "/dns/after-")) == 20
    # asked per TTL, not per request: two workers, a few seconds, about one A each per second
    asked = d.count(NAME, TYPE_A)
    assert asked <= 4 + 2 * 2 * (time.monotonic() - moved_at + 2), asked


def test_name_that_does_not_resolve_is_502_until_it_does(gateway_factory, ups, dns):
    d = dns()
    u = ups()
    name = "late.portcullis.test"
    g = gateway_factory({"GATEWAY_RESOLVER": d.addr},
                        route_table={"routes": [_route("/late/", f"http://{name}:{u.port}")]},
                        name="gateway-dns-late")
    r = g.get("/late/x")
    G.assert_gw_error(r, 502, "UPSTREAM_UNAVAILABLE")
    d.set(name, ["127.0.0.1"], ttl=30)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        r = g.get("/late/y")
        if r.status_code == 200:
            break
        G.assert_gw_error(r, 502, "UPSTREAM_UNAVAILABLE")
        time.sleep(0.1)
    assert G.echo(r)["path"] == "/late/y"
    # both workers got there: a few more requests all pass
    for i in range(6):
        assert G.echo(g.get(f"/late/z{i}"))["path"] == f"/late/z{i}"


def test_hosts_file_names_never_reach_dns(gateway_factory, ups, dns):
    d = dns()
    u = ups()
    g = gateway_factory({"GATEWAY_RESOLVER": d.addr},
                        route_table={"routes": [_route("/lh/", f"http://localhost:{u.port}")]},
                        name="gateway-dns-hosts")
    for i in range(5):
        assert G.echo(g.get(f"/lh/{i}"))["path"] == f"/lh/{i}"
    assert d.asked == {}, d.asked


def test_resolver_that_does_not_answer_costs_only_the_route_timeout(gateway_factory, dns):
    d = dns(silent=True)
    g = gateway_factory({"GATEWAY_RESOLVER": d.addr}, route_table={"routes": [
        _route("/mute/", "http://mute.portcullis.test:9", timeout_ms=500)]},
        name="gateway-dns-silent")
    results = []

    def one():
        t0 = time.monotonic()
        results.append((g.get("/mute/x", timeout=10), time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    # the loop is not blocked meanwhile
    t0 = time.monotonic()
    assert requests.get(g.url("/health"), timeout=2).status_code == 200
    assert time.monotonic() - t0 < 0.5
    for t in threads:
        t.join(timeout=15)
    assert len(results) == 3
    for r, took in results:
        G.assert_gw_error(r, 504, "UPSTREAM_TIMEOUT_SECONDS")
        assert took < 2.5, took
