"""The configuration rows authsvc and the gateway share (lib/conf_common.c) are judged
the same way by both (issue 14, point 4): a REDIS_PREFIX or REVOCATION_CHANNEL one
program refuses, the other refuses too, at start and naming the variable.  Before,
authsvc checked the characters and the gateway nothing: the gateway started with a
prefix authsvc refused and wrote keys under a name no authsvc read."""

from __future__ import annotations

import pytest

import pcsupport as H
import pcsupport as G
from pcsupport.suite import SECRET

BAD = [
    ("REDIS_PREFIX", "has space:"),
    ("REDIS_PREFIX", "tab\t:"),
    ("REDIS_PREFIX", "p" * 65),
    ("REDIS_PREFIX", "caf\u00e9:"),
    ("REVOCATION_CHANNEL", "two words"),
    ("REVOCATION_CHANNEL", "c" * 129),
]


def _gateway(tmp_path, var, value):
    routes = tmp_path / "routes.json"
    routes.write_text('{"routes": [{"prefix": "/a/", "upstream": "http://127.0.0.1:9", '
                      '"auth": ["session"]}]}')
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "REDIS_URL": "redis://127.0.0.1:1", "GATEWAY_LISTEN": f"127.0.0.1:{H.free_port()}",
           "GATEWAY_ROUTES": str(routes), var: value}
    return H.run_bounded([H.binary("gateway")], env=G.gateway_env(env), timeout=10)


def _authsvc(var, value):
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", "BETTER_AUTH_SECRET": SECRET,
           "REDIS_URL": "redis://127.0.0.1:1", "AUTHSVC_LISTEN": f"127.0.0.1:{H.free_port()}",
           var: value}
    return H.run_authsvc([], env=env, timeout=10)


@pytest.mark.parametrize("var,value", BAD, ids=[f"{v}-{i}" for i, (v, _) in enumerate(BAD)])
def test_both_refuse_the_same_bad_value(tmp_path, var, value):
    for name, r in (("gateway", _gateway(tmp_path, var, value)), ("authsvc", _authsvc(var, value))):
        err = (r.stdout + r.stderr).decode(errors="replace")
        assert r.returncode == 2, f"{name} {var}={value!r}: exit {r.returncode}\n{err}"
        assert var in err, f"{name}: the message does not name {var}:\n{err}"
