"""What the e2e suite's conftest and its test modules share: the run's secret,
the main database's name, the base environment of an authsvc, and the check
that a stopped server left no sanitizer report.

(A test module cannot import these from conftest: the suite has two conftest
modules, tests/e2e/ and tests/e2e/gateway/, and pytest may register either
under that name.)"""

from __future__ import annotations

import os

import pytest

import harness as H

SECRET = "e2e-" + os.urandom(24).hex()          # 52 chars, random per run
TRUSTED_ORIGINS = ("http://app.example.test", "https://trusted.example.com")
MAIN_DB = "authsvc"
REDIS_PREFIX = H.DEFAULT_REDIS_PREFIX             # the defaults, left unset in the env
REVOCATION_CHANNEL = H.DEFAULT_REVOCATION_CHANNEL

H.sensitive(SECRET)


def check_stopped(svc: H.Authsvc):
    """Stop svc and turn sanitizer reports / a hung shutdown into a test error."""
    rc = svc.stop(timeout=10)
    report = svc.sanitizer_report()
    if report:
        pytest.fail(f"{svc.name}: sanitizer report in {svc.stderr_path}:\n{report}", pytrace=False)
    if svc.proc is not None and svc.proc.forced:
        pytest.fail(f"{svc.name} did not exit within 10 s of SIGTERM (rc {rc})", pytrace=False)


def base_env(pg, redis_srv, dbname=MAIN_DB, **extra):
    env = {
        "BETTER_AUTH_SECRET": SECRET,
        "DATABASE_URL": pg.url(dbname),
        "REDIS_URL": redis_srv.url,
        "RATE_LIMIT_ENABLED": "false",
        "TRUSTED_ORIGINS": ",".join(TRUSTED_ORIGINS),
    }
    env.update({k: v for k, v in extra.items()})
    return env
