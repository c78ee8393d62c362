"""Configuration is validated at start: a bad variable or routes file stops the gateway
with exit code 2 and the variable (or route and key) named on stderr; --help lists
every variable; UPSTREAM_URL alone makes one catch-all route."""

import json
import socket
import re

import pytest

import pcsupport as H
import pcsupport as G

SECRET = "c" * 40


def _run(env, args=(), timeout=10):
    return H.run_bounded([H.binary("gateway"), *args], env=G.gateway_env(env), timeout=timeout)


def _routes_file(tmp_path, content, name="routes.json"):
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(p)


GOOD_ROUTE = {"prefix": "/a/", "upstream": "http://127.0.0.1:9", "auth": ["session"]}


def _env(tmp_path, routes=None, **kw):
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "REDIS_URL": "redis://127.0.0.1:1", "GATEWAY_LISTEN": f"127.0.0.1:{H.free_port()}",
           "GATEWAY_ROUTES": _routes_file(tmp_path, routes if routes is not None else {"routes": [GOOD_ROUTE]})}
    env.update(kw)
    return {k: v for k, v in env.items() if v is not None}


def _assert_config_error(r, *needles):
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2, f"exit {r.returncode}, stderr: {err}\nstdout: {r.stdout[:300]!r}"
    for n in needles:
        assert n in err, f"{n!r} not named in stderr: {err}"
    assert len(err) < 2000, err
    return err


def test_help_lists_every_variable():
    r = _run({}, ["--help"])
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    missing = [v for v in G.GATEWAY_ENV_VARS if v not in out]
    assert not missing, f"--help does not list {missing}:\n{out}"


def test_unknown_argument_is_exit_2():
    r = _run({}, ["--frobnicate"])
    assert r.returncode == 2 and b"--frobnicate" in r.stderr, r.stderr


@pytest.mark.parametrize("var", ["DATABASE_URL", "BETTER_AUTH_SECRET"])
def test_missing_required_variable(tmp_path, var):
    _assert_config_error(_run(_env(tmp_path, **{var: None})), var)


@pytest.mark.parametrize("var,value", [
    ("BETTER_AUTH_SECRET", "short"),
    ("GATEWAY_LISTEN", "not-a-host-port"),
    ("UPSTREAM_TIMEOUT_SECONDS", "0"),
    ("GATEWAY_WORKERS", "many"),
    ("L1_TTL_SECONDS", "-5"),
    ("REDIS_URL", "http://127.0.0.1:6379"),
    ("LOG_LEVEL", "chatty"),
    ("GATEWAY_MAX_BODY_BYTES", "1e9"),
    ("FORWARD_AUTH_REFUSAL", "500"),
    ("IDENTITY_HEADER_NAMES", "X-User-Id=Host"),
    ("IDENTITY_HEADER_NAMES", "X-User-Id=X-User-Email"),
    ("IDENTITY_HEADER_NAMES", "X-Nobody=X-Remote-User"),
])
def test_bad_variable_is_named(tmp_path, var, value):
    _assert_config_error(_run(_env(tmp_path, **{var: value})), var)


def test_a_renamed_identity_header_is_no_route_s_to_set(tmp_path):
    """A route's request_headers may not set the name an identity header now has."""
    route = dict(GOOD_ROUTE, request_headers={"set": {"X-Remote-User": "admin"}})
    _assert_config_error(_run(_env(tmp_path, {"routes": [route]},
                                   IDENTITY_HEADER_NAMES="X-User-Id=X-Remote-User")),
                         "routes[0].request_headers.set.X-Remote-User")


def test_bad_database_url_does_not_print_the_secret(tmp_path):
    err = _assert_config_error(_run(_env(tmp_path, DATABASE_URL="mysql://u:hunter2-pw-xyz@h/db")),
                               "DATABASE_URL")
    assert "hunter2-pw-xyz" not in err, err


def test_no_routes_and_no_upstream_url(tmp_path):
    err = _assert_config_error(_run(_env(tmp_path, GATEWAY_ROUTES=None)), "GATEWAY_ROUTES")
    assert "UPSTREAM_URL" in err


def test_routes_file_missing(tmp_path):
    _assert_config_error(_run(_env(tmp_path, GATEWAY_ROUTES=str(tmp_path / "nope.json"))),
                         "GATEWAY_ROUTES")


