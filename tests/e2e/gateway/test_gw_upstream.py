"""The upstream side: down (502), slow beyond UPSTREAM_TIMEOUT=1 s (504), server-sent
events streamed as they come, answers relayed with their status."""

import socket
import time

import pytest

import pcsupport as G
import pcsupport as H


@pytest.fixture(scope="module")
def ugw(module_gateway):
    return module_gateway


def test_upstream_down_is_502_json(ugw):
    before = ugw.stats()["upstream_errors"]
    for _ in range(3):
        t0 = time.monotonic()
        r = ugw.get("/dead/x", headers={"X-Request-Id": "dead-upstream-1"})
        body = G.assert_gw_error(r, 502, "UPSTREAM_UNAVAILABLE")
        assert body["requestId"] == "dead-upstream-1"
        assert time.monotonic() - t0 < 2.0, "connection refused should fail fast"
    assert ugw.stats()["upstream_errors"] - before >= 3


def test_upstream_slow_within_timeout_passes(ugw):
    t0 = time.monotonic()
    body = G.echo(ugw.get("/slow?ms=400"))
    assert body["path"] == "/slow" and time.monotonic() - t0 >= 0.35


def test_upstream_slow_beyond_timeout_is_504_json(ugw):
    before = ugw.stats()["upstream_timeouts"]
    t0 = time.monotonic()
    r = ugw.get("/slow?ms=4000", timeout=10)
    took = time.monotonic() - t0
    G.assert_gw_error(r, 504, "UPSTREAM_TIMEOUT")
    assert 0.8 <= took < 3.0, f"504 after {took:.2f}s with UPSTREAM_TIMEOUT={G.UPSTREAM_TIMEOUT}"
    assert ugw.stats()["upstream_timeouts"] - before == 1
    # the gateway and the upstream pool are fine afterwards
    for i in range(3):
        assert G.echo(ugw.get(f"/pub/after-timeout{i}"))["path"] == f"/pub/after-timeout{i}"


def _read_sse(port, path, timeout=10.0):
    """GET path on a raw socket; returns (status line, [(t, event)], total time)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n"
              "Connection: close\r\n\r\n".encode())
    buf, events, seen = b"", [], 0
    deadline = t0 + timeout
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            now = time.monotonic() - t0
            buf += chunk
            n = buf.count(b"data: event")
            for _ in range(n - seen):
                events.append(now)
            seen = n
    finally:
        s.close()
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return head, events, time.monotonic() - t0


def test_server_sent_events_stream_through(ugw):
    n, ms = 5, 300
    head, events, total = _read_sse(ugw.port, f"/sse?n={n}&ms={ms}")
    assert head.startswith("HTTP/1.1 200"), head
    assert "text/event-stream" in head.lower(), head
    assert len(events) == n, f"got {len(events)} events: {events}"
    # the first event arrives at once, not when the stream ends
    assert events[0] < 0.5 * (n - 1) * ms / 1000, f"first event after {events[0]:.2f}s: buffered? {events}"
    assert events[-1] - events[0] >= 0.7 * (n - 1) * ms / 1000, f"events bunched together: {events}"
    for i in range(1, n):
        assert events[i] >= events[0] + i * ms / 1000 * 0.6, f"event {i} early/bunched: {events}"


def test_server_sent_events_longer_than_upstream_timeout(ugw):
    """UPSTREAM_TIMEOUT is between bytes, not for the whole answer: a 2.4 s stream with
    an event every 300 ms passes a 1 s timeout."""
    head, events, total = _read_sse(ugw.port, "/sse?n=9&ms=300")
    assert head.startswith("HTTP/1.1 200"), head
    assert len(events) == 9, events
    assert total >= 2.0


def test_big_answer_streams_not_buffered(ugw):
    """A 2 MiB answer arrives intact (streamed: Content-Length over 256 KiB)."""
    with ugw.get("/big?kb=2048", stream=True, timeout=20) as r:
        assert r.status_code == 200
        data = b"".join(r.iter_content(1 << 16))
    assert len(data) == 2048 * 1024 and data.strip(b"x") == b""


def test_client_leaving_a_stream_cancels_it_upstream(ugw):
    """A client that leaves a server-sent-event stream must not keep the upstream
    request (and a pooled connection) alive: once a write to it fails, the gateway
    cancels the upstream request. Runs several times to check the pool is sound."""
    before = ugw.stats()["upstream_cancels"]
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", ugw.port), timeout=5)
        s.sendall(b"GET /sse?n=2000&ms=20 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while b"data: event" not in got:
            chunk = s.recv(4096)
            assert chunk, "stream ended before its first event"
            got += chunk
        # RST instead of FIN: the gateway's next write to it fails at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        H.wait_until(lambda: ugw.stats()["upstream_cancels"] - before >= i + 1, timeout=5,
                     what=f"upstream cancel #{i + 1}")
    # a stream to the end still works, and so does a plain request
    head, events, _ = _read_sse(ugw.port, "/sse?n=3&ms=20")
    assert head.startswith("HTTP/1.1 200") and len(events) == 3, (head, events)
    assert G.echo(ugw.get("/pub/after-cancel"))["path"] == "/pub/after-cancel"
    assert ugw.stats()["upstream_cancels"] - before == 3
