"""authsvc at its open-file limit and at its connection caps (security issue #13,
item 3): accept() failing with EMFILE must not spin the loop or flood the log, /health
must still be answered, a counter must rise, and the server must serve again once the
idle connections are gone. AUTHSVC_MAX_CONNS / AUTHSVC_MAX_CONNS_PER_IP cap connections,
AUTHSVC_HEAD_TIMEOUT_MS bounds a trickled request, and evhttp's own refusals are JSON."""

import json
import time
from pathlib import Path

import pytest

from pcsupport import fds as F


def _metrics(svc):
    st, _, body = F.get(svc.admin_port, "/metrics")
    assert st == 200, (st, body[:200])
    return body.decode()


def _log_bytes(svc):
    return F.file_size(svc.log_path) + F.file_size(svc.stderr_path)


@pytest.mark.slow
def test_emfile_no_spin_health_answers(authsvc_factory):
    svc = authsvc_factory({"AUTHSVC_MAX_CONNS": "100000", "AUTHSVC_HEAD_TIMEOUT_MS": "60000"},
                          name="authsvc-emfile")
    pid = svc.proc.pid
    assert F.get(svc.port, "/health")[0] == 200
    F.limit_fds(pid, 24)
    idle = F.idle_conns(svc.port, 90)
    try:
        assert len(idle) >= 40, len(idle)
        time.sleep(1.0)  # the server has hit the limit by now
        log0, cpu0, t0 = _log_bytes(svc), F.cpu_seconds(pid), time.monotonic()
        time.sleep(3.0)
        cpu = (F.cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        grown = _log_bytes(svc) - log0
        assert cpu < 0.25, f"authsvc used {cpu:.0%} CPU at the fd limit"
        assert grown < 16384, f"log grew {grown} bytes in 3 s at the fd limit"
        # a health check still gets its answer (the reserve descriptor)
        st, _, body = F.get(svc.port, "/health", timeout=5)
        assert st == 200 and json.loads(body) == {"status": "ok"}, (st, body)
        st, _, body = F.get(svc.port, "/api/auth/ok", timeout=5)
        assert st == 503 and json.loads(body)["code"] == "TOO_MANY_CONNECTIONS", (st, body)
    finally:
        F.close_all(idle)
    # serves again once the idle connections are gone
    ok = F.wait_for(lambda: F.get(svc.port, "/api/auth/ok", timeout=2)[0] == 200, 10)
    assert ok, "authsvc did not serve again after the idle connections closed"
    m = _metrics(svc)
    assert F.metric(m, "portcullis_authsvc_accept_errors_total") >= 1
    warnings = [l for l in svc.log_path.read_text().splitlines() if "accept:" in l]
    assert 1 <= len(warnings) <= 2, warnings


def test_max_conns_cap(authsvc_factory):
    svc = authsvc_factory({"AUTHSVC_MAX_CONNS": "20", "AUTHSVC_HEAD_TIMEOUT_MS": "60000"},
                          name="authsvc-maxconns")
    idle = F.idle_conns(svc.port, 20)
    try:
        time.sleep(0.5)
        st, _, body = F.get(svc.port, "/api/auth/ok")
        assert st == 503 and json.loads(body)["code"] == "TOO_MANY_CONNECTIONS", (st, body)
        st, _, body = F.get(svc.port, "/health")
        assert st == 200, (st, body)
        m_st, _, m_body = F.get(svc.port, "/metrics")
        assert m_st == 503, m_st  # only /health, /live and /ready over the cap
        # the admin listener is outside the cap
        m_st, _, m_body = F.get(svc.admin_port, "/metrics")
        assert m_st == 200 and b"portcullis_authsvc_connections_max" in m_body, m_st
    finally:
        F.close_all(idle)
    assert F.wait_for(lambda: F.get(svc.port, "/api/auth/ok", timeout=2)[0] == 200, 10)
    m = _metrics(svc)
    assert F.metric(m, "portcullis_authsvc_connections_refused_total", 'reason="max_conns"') >= 2
    assert F.metric(m, "portcullis_authsvc_connections_max") == 20
    ver = (Path(__file__).resolve().parents[3] / "VERSION").read_text().strip()
    assert F.metric(m, "portcullis_build_info", f'program="authsvc",version="{ver}"') == 1
    assert F.metric(m, "portcullis_authsvc_log_write_failures_total") == 0


def test_max_conns_per_ip(authsvc_factory):
    svc = authsvc_factory({"AUTHSVC_MAX_CONNS_PER_IP": "5", "AUTHSVC_HEAD_TIMEOUT_MS": "60000"},
                          name="authsvc-perip")
    idle = F.idle_conns(svc.port, 5, src="127.0.0.2")
    try:
        assert len(idle) == 5
        time.sleep(0.5)
        st, _, body = F.get(svc.port, "/api/auth/ok", src="127.0.0.2")
        assert st in (503, None), (st, body)
        if st == 503:
            assert json.loads(body)["code"] == "TOO_MANY_CONNECTIONS"
        st, _, body = F.get(svc.port, "/api/auth/ok", src="127.0.0.3")
        assert st == 200, (st, body)
        m = _metrics(svc)
        assert F.metric(m, "portcullis_authsvc_connections_refused_total", 'reason="per_ip"') >= 1
    finally:
        F.close_all(idle)
    assert F.wait_for(lambda: F.get(svc.port, "/api/auth/ok", src="127.0.0.2",
                                    timeout=2)[0] == 200, 10)


def test_head_deadline_trickle(authsvc_factory):
    svc = authsvc_factory({"AUTHSVC_HEAD_TIMEOUT_MS": "1000"}, name="authsvc-headdl")
    import socket
    s = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
    got = b""
    t0 = time.monotonic()
    try:
        for ch in b"GET /api/auth/ok HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa":
            try:
                s.sendall(bytes([ch]))
            except OSError:
                break
            time.sleep(0.1)  # one byte per 100 ms: never idle, never whole
            if time.monotonic() - t0 > 4:
                break
        s.settimeout(3)
        try:
            while True:
                c = s.recv(4096)
                if not c:
                    break
                got += c
        except OSError:
            pass
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    body = json.loads(got.partition(b"\r\n\r\n")[2])
    assert body["code"] == "REQUEST_TIMEOUT", body
    assert F.metric(_metrics(svc), "portcullis_authsvc_head_timeouts_total") >= 1


def test_evhttp_refusals_are_json(authsvc):
    if not authsvc.running:
        authsvc.start()
    port = authsvc.port
    cases = [
        b"NOT A REQUEST\r\n\r\n",
        b"GET /api/auth/ok HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n",
        b"POST /api/auth/sign-in/email HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5000000\r\n\r\n" + b"{" * 4096,
    ]
    for data in cases:
        st, hdrs, body = F.exchange(port, data)
        assert st is not None and 400 <= st < 600, (data[:40], st, body[:200])
        assert hdrs.get("content-type", "").startswith("application/json"), (data[:40], hdrs)
        j = json.loads(body)
        assert set(j) == {"message", "code"}, j