@pytest.mark.parametrize("content", ['{"routes": [', "", "not json", "[]", '{"routes": []}',
                                     '{"routes": {}}', '{"rootes": [{}]}'])
def test_broken_routes_json(tmp_path, content):
    _assert_config_error(_run(_env(tmp_path, _routes_file(tmp_path, content))), "GATEWAY_ROUTES")


BAD_ROUTES = {
    "unknown-auth-kind": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": ["session", "magic"]},
                          ["routes[1].auth", "magic"]),
    "no-upstream": ({"prefix": "/b/", "auth": ["session"]}, ["routes[1].upstream"]),
    "ftp-upstream": ({"prefix": "/b/", "upstream": "ftp://example.test", "auth": ["session"]},
                     ["routes[1].upstream", "ftp://example.test", "http:// or https://"]),
    "https-bad-host": ({"prefix": "/b/", "upstream": "https://bad_host.test", "auth": ["session"]},
                       ["routes[1].upstream", "https://bad_host.test", "bad host"]),
    "no-prefix": ({"upstream": "http://127.0.0.1:9", "auth": ["session"]}, ["routes[1].prefix"]),
    "relative-prefix": ({"prefix": "b/", "upstream": "http://127.0.0.1:9", "auth": ["session"]},
                        ["routes[1].prefix"]),
    "empty-auth": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": []}, ["routes[1].auth"]),
    "auth-not-array": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": "session"},
                       ["routes[1].auth"]),
    "none-with-session": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": ["none", "session"]},
                          ["routes[1].auth"]),
    "apikey-prefix-without-api-key": ({"prefix": "/b/:apiKey/", "upstream": "http://127.0.0.1:9",
                                       "auth": ["session"]}, ["routes[1]", "api_key"]),
    "apikey-not-whole-segment": ({"prefix": "/b/x:apiKey/", "upstream": "http://127.0.0.1:9",
                                  "auth": ["api_key"]}, ["routes[1].prefix"]),
    "permissions-not-object": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": ["api_key"],
                                "permissions": ["files"]}, ["routes[1].permissions"]),
    "permissions-empty-actions": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": ["api_key"],
                                   "permissions": {"files": []}}, ["routes[1].permissions.files"]),
    "forward-cookies-not-bool": ({"prefix": "/b/", "upstream": "http://127.0.0.1:9", "auth": ["session"],
                                  "forward_cookies": "yes"}, ["routes[1].forward_cookies"]),
    "route-not-object": ("just a string", ["routes[1]"]),
    # issue 16: typos and impossible routes are start-up errors, not silent defaults
    "unknown-key": ({**GOOD_ROUTE, "prefix": "/b/", "strip_prefx": True},
                    ["routes[1].strip_prefx: unknown key"]),
    "strip-prefix-not-bool": ({**GOOD_ROUTE, "prefix": "/b/", "strip_prefix": "yes"},
                              ["routes[1].strip_prefix"]),
    "hosts-with-port": ({**GOOD_ROUTE, "prefix": "/b/", "hosts": ["a.test:8080"]}, ["routes[1].hosts[0]"]),
    "hosts-empty": ({**GOOD_ROUTE, "prefix": "/b/", "hosts": []}, ["routes[1].hosts"]),
    "hosts-bare-wildcard": ({**GOOD_ROUTE, "prefix": "/b/", "hosts": ["*"]}, ["routes[1].hosts[0]"]),
    "methods-lower-case": ({**GOOD_ROUTE, "prefix": "/b/", "methods": ["get"]}, ["routes[1].methods[0]"]),
    "duplicate-route": (GOOD_ROUTE, ["routes[1].prefix", "routes[0]"]),
    "duplicate-route-slash": ({**GOOD_ROUTE, "prefix": "/a"}, ["routes[1].prefix", "routes[0]"]),
}


@pytest.mark.parametrize("label", list(BAD_ROUTES))
def test_bad_route_is_named(tmp_path, label):
    route, needles = BAD_ROUTES[label]
    env = _env(tmp_path, {"routes": [GOOD_ROUTE, route]})
    _assert_config_error(_run(env), "GATEWAY_ROUTES", *needles)


