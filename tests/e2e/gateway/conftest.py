"""Fixtures for the gateway e2e tests (issue 3): real gateway, demo-upstream,
PostgreSQL, Redis and authsvc processes.

Reuses the parent conftest's session fixtures `pg`, `redis_srv`, `authsvc`, `db`,
`client`, `tmp_root`, `secret`.  Adds:

  upstream         one demo-upstream (echo server) for the whole run
  gateway / gw     the main gateway (session scope), routes from pcsupport.make_routes
  module_gateway   a gateway of the test module's own, same routes
  gateway_factory  make(env=None, route_table=None, *, redis=, database_url=, name=)
                   (route_table: None = the standard routes, False = no routes file)
                   -> extra gateways with their own counters, stopped and checked
                   (sanitizer report, exit code, hung shutdown) after the test
  sql              pcsupport.DB on the main database (its own connection)
  keys             pcsupport.ApiKeys: API key rows inserted with SQL
  user             a fresh signed-up user (pcsupport.User) on the main authsvc
  mod_user/mod_key a user and an API key shared by one test module
  aclient          an ApiClient on the main authsvc (sign-out, revoke-session, ...)

Binaries: $PORTCULLIS_BUILD/{gateway,demo-upstream,authsvc} (default <repo>/build).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import pcsupport as H
import pcsupport as G


@pytest.fixture(scope="session")
def gw_dir(tmp_root) -> Path:
    d = tmp_root / "gateway"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def upstream(gw_dir):
    u = G.Upstream(gw_dir)
    try:
        yield u
    finally:
        u.stop()


@pytest.fixture(scope="session")
def dead_upstream_url():
    """An http:// URL on a loopback port nobody listens on."""
    return f"http://127.0.0.1:{H.free_port()}"


@pytest.fixture(scope="session")
def routes(upstream, dead_upstream_url):
    return G.make_routes(upstream.url, dead_upstream_url)


@pytest.fixture(scope="session")
def live_authsvc(authsvc):
    """The parent's authsvc; restarted if a test stopped it."""
    if not authsvc.running:
        authsvc.start()
    return authsvc


@pytest.fixture(scope="session")
def gateway(pg, redis_srv, live_authsvc, main_db_url, secret, routes, gw_dir):
    g = G.Gateway(G.gw_base_env(pg, redis_srv, secret), routes, workdir=gw_dir, name="gateway-main")
    try:
        yield g
    finally:
        G.check_stopped(g)


@pytest.fixture(scope="module")
def module_gateway(pg, redis_srv, live_authsvc, main_db_url, secret, routes, gw_dir, request):
    """A gateway of the module's own (same routes as the main one), for tests that may
    leave its upstream pool or counters in a state other tests should not see."""
    name = "gateway-" + request.module.__name__.replace("test_gw_", "")
    g = G.Gateway(G.gw_base_env(pg, redis_srv, secret), routes, workdir=gw_dir, name=name)
    try:
        yield g
    finally:
        G.check_stopped(g)


@pytest.fixture
def gw(gateway):
    """The main gateway, checked to be still running."""
    assert gateway.running, f"main gateway died:\n{H.tail(gateway.stderr_path)}"
    return gateway


@pytest.fixture
def gateway_factory(pg, redis_srv, live_authsvc, main_db_url, secret, routes, gw_dir):
    made = []

    def make(env=None, route_table=None, *, redis=None, database_url=None, name="gateway-extra",
             start=True, wait_ready=True):
        e = G.gw_base_env(pg, redis or redis_srv, secret)
        if database_url:
            e["DATABASE_URL"] = database_url
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        table = None if route_table is False else (route_table if route_table is not None else routes)
        g = G.Gateway(e, table, workdir=gw_dir, name=name, start=False)
        made.append(g)
        if start:
            g.start(wait_ready=wait_ready)
        return g

    yield make
    G.check_stopped(*made)


@pytest.fixture(scope="session")
def sql(pg, live_authsvc, main_db_url):
    """Autocommit SQL on the main database (after authsvc's migrations)."""
    s = G.DB(pg.connect("authsvc"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def keys(sql):
    return G.ApiKeys(sql)


def _sign_up(svc, name):
    c = H.ApiClient(svc)
    try:
        return c.sign_up(name=name)
    finally:
        c.close()


@pytest.fixture(scope="module")
def mod_user(live_authsvc):
    """A user signed up once per test module."""
    return _sign_up(live_authsvc, "Gateway Module User")


@pytest.fixture(scope="module")
def mod_key(keys, mod_user):
    """An API key without permissions for mod_user."""
    return keys.create(mod_user.id)


@pytest.fixture
def aclient(live_authsvc):
    c = H.ApiClient(live_authsvc)
    yield c
    c.close()


@pytest.fixture
def user(live_authsvc):
    """A fresh user (with a fresh session) for one test."""
    return _sign_up(live_authsvc, "Gateway User")
