"""Fixtures for the Portcullis e2e suite: real PostgreSQL, Redis and authsvc processes.

Session-wide: `pg` (Postgres), `redis_srv` (Redis), `authsvc` (one server,
RATE_LIMIT_ENABLED=false), `secret`.  Per test: `db` (autocommit psycopg2 helper on
the main database), `redis_client` (RESP client), `client` (ApiClient on the main
server), `authsvc_factory` (extra servers with custom env, stopped after the
test), `client_for(svc)`, `revocations` (a socket SUBSCRIBEd to the revocation
channel).

Binaries come from $PORTCULLIS_BUILD (default <repo>/build).  Set
PORTCULLIS_KEEP_TMP=1 to keep the temp dir (logs) after a passing run; it is
always kept after a failing run and its path is printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

import harness as H

# The run's secret and the helpers test modules share live in e2ecommon.py:
# "conftest" names two modules in this suite (gateway/ has its own), so a
# test module cannot import from here.
from e2ecommon import (MAIN_DB, REDIS_PREFIX, REVOCATION_CHANNEL, SECRET,  # noqa: F401
                       TRUSTED_ORIGINS, base_env, check_stopped as _check_stopped)

_STATE = {"tmp": None, "failed": False}


def pytest_configure(config):
    # A SIGTERM (CI timeout) should run the finalizers, not orphan processes.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        def _term(signum, frame):
            raise KeyboardInterrupt("SIGTERM")
        signal.signal(signal.SIGTERM, _term)


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and call.when in ("setup", "call", "teardown"):
        if not call.excinfo.errisinstance(pytest.skip.Exception):
            _STATE["failed"] = True


def pytest_sessionfinish(session, exitstatus):
    H.kill_all()
    tmp = _STATE["tmp"]
    if tmp and os.path.isdir(tmp):
        if exitstatus == 0 and not _STATE["failed"] and not os.environ.get("PORTCULLIS_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tmp = _STATE["tmp"]
    if tmp and os.path.isdir(tmp):
        terminalreporter.write_line(f"e2e logs kept in {tmp}")


@pytest.fixture(scope="session")
def tmp_root():
    d = tempfile.mkdtemp(prefix="pc-e2e-")
    _STATE["tmp"] = d
    return Path(d)


@pytest.fixture(scope="session")
def secret():
    return SECRET


@pytest.fixture(scope="session")
def trusted_origins():
    return TRUSTED_ORIGINS


@pytest.fixture(scope="session")
def pg():
    p = H.Postgres()
    try:
        yield p
    finally:
        p.cleanup()


@pytest.fixture(scope="session")
def redis_srv(tmp_root):
    r = H.Redis(basedir=str(tmp_root / "redis"))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="session")
def main_db_url(pg):
    return pg.create_database(MAIN_DB)


@pytest.fixture(scope="session")
def authsvc(pg, redis_srv, main_db_url, tmp_root):
    """The session's main server: rate limiting off, default Redis prefix/channel."""
    svc = H.Authsvc(base_env(pg, redis_srv), workdir=str(tmp_root / "authsvc"), name="authsvc-main")
    try:
        yield svc
    finally:
        _check_stopped(svc)


_db_counter = [0]


@pytest.fixture
def authsvc_factory(pg, redis_srv, tmp_root, main_db_url):
    """make(env=None, *, fresh_db=False, database=None, redis=None, migrate=True, start=True, name=...)

    Starts another authsvc on the main database (or a new one with fresh_db=True,
    or `database=` a database name that exists) with base_env + env.  A value of
    None in env removes the variable.  Every server is stopped after the test."""
    started = []

    def make(env=None, *, fresh_db=False, database=None, redis=None, migrate=True, start=True,
             name="authsvc-extra", start_timeout=None):
        dbname = database or MAIN_DB
        if fresh_db:
            _db_counter[0] += 1
            dbname = f"extra{_db_counter[0]}"
            pg.create_database(dbname)
        e = base_env(pg, redis or redis_srv, dbname)
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        svc = H.Authsvc(e, workdir=str(tmp_root / "extra"), migrate=migrate, start=start, name=name,
                        start_timeout=start_timeout)
        started.append(svc)
        return svc

    yield make
    errors = []
    for svc in started:
        try:
            _check_stopped(svc)
        except BaseException as e:  # noqa: BLE001 - stop them all, then report
            errors.append(e)
    if errors:
        raise errors[0]


class DB:
    """Small helper over an autocommit psycopg2 connection."""

    TABLES = ("user", "session", "account", "verification")

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.rowcount

    def all(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def one(self, sql, args=None):
        rows = self.all(sql, args)
        return rows[0] if rows else None

    def scalar(self, sql, args=None):
        row = self.one(sql, args)
        return row[0] if row else None

    def dicts(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def counts(self) -> dict:
        return {t: self.scalar(f'select count(*) from "{t}"') for t in self.TABLES}

    def snapshot(self) -> dict:
        """Count and digest of every row of the core tables: detects any change at all."""
        out = {}
        for t in self.TABLES:
            # sessions that expire within a minute may be swept by the server at any time
            where = ' where x."expiresAt" > now() + interval \'1 minute\'' if t == "session" else ""
            out[t] = tuple(self.one(
                f'select count(*), md5(coalesce(string_agg(x::text, \'|\' order by x::text), \'\')) '
                f'from "{t}" x{where}'))
        return out

    def session_row(self, token):
        r = self.dicts('select * from "session" where token = %s', (token,))
        return r[0] if r else None

    def user_row(self, email=None, id=None):
        if id is not None:
            r = self.dicts('select * from "user" where id = %s', (id,))
        else:
            r = self.dicts('select * from "user" where email = %s', (email,))
        return r[0] if r else None

    def credential(self, user_id):
        r = self.dicts('select * from "account" where "userId" = %s and "providerId" = %s',
                       (user_id, "credential"))
        return r[0] if r else None

    def seconds_left(self, token):
        return self.scalar('select extract(epoch from "expiresAt" - now()) from "session" where token = %s',
                           (token,))


@pytest.fixture(scope="session")
def _db_conn(pg, authsvc):
    # depends on authsvc so that migrations have run
    c = pg.connect(MAIN_DB)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def db(_db_conn):
    if _db_conn.closed:
        raise RuntimeError("main database connection closed")
    return DB(_db_conn)


@pytest.fixture
def redis_client(redis_srv):
    c = redis_srv.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def revocations(redis_srv, authsvc):
    """A socket SUBSCRIBEd to the main server's revocation channel."""
    s = redis_srv.subscribe(REVOCATION_CHANNEL)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def client(authsvc):
    c = H.ApiClient(authsvc)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client_for():
    made = []

    def make(svc, **kw):
        c = H.ApiClient(svc, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()
