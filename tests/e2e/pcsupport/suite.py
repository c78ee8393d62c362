"""What the e2e suite's conftest files and its test modules share: the run's secret,
the main database's name and the base environment of an authsvc.

(A test module cannot import these from conftest: the suite has several conftest
modules, and pytest may register any of them under that name.)"""

from __future__ import annotations

import os

from .betterauth import DEFAULT_REDIS_PREFIX, DEFAULT_REVOCATION_CHANNEL
from .checks import check_stopped, sensitive  # noqa: F401 - check_stopped: re-exported for tests

SECRET = "e2e-" + os.urandom(24).hex()          # 52 chars, random per run
TRUSTED_ORIGINS = ("http://app.example.test", "https://trusted.example.com")
MAIN_DB = "authsvc"
REDIS_PREFIX = DEFAULT_REDIS_PREFIX               # the defaults, left unset in the env
REVOCATION_CHANNEL = DEFAULT_REVOCATION_CHANNEL

sensitive(SECRET)


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