def test_same_prefix_on_other_hosts_or_methods_is_fine(gateway_factory, upstream):
    r = {"prefix": "/a/", "upstream": upstream.url, "auth": ["none"]}
    g = gateway_factory(route_table={"routes": [r, {**r, "hosts": ["a.test"]},
                                                {**r, "methods": ["POST"]}]})
    assert g.get("/a/x").status_code == 200


@pytest.mark.parametrize("content,where", [
    ('{"routes": [\n  {"prefix": "/a/", "upstream": "http://127.0.0.1:9", "auth": ["session"]}\n'
     '  {"prefix": "/b/"}\n]}', "line 3, column 3"),
    ('{"routes": [], "x": tru}', "line 1, column 23"),
    ('{"routes": [\n', "line 2, column 1 (the text ends too soon)"),
])
def test_json_syntax_error_names_line_and_column(tmp_path, content, where):
    err = _assert_config_error(_run(_env(tmp_path, content)), "GATEWAY_ROUTES", "line ")
    assert f"JSON syntax error at {where}" in err, err


def test_key_given_twice_is_named(tmp_path):
    text = ('{"routes": [{"prefix": "/a/", "upstream": "http://127.0.0.1:9", "auth": ["session"],'
            ' "auth": ["none"]}]}')
    _assert_config_error(_run(_env(tmp_path, text)), "routes[0].auth: given twice")


@pytest.mark.parametrize("doc,needle", [
    ({"routes": [GOOD_ROUTE], "jwt_issuer": []}, "jwt_issuer: unknown key"),
    ({"routes": [GOOD_ROUTE], "jwt_issuers": [{"issuer": "http://127.0.0.1:9", "audience": "x"}]},
     "jwt_issuers[0].audience: unknown key"),
])
def test_unknown_top_and_issuer_keys_are_named(tmp_path, doc, needle):
    _assert_config_error(_run(_env(tmp_path, doc)), needle)


