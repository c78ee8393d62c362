"""Fixtures for the Portcullis e2e suite: real PostgreSQL, Redis and authsvc processes.

Session-wide: `pg` (Postgres), `redis_srv` (Redis), `authsvc` (one server,
RATE_LIMIT_ENABLED=false), `secret`.  Per test: `db` (autocommit psycopg2 helper on
the main database), `redis_client` (RESP client), `client` (ApiClient on the main
server), `authsvc_factory` (extra servers with custom env, stopped after the
test), `client_for(svc)`, `revocations` (a socket SUBSCRIBEd to the revocation
channel), `smtp_sink` (a real SMTP server on a loopback port keeping every
message, pcsupport.SmtpSink; stopped after the test), `smtp_sink_factory`
(sinks with options).

At the end of the session, after every daemon has stopped (so every log is
complete), the run fails (an error at the teardown of its last test) when a log
leaks a credential or secret, a log line is not JSON (or an authsvc request line
has no unique request id), a gateway's stderr holds a sanitizer report, or a
Redis key holds a raw token: pcsupport.checks, run by `_session_end_checks`.
Every test of any file is covered, whatever order they run in.

Helpers (processes, clients, Better Auth formats, the DB helper) are in the
pcsupport package beside this file; see its docstring.

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

import pcsupport as H
from pcsupport import checks
from pcsupport.db import DB

# The run's secret and the values test modules share live in pcsupport/suite.py:
# "conftest" names several modules in this suite, so a test module cannot import
# from here.
from pcsupport.suite import (MAIN_DB, REDIS_PREFIX, REVOCATION_CHANNEL, SECRET,  # noqa: F401
                             TRUSTED_ORIGINS, base_env)

_STATE = {"tmp": None, "failed": False, "main_log": None, "end_problems": []}


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


@pytest.fixture(scope="session", autouse=True)
def _session_end_checks():
    """Set up before, so torn down after, every other session fixture: by then every
    daemon is stopped.  Fails the run (an error at the last test's teardown) on a
    problem; see the module docstring."""
    yield
    H.kill_all()
    problems = list(_STATE["end_problems"])
    problems += checks.secret_leaks()
    problems += checks.authsvc_log_problems(_STATE["main_log"])
    problems += checks.gateway_log_problems()
    if problems:
        pytest.fail("session-end log checks:\n" + "\n".join(problems[:60]), pytrace=False)


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
        # every daemon using it has stopped (their fixtures depend on this one)
        if r.running:
            with r.client() as c:
                _STATE["end_problems"].extend(checks.redis_key_problems(c))
    finally:
        r.stop()


@pytest.fixture(scope="session")
def main_db_url(pg):
    return pg.create_database(MAIN_DB)


@pytest.fixture(scope="session")
def authsvc(pg, redis_srv, main_db_url, tmp_root):
    """The session's main server: rate limiting off, default Redis prefix/channel."""
    svc = H.Authsvc(base_env(pg, redis_srv), workdir=str(tmp_root / "authsvc"), name="authsvc-main")
    _STATE["main_log"] = svc.log_path
    try:
        yield svc
    finally:
        H.check_stopped(svc)


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
    H.check_stopped(*started)


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


_sink_counter = [0]


def _new_sink(tmp_root, **opts):
    _sink_counter[0] += 1
    return H.SmtpSink(tmp_root / "smtp" / str(_sink_counter[0]), **opts)


@pytest.fixture
def smtp_sink(tmp_root):
    """A fresh, started SmtpSink (no options) in <tmp>/smtp/<n>/, stopped after the
    test.  smtp_sink_factory makes ones with options."""
    sink = _new_sink(tmp_root)
    try:
        yield sink.start()
    finally:
        sink.stop()


@pytest.fixture
def smtp_sink_factory(tmp_root):
    """make(start=True, port=None, **opts) -> an SmtpSink with options (fail_rcpt,
    require_auth, tls_cert/tls_key, require_tls), in <tmp>/smtp/<n>/; every one is
    stopped after the test."""
    made = []

    def make(start=True, port=None, **opts):
        sink = _new_sink(tmp_root, port=port, **opts)
        made.append(sink)
        return sink.start() if start else sink
    try:
        yield make
    finally:
        for sink in made:
            sink.stop()


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
