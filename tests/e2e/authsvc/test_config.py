"""Configuration from the environment: validated at start, a bad or missing value stops
the program with a message naming the variable; --help lists every variable."""

import socket
import subprocess

import pytest

import pcsupport as H

ALL_VARS = ("BETTER_AUTH_SECRET", "BETTER_AUTH_URL", "DATABASE_URL", "REDIS_URL", "AUTHSVC_LISTEN",
            "TRUSTED_ORIGINS", "RATE_LIMIT_ENABLED", "REDIS_PREFIX", "REVOCATION_CHANNEL", "AUTHSVC_LOG",
            "AUTHSVC_MAX_BODY_BYTES", "PASSWORD_WORKERS", "PASSWORD_QUEUE")


@pytest.fixture
def good_env(pg, redis_srv, main_db_url, authsvc, secret):
    return {
        "BETTER_AUTH_SECRET": secret,
        "DATABASE_URL": main_db_url,
        "REDIS_URL": redis_srv.url,
        "AUTHSVC_LISTEN": f"127.0.0.1:{H.free_port()}",
        "RATE_LIMIT_ENABLED": "false",
    }


def run(args, env, timeout=15):
    try:
        r = H.run_authsvc(args, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"") + (e.stderr or b"")
        pytest.fail(f"authsvc {' '.join(args)} did not exit within {timeout}s "
                    f"(a bad configuration must stop it):\n{out.decode(errors='replace')[-2000:]}")
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace"), r.stderr.decode(errors="replace")


def test_help_lists_every_variable_with_defaults():
    rc, out, _ = run(["--help"], {})
    assert rc == 0, out
    missing = [v for v in ALL_VARS if v not in out]
    assert not missing, f"--help does not mention {missing}:\n{out}"
    for default in ("http://localhost:3000", "127.0.0.1:3000", "65536", "pc:revoked"):
        assert default in out, f"--help does not show the default {default!r}"


BAD = [
    # (case id, variable, value or None to unset)
    ("secret-missing", "BETTER_AUTH_SECRET", None),
    ("secret-empty", "BETTER_AUTH_SECRET", ""),
    ("secret-short", "BETTER_AUTH_SECRET", "s" * 31),
    ("database-url-missing", "DATABASE_URL", None),
    ("database-url-scheme", "DATABASE_URL", "mysql://root@127.0.0.1:3306/authsvc"),
    ("database-url-garbage", "DATABASE_URL", "not a url"),
    ("listen-no-port", "AUTHSVC_LISTEN", "127.0.0.1"),
    ("listen-port-range", "AUTHSVC_LISTEN", "127.0.0.1:99999"),
    ("listen-port-text", "AUTHSVC_LISTEN", "127.0.0.1:http"),
    ("listen-empty-port", "AUTHSVC_LISTEN", "127.0.0.1:"),
    ("listen-garbage", "AUTHSVC_LISTEN", "nonsense"),
    ("base-url-scheme", "BETTER_AUTH_URL", "ftp://auth.example.test"),
    ("base-url-garbage", "BETTER_AUTH_URL", "not a url"),
    ("redis-url-scheme", "REDIS_URL", "http://127.0.0.1:6379"),
    ("rate-limit-bool", "RATE_LIMIT_ENABLED", "maybe"),
    ("max-body-text", "AUTHSVC_MAX_BODY_BYTES", "lots"),
    ("max-body-negative", "AUTHSVC_MAX_BODY_BYTES", "-1"),
    ("workers-negative", "PASSWORD_WORKERS", "-1"),
    ("workers-text", "PASSWORD_WORKERS", "many"),
    ("queue-text", "PASSWORD_QUEUE", "deep"),
    ("queue-negative", "PASSWORD_QUEUE", "-3"),
]


@pytest.mark.parametrize("case,var,value", BAD, ids=[b[0] for b in BAD])
def test_bad_value_stops_the_program_naming_the_variable(good_env, secret, case, var, value):
    env = dict(good_env)
    env[var] = value            # None unsets it (pcsupport.authsvc_env)
    rc, out, err = run([], env)
    assert rc != 0, f"{var}={value!r}: exit 0\n{out}"
    assert rc > 0, f"{var}={value!r}: killed by signal {-rc} instead of exiting\n{out}"
    assert var in out, f"{var}={value!r}: the message does not name {var}:\n{out}"
    assert secret not in out, "the secret was printed"
    if value and var == "BETTER_AUTH_SECRET":
        assert value not in out, "the (bad) secret was printed"


