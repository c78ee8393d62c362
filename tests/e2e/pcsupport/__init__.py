"""pcsupport: the support code of Portcullis's end-to-end tests and benchmarks.

Starts real PostgreSQL, Redis, authsvc, gateway and demo-upstream processes on free
loopback ports and stops them again by PID with bounded waits; speaks Better Auth's
formats; checks what the processes leave behind.  Only the fixtures live in the
conftest.py files; everything a test or bench script calls lives here.

Modules (each can be imported on its own):

    procs       Proc, free_port, wait_until, wait_port, run_bounded, kill_all, tail, REPO
    postgres    Postgres (a private cluster)
    redis       Redis, RespClient, Subscriber, RespError
    betterauth  token_hash, sign, cookie_value, scrypt_hash, generate_id, new_api_key, cookies
    client      ApiClient, User, assert_error, assert_gw_error, raw_http, echo, ...
    daemons     Authsvc, Gateway, Upstream (bench/ imports these), make_routes
    db          DB (alias SQL), ApiKeys
    checks      check_stopped, sanitizer_report, sensitive, the session-end log scans
    suite       the run's SECRET, TRUSTED_ORIGINS, MAIN_DB, base_env (needs pytest)
    smtpsink    SmtpSink, SinkMessage (a real SMTP server keeping what it accepts)
  and helpers for particular tests: interop (the reference Better Auth server),
  fake_idp, jwt_issuer, limits, fds, nginx, cluster, topology, pyupstream.

This package re-exports the names of the first eight and smtpsink's, so a test writes

    import pcsupport as H          # H.Postgres, H.ApiClient, H.Gateway, H.token_hash
    from pcsupport import assert_error
    from pcsupport import jwt_issuer as J

Bench scripts put tests/e2e on sys.path first (pytest does that through the root
conftest.py).  The name is project-specific so that it cannot clash with anything
else on sys.path (the repository's lib/, gateway/ and authsvc/ directories, or a
pip package).

Self-test:  /usr/bin/python3 -m pcsupport selftest   (from tests/e2e)
"""

from .procs import (REPO, Proc, binary, build_dir, free_port, kill_all, run_bounded,  # noqa: F401
                    tail, wait_port, wait_until)
from .checks import (GATEWAY_LOG_FILES, LOG_FILES, SANITIZER_MARKERS, SENSITIVE,  # noqa: F401
                     check_stopped, sanitizer_report, sensitive)
from .postgres import PG_BIN, Postgres, Replica  # noqa: F401
from .redis import REDIS_SERVER, Redis, RespClient, RespError, Subscriber  # noqa: F401
from .betterauth import (DEFAULT_REDIS_PREFIX, DEFAULT_REVOCATION_CHANNEL, EXPIRES_IN,  # noqa: F401
                         KEY_PREFIX, SESSION_COOKIE, UPDATE_AGE, b64url_nopad, cookie_value,
                         generate_id, jwt_like, new_api_key, parse_set_cookie, random_letters,
                         scrypt_hash, scrypt_verify, session_key, set_cookie_headers, set_cookies,
                         sign, signed_value, token_hash, unsigned_cookie)
from .client import (_MISSING, ISO_RE, ApiClient, User, assert_4xx_json, assert_error,  # noqa: F401
                     assert_gw_error, bearer, cookie, echo, new_password, poll_until_status,
                     quote_path, raw_http, same_origin, unique_email)
from .daemons import (AUTHSVC_ENV_VARS, GATEWAY_ENV_VARS, MAX_BODY, UPSTREAM_TIMEOUT_SECONDS,  # noqa: F401
                      Authsvc, Gateway, Upstream, authsvc_env, gateway_env, gw_base_env,
                      make_routes, run_authsvc)
from .db import DB, SQL, ApiKey, ApiKeys  # noqa: F401
from .smtpsink import SinkMessage, SmtpSink  # noqa: F401