def test_listen_address_in_use(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = _run(_env(tmp_path, GATEWAY_LISTEN=f"127.0.0.1:{port}"))
    finally:
        s.close()
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err
    assert "GATEWAY_LISTEN" in err, err


def test_upstream_url_alone_is_a_catch_all_route(gateway_factory, upstream, mod_user):
    g = gateway_factory({"UPSTREAM_URL": upstream.url}, route_table=False, name="gateway-catchall")
    assert "GATEWAY_ROUTES" not in g.env
    body = G.echo(g.get("/any/path?x=1", headers=G.cookie(mod_user)))
    assert body["path"] == "/any/path" and body["headers"]["x-user-id"] == mod_user.id
    G.assert_gw_error(g.get("/any/path"), 401)
    G.assert_gw_error(g.get("/x", headers=G.bearer(G.jwt_like())), 401)


def test_bad_api_key_prefix_list_is_named(tmp_path):
    r = _run(_env(tmp_path, API_KEY_PREFIXES="oc_,bad prefix"))
    _assert_config_error(r, "API_KEY_PREFIXES")


def test_version_prints_the_version_file():
    r = _run({}, ["--version"])
    want = (H.REPO / "VERSION").read_text().strip()
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == f"gateway {want}", r.stdout


def test_check_validates_and_exits_without_serving(tmp_path):
    env = _env(tmp_path)
    r = _run(env, ["--check"])
    assert r.returncode == 0, r.stderr
    assert b"configuration ok: 1 routes" in r.stdout, r.stdout
    # it opened no listener: the port is still free
    host, port = env["GATEWAY_LISTEN"].rsplit(":", 1)
    s = socket.socket()
    try:
        s.bind((host, int(port)))
    finally:
        s.close()


def test_check_names_a_bad_route(tmp_path):
    r = _run(_env(tmp_path, {"routes": [dict(GOOD_ROUTE, frob=1)]}), ["--check"])
    _assert_config_error(r, "routes[0].frob")
    _assert_config_error(_run(_env(tmp_path, LOG_LEVEL="loud"), ["--check"]), "LOG_LEVEL")


@pytest.mark.parametrize("old, new, value", [
    ("UPSTREAM_TIMEOUT", "UPSTREAM_TIMEOUT_SECONDS", "5"),
    ("GATEWAY_MAX_BODY", "GATEWAY_MAX_BODY_BYTES", "1000"),
    ("L1_TTL", "L1_TTL_SECONDS", "10"),
    ("SESSION_UPDATE_AGE", "SESSION_UPDATE_AGE_SECONDS", "60"),
])
def test_an_old_variable_name_still_works_with_a_warning(tmp_path, old, new, value):
    """Variables renamed to say their unit: the old name is read for one release, with a
    warning that names the new one; both set is an error naming both."""
    r = _run(_env(tmp_path, **{old: value}), ["--check"])
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    assert f"configuration warning: {old} is read as {new}" in err, err
    r = _run(_env(tmp_path, **{old: value, new: value}), ["--check"])
    _assert_config_error(r, new, old)
    r = _run(_env(tmp_path, **{old: "x"}), ["--check"])
    _assert_config_error(r, new)


def _secret_file(tmp_path, text, name="secret"):
    p = tmp_path / name
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


@pytest.mark.parametrize("how", ["file", "file-crlf", "auth-secret", "auth-secret-file"])
def test_secret_from_a_file_or_better_auth_s_fallback_name(gateway_factory, upstream, mod_user,
                                                           secret, tmp_path, how):
    env = {"UPSTREAM_URL": upstream.url, "BETTER_AUTH_SECRET": None}
    if how == "file":
        env["BETTER_AUTH_SECRET_FILE"] = _secret_file(tmp_path, secret + "\n")
    elif how == "file-crlf":
        env["BETTER_AUTH_SECRET_FILE"] = _secret_file(tmp_path, secret + "\r\n")
    elif how == "auth-secret":
        env["AUTH_SECRET"] = secret
    else:
        env["AUTH_SECRET_FILE"] = _secret_file(tmp_path, secret)
    g = gateway_factory(env, route_table=False, name=f"gateway-secret-{how}")
    body = G.echo(g.get("/any", headers=G.cookie(mod_user)))
    assert body["headers"]["x-user-id"] == mod_user.id


@pytest.mark.parametrize("legacy", [True, False])
def test_versioned_secrets_check_cookies_with_the_current_one(gateway_factory, upstream, mod_user,
                                                              secret, legacy):
    """BETTER_AUTH_SECRETS (current first), as Better Auth reads it: a session cookie is
    checked with the current secret only; one signed with an older version, or with
    BETTER_AUTH_SECRET (then the legacy secret, for sealed keys only), is refused."""
    current = "v9-" + H.random_letters(40)
    env = {"UPSTREAM_URL": upstream.url, "BETTER_AUTH_SECRETS": f"9:{current},8:{secret}"}
    if not legacy:
        env["BETTER_AUTH_SECRET"] = None   # optional with a list
    g = gateway_factory(env, route_table=False, name=f"gateway-secrets-{legacy}")
    signed_now = {"Cookie": f"{H.SESSION_COOKIE}={H.cookie_value(current, mod_user.token)}"}
    body = G.echo(g.get("/any", headers=signed_now))
    assert body["headers"]["x-user-id"] == mod_user.id
    r = g.get("/any", headers=G.cookie(mod_user))      # signed with version 8's secret
    G.assert_gw_error(r, 401)


def test_versioned_secrets_are_checked(tmp_path):
    for value, needle in (("1:short", "at least 32"), ("x:" + "a" * 40, "non-negative"),
                          ("1:" + "a" * 40 + ",1:" + "b" * 40, "twice")):
        _assert_config_error(_run(_env(tmp_path, BETTER_AUTH_SECRETS=value), ["--check"]),
                             "BETTER_AUTH_SECRETS", needle)
    r = _run(_env(tmp_path, BETTER_AUTH_SECRET=None), ["--check"])
    _assert_config_error(r, "BETTER_AUTH_SECRET", "BETTER_AUTH_SECRETS")
    # the list alone is enough
    r = _run(_env(tmp_path, BETTER_AUTH_SECRET=None, BETTER_AUTH_SECRETS="3:" + "c" * 40),
             ["--check"])
    assert r.returncode == 0, r.stderr


def test_database_url_from_a_file(gateway_factory, upstream, mod_user, main_db_url, tmp_path):
    g = gateway_factory({"UPSTREAM_URL": upstream.url, "DATABASE_URL": None,
                         "DATABASE_URL_FILE": _secret_file(tmp_path, main_db_url + "\n", "db")},
                        route_table=False, name="gateway-dburl-file")
    body = G.echo(g.get("/any", headers=G.cookie(mod_user)))
    assert body["headers"]["x-user-id"] == mod_user.id


def test_secret_files_refused_when_ambiguous_or_unreadable(tmp_path):
    f = _secret_file(tmp_path, SECRET)
    _assert_config_error(_run(_env(tmp_path, BETTER_AUTH_SECRET_FILE=f), ["--check"]),
                         "BETTER_AUTH_SECRET", "BETTER_AUTH_SECRET_FILE", "set one")
    missing = str(tmp_path / "nope")
    _assert_config_error(_run(_env(tmp_path, BETTER_AUTH_SECRET=None, BETTER_AUTH_SECRET_FILE=missing),
                              ["--check"]), "BETTER_AUTH_SECRET_FILE", missing)
    two = _secret_file(tmp_path, SECRET + "\n" + SECRET + "\n", "two")
    _assert_config_error(_run(_env(tmp_path, BETTER_AUTH_SECRET=None, BETTER_AUTH_SECRET_FILE=two),
                              ["--check"]), "BETTER_AUTH_SECRET_FILE", "more than one line")
    short = _secret_file(tmp_path, "s" * 20, "short")
    err = _assert_config_error(_run(_env(tmp_path, BETTER_AUTH_SECRET=None, BETTER_AUTH_SECRET_FILE=short),
                                    ["--check"]), "BETTER_AUTH_SECRET", "32")
    assert "s" * 20 not in err
    # BETTER_AUTH_SECRET wins over the fallback; neither set is still "required"
    r = _run(_env(tmp_path, AUTH_SECRET="x"), ["--check"])
    assert r.returncode == 0, r.stderr
    _assert_config_error(_run(_env(tmp_path, BETTER_AUTH_SECRET=None), ["--check"]),
                         "BETTER_AUTH_SECRET", "required")


# docs/gateway.env.example: every variable --help lists, with its default,
# except the example values a reader must change anyway
ENV_EXAMPLE_VALUES = {"DATABASE_URL", "UPSTREAM_URL"}


def _help_rows():
    r = _run({}, ["--help"])
    text = (r.stdout + r.stderr).decode()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^  ([A-Z0-9_]+)\s+(\S+)\s", line)
        if m:
            rows[m.group(1)] = "" if m.group(2) in ("(unset)", "(required)") else m.group(2)
    assert len(rows) > 30, text
    return rows


def _env_example():
    vals = {}
    for line in (H.REPO / "docs" / "gateway.env.example").read_text().splitlines():
        m = re.match(r"^([A-Z0-9_]+)=(.*)$", line)
        if m:
            assert m.group(1) not in vals, f"{m.group(1)} twice"
            vals[m.group(1)] = m.group(2)
    return vals


def test_env_example_lists_every_variable_with_its_default():
    help_rows, example = _help_rows(), _env_example()
    assert set(example) == set(help_rows), (set(help_rows) ^ set(example))
    for name, default in help_rows.items():
        if name not in ENV_EXAMPLE_VALUES:
            assert example[name] == default, (name, example[name], default)


def test_docs_variable_table_is_the_help_table():
    """docs/gateway.md's *Variables* table: every row of --help, in its order, with its
    default; nothing more."""
    text = (H.REPO / "docs" / "gateway.md").read_text()
    sec = text.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| (\S+) \|", sec, re.M)
    help_rows = _help_rows()
    assert [n for n, _ in rows] == list(help_rows), "the table's names or order differ from --help"
    for name, default in rows:
        want = help_rows[name]
        assert default == (f"`{want}`" if want else default) and (want or default in (
            "(unset)", "(required)")), (name, default, want)


def test_env_example_passes_check(tmp_path):
    env = {k: v for k, v in _env_example().items() if v != ""}
    env["BETTER_AUTH_SECRET"] = SECRET
    r = _run(env, ["--check"])
    assert r.returncode == 0, r.stderr
    assert b"configuration ok: 1 routes" in r.stdout, r.stdout


def test_routes_example_passes_check(tmp_path):
    example = H.REPO / "docs" / "gateway.routes.example.json"
    routes = json.loads(example.read_text())["routes"]
    r = _run(_env(tmp_path, GATEWAY_ROUTES=str(example)), ["--check"])
    assert r.returncode == 0, r.stderr
    assert f"configuration ok: {len(routes)} routes".encode() in r.stdout, r.stdout