def test_database_password_is_not_printed(good_env):
    env = dict(good_env, DATABASE_URL="mysql://admin:Hunter2-Sup3rSecret@127.0.0.1:3306/x")
    rc, out, _ = run([], env)
    assert rc > 0 and "DATABASE_URL" in out, out
    assert "Hunter2-Sup3rSecret" not in out, "a database password was printed"


def test_listen_address_in_use(good_env):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        env = dict(good_env, AUTHSVC_LISTEN=f"127.0.0.1:{port}")
        rc, out, _ = run([], env)
        assert rc > 0, f"started although 127.0.0.1:{port} is taken:\n{out}"
        assert str(port) in out or "AUTHSVC_LISTEN" in out, out
    finally:
        s.close()


def test_migrate_needs_a_database_url(good_env):
    env = dict(good_env, DATABASE_URL=None)
    rc, out, _ = run(["migrate"], env)
    assert rc > 0 and "DATABASE_URL" in out, out


def test_migrate_with_unreachable_database(good_env):
    env = dict(good_env, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{H.free_port()}/nope")
    rc, out, _ = run(["migrate"], env, timeout=30)
    assert rc > 0, out


def test_unknown_command_fails(good_env):
    rc, out, _ = run(["no-such-command"], good_env)
    assert rc > 0, out


def test_good_config_serves_and_stops_on_sigterm(authsvc_factory, client_for):
    svc = authsvc_factory({"AUTHSVC_MAX_BODY_BYTES": "131072", "PASSWORD_WORKERS": "2", "PASSWORD_QUEUE": "16",
                           "REDIS_PREFIX": "cfg:", "REVOCATION_CHANNEL": "cfg:revoked"},
                          name="authsvc-cfg")
    c = client_for(svc)
    assert c.get("/health").status_code == 200
    rc = svc.stop(timeout=10)
    assert rc == 0, f"exit code after SIGTERM: {rc}"


def test_custom_redis_prefix_and_channel(authsvc_factory, client_for, redis_srv):
    svc = authsvc_factory({"REDIS_PREFIX": "custom:", "REVOCATION_CHANNEL": "custom:gone"},
                          name="authsvc-prefix")
    c = client_for(svc)
    with redis_srv.client() as rc, redis_srv.subscribe("custom:gone") as sub:
        u = c.sign_up()
        assert rc.exists(H.session_key(u.token, prefix="custom:"))
        assert not rc.exists(H.session_key(u.token, prefix="pc:"))
        r = c.post("sign-out", bearer=u.token)
        assert r.status_code == 200, r.text
        assert not rc.exists(H.session_key(u.token, prefix="custom:"))
        assert H.token_hash(u.token) in sub.wait_for({H.token_hash(u.token)}, 5)


def test_version_prints_the_version_file():
    rc, out, _ = run(["--version"], {})
    assert rc == 0 and out.strip() == f"authsvc {(H.REPO / 'VERSION').read_text().strip()}", out


def test_check_validates_and_exits_without_serving(good_env):
    rc, out, _ = run(["--check"], good_env)
    assert rc == 0 and "configuration ok" in out, out
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", int(good_env["AUTHSVC_LISTEN"].rsplit(":", 1)[1])))
    finally:
        s.close()
    rc, out, _ = run(["--check"], dict(good_env, DATABASE_URL="mysql://x"))
    assert rc == 2 and "DATABASE_URL" in out, out


def test_secret_from_a_file_signs_cookies_with_it(authsvc_factory, client_for, secret, tmp_path):
    f = tmp_path / "secret"
    f.write_text(secret + "\n")
    svc = authsvc_factory({"BETTER_AUTH_SECRET": None, "BETTER_AUTH_SECRET_FILE": str(f)},
                          name="authsvc-secret-file")
    c = H.ApiClient(svc, secret=secret)
    u = c.sign_up()
    assert u.cookie_value == H.cookie_value(secret, u.token), (u.cookie_value, H.cookie_value(secret, u.token))
    assert c.session_of(u)["user"]["email"] == u.email


def test_secret_set_twice_is_refused(good_env, secret, tmp_path):
    f = tmp_path / "secret"
    f.write_text(secret)
    rc, out, _ = run(["--check"], dict(good_env, BETTER_AUTH_SECRET_FILE=str(f)))
    assert rc == 2 and "BETTER_AUTH_SECRET_FILE" in out and secret not in out, out
    rc, out, _ = run(["--check"], dict(good_env, BETTER_AUTH_SECRET=None, AUTH_SECRET=secret))
    assert rc == 0, out
