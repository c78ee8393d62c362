"""authsvc's admin listener (AUTHSVC_ADMIN_LISTEN, issue 17): /metrics answers there
and not on the public port; the health checks answer on both (under
AUTHSVC_HEALTH_PREFIX on the public port); nothing else answers on the admin port;
bad values and a taken port are start-up errors."""

import requests

import pcsupport as H


def test_metrics_on_the_admin_port_only(authsvc_factory):
    svc = authsvc_factory(name="authsvc-admin")
    m = requests.get(svc.admin_url("/metrics"), timeout=5)
    assert m.status_code == 200 and 'portcullis_build_info{program="authsvc"' in m.text
    assert m.headers["Content-Type"].startswith("text/plain")
    pub = requests.get(svc.url("/metrics"), timeout=5)
    assert pub.status_code == 404 and pub.json()["code"] == "NOT_FOUND", pub.text
    for path in ("/health", "/live", "/ready"):
        a, p = requests.get(svc.admin_url(path), timeout=5), requests.get(svc.url(path), timeout=5)
        assert a.status_code == 200 and p.status_code == 200 and a.json() == p.json(), path
    # the admin port serves nothing else: no sign-in, no JWKS, no API
    for path in ("/api/auth/ok", "/api/auth/jwks", "/api/auth/get-session", "/", "/metricsx"):
        r = requests.get(svc.admin_url(path), timeout=5)
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND", (path, r.text)
    r = requests.post(svc.admin_url("/api/auth/sign-up/email"), timeout=5,
                      json={"email": "admin-port@example.com", "password": "correct-horse-1",
                            "name": "x"})
    assert r.status_code == 404, r.text
    r = requests.post(svc.admin_url("/metrics"), timeout=5, data=b"x")
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED", r.text
    assert requests.head(svc.admin_url("/metrics"), timeout=5).status_code == 200


def test_health_prefix(authsvc_factory):
    svc = authsvc_factory({"AUTHSVC_HEALTH_PREFIX": "/_as"}, name="authsvc-prefix")
    assert requests.get(svc.url("/_as/health"), timeout=5).json() == {"status": "ok"}
    assert requests.get(svc.url("/_as/ready"), timeout=5).json()["status"] == "ready"
    assert requests.get(svc.url("/health"), timeout=5).status_code == 404
    for path in ("/health", "/_as/health", "/_as/live", "/ready"):
        assert requests.get(svc.admin_url(path), timeout=5).status_code == 200, path


def test_admin_off(authsvc_factory):
    svc = authsvc_factory({"AUTHSVC_ADMIN_LISTEN": "off"}, name="authsvc-admin-off")
    assert svc.admin_port is None
    assert requests.get(svc.url("/metrics"), timeout=5).status_code == 404
    assert requests.get(svc.url("/live"), timeout=5).status_code == 200


def test_a_taken_admin_port_is_a_start_up_error(authsvc_factory):
    first = authsvc_factory(name="authsvc-admin-first")
    env = dict(first.env, AUTHSVC_LISTEN=f"127.0.0.1:{H.free_port()}",
               AUTHSVC_LOG=str(first.dir / "authsvc-admin-second.log"))
    r = H.run_bounded([H.binary("authsvc")], env=H.authsvc_env(env), timeout=15)
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, err[-300:]
    assert "AUTHSVC_ADMIN_LISTEN" in err and str(first.admin_port) in err, err[-500:]


def test_bad_values_are_configuration_errors(authsvc_factory):
    for k, v in (("AUTHSVC_HEALTH_PREFIX", "health"), ("AUTHSVC_HEALTH_PREFIX", "/x/"),
                 ("AUTHSVC_HEALTH_PREFIX", "/a/./b"), ("AUTHSVC_ADMIN_LISTEN", "nowhere")):
        env = {"DATABASE_URL": "postgres://x@127.0.0.1:1/x", "BETTER_AUTH_SECRET": "s" * 40, k: v}
        r = H.run_bounded([H.binary("authsvc"), "--check"], env=H.authsvc_env(env), timeout=10)
        err = (r.stderr + r.stdout).decode(errors="replace")
        assert r.returncode != 0 and k in err, (k, v, err[-300:])
