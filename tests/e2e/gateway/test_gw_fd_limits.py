"""The gateway at its open-file limit and at its connection caps (security issue #13,
item 3): with accept() failing with EMFILE the workers must not spin, the log must
stay small, /health must still be answered, a counter must rise, and the gateway must
serve again once the idle connections are gone. GATEWAY_MAX_CONNS and
GATEWAY_MAX_CONNS_PER_IP cap connections (by TCP peer address), and
GATEWAY_HEAD_TIMEOUT_MS bounds a head trickled byte by byte."""

import json
import socket
import time
from pathlib import Path

import pytest

from pcsupport import fds as F


def _metrics(g):
    st, _, body = F.get(g.admin_port, "/metrics")
    assert st == 200, (st, body[:200])
    return body.decode()


def _log_bytes(g):
    return F.file_size(g.log_path) + F.file_size(g.stderr_path)


@pytest.mark.slow
def test_emfile_no_spin_health_answers(gateway_factory):
    g = gateway_factory({"GATEWAY_MAX_CONNS": "100000", "GATEWAY_HEAD_TIMEOUT_MS": "60000",
                         "GATEWAY_ACCESS_LOG": "false"}, name="gateway-emfile")
    pid = g.proc.pid
    F.limit_fds(pid, 24)
    idle = F.idle_conns(g.port, 90)
    try:
        assert len(idle) >= 40, len(idle)
        time.sleep(1.0)
        log0, cpu0, t0 = _log_bytes(g), F.cpu_seconds(pid), time.monotonic()
        time.sleep(3.0)
        cpu = (F.cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        grown = _log_bytes(g) - log0
        assert cpu < 0.25, f"gateway used {cpu:.0%} CPU at the fd limit"
        assert grown < 16384, f"log grew {grown} bytes in 3 s at the fd limit"
        st, _, body = F.get(g.port, "/health", timeout=5)
        assert st == 200 and json.loads(body) == {"status": "ok"}, (st, body)
    finally:
        F.close_all(idle)
    ok = F.wait_for(lambda: F.get(g.port, "/pub/fd", timeout=2)[0] == 200, 10)
    assert ok, "gateway did not serve again after the idle connections closed"
    m = _metrics(g)
    assert F.metric(m, "portcullis_gateway_accept_errors_total") >= 1
    warnings = [l for l in g.log_path.read_text().splitlines() if "accept:" in l]
    assert 1 <= len(warnings) <= 2, warnings


def test_max_conns_cap(gateway_factory):
    g = gateway_factory({"GATEWAY_MAX_CONNS": "20", "GATEWAY_HEAD_TIMEOUT_MS": "60000"},
                        name="gateway-maxconns")
    idle = F.idle_conns(g.port, 20)
    try:
        time.sleep(0.5)
        st, _, body = F.get(g.port, "/pub/fd")
        assert st == 503 and json.loads(body)["code"] == "TOO_MANY_CONNECTIONS", (st, body)
        st, _, body = F.get(g.port, "/health")
        assert st == 200, (st, body)
        # the admin listener is outside the caps: the metrics are still there
        st, _, body = F.get(g.admin_port, "/_stats")
        assert st == 200 and "conns_refused_max" in json.loads(body), (st, body[:200])
    finally:
        F.close_all(idle)
    assert F.wait_for(lambda: F.get(g.port, "/pub/fd", timeout=2)[0] == 200, 10)
    m = _metrics(g)
    assert F.metric(m, "portcullis_gateway_connections_refused_total", 'reason="max_conns"') >= 2
    assert F.metric(m, "portcullis_gateway_connections_max") == 20
    # the refusals were logged, and every log write went through
    assert F.metric(m, "portcullis_gateway_log_write_failures_total") == 0
    ver = (Path(__file__).resolve().parents[3] / "VERSION").read_text().strip()
    assert F.metric(m, "portcullis_build_info", f'program="gateway",version="{ver}"') == 1


def test_max_conns_per_ip(gateway_factory):
    g = gateway_factory({"GATEWAY_MAX_CONNS_PER_IP": "5", "GATEWAY_HEAD_TIMEOUT_MS": "60000"},
                        name="gateway-perip")
    idle = F.idle_conns(g.port, 5, src="127.0.0.2")
    try:
        assert len(idle) == 5
        time.sleep(0.5)
        st, _, body = F.get(g.port, "/pub/fd", src="127.0.0.2")
        assert st == 503 and json.loads(body)["code"] == "TOO_MANY_CONNECTIONS", (st, body)
        st, _, body = F.get(g.port, "/pub/fd", src="127.0.0.3")
        assert st == 200, (st, body)
        m = _metrics(g)
        assert F.metric(m, "portcullis_gateway_connections_refused_total", 'reason="per_ip"') >= 1
    finally:
        F.close_all(idle)
    assert F.wait_for(lambda: F.get(g.port, "/pub/fd", src="127.0.0.2", timeout=2)[0] == 200, 10)


def test_head_deadline_trickle(gateway_factory):
    g = gateway_factory({"GATEWAY_HEAD_TIMEOUT_MS": "1000"}, name="gateway-headdl")
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    got = b""
    t0 = time.monotonic()
    try:
        for ch in b"GET /_stats HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa":
            try:
                s.sendall(bytes([ch]))
            except OSError:
                break
            time.sleep(0.1)
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
    assert F.metric(_metrics(g), "portcullis_gateway_head_timeouts_total") >= 1
