"""The upstream side: down (502), slow beyond UPSTREAM_TIMEOUT_SECONDS=1 s (504), server-sent
events streamed as they come, answers relayed with their status; HTTP/1.0 answers framed
by hand (Transfer-Encoding is 502, until-close is relayed whole), and a client that leaves
before the answer cancels the upstream request (issue 23)."""

import copy
import json
import socket
import threading
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
    G.assert_gw_error(r, 504, "UPSTREAM_TIMEOUT_SECONDS")
    assert 0.8 <= took < 3.0, f"504 after {took:.2f}s with UPSTREAM_TIMEOUT_SECONDS={G.UPSTREAM_TIMEOUT_SECONDS}"
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
    """UPSTREAM_TIMEOUT_SECONDS is between bytes, not for the whole answer: a 2.4 s stream with
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


# ---------------------------------------------------------------------------
# answers framed by hand, and requests the upstream never answers (issue 23)


class ScriptedUpstream:
    """An upstream on 127.0.0.1 that reads each request head and answers with the bytes
    ANSWERS names for the path's first segment after /scripted/ (then closes, or keeps
    reading), or, for "hold", never answers. For every connection it records the paths
    it read and when the gateway closed it (recv() saw the end)."""

    TE10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" \
           b"5\r\nhello\r\n0\r\n\r\n"
    BODY = b"until the close " * 64
    ANSWERS = {  # kind: (answer, close after it)
        "te10": (TE10, False),
        "eof10": (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY, True),
        "eof10ka": (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n" + BODY, True),
        "ok": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    }

    def __init__(self):
        self.conns = []             # per connection: {"paths": [...], "closed_at": t or None}
        self._ls = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self._ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self._ls.accept()
            except OSError:
                return
            rec = {"paths": [], "closed_at": None}
            self.conns.append(rec)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    def _serve(self, s, rec):
        buf = b""
        with s:
            s.settimeout(120)
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\r\n\r\n" in buf:
                        head, _, buf = buf.partition(b"\r\n\r\n")
                        path = head.split(b" ", 2)[1].decode()
                        rec["paths"].append(path)
                        kind = path.split("/")[2].split("-")[0]
                        if kind == "hold":
                            continue
                        answer, close = self.ANSWERS[kind]
                        s.sendall(answer)
                        if close:
                            return
            except OSError:
                pass
            rec["closed_at"] = time.monotonic()

    def conn_of(self, token):
        """The record of the connection that read a path holding token (once it has)."""
        return next((c for c in self.conns if any(token in p for p in c["paths"])), None)

    def stop(self):
        self._ls.close()


@pytest.fixture(scope="module")
def scripted():
    u = ScriptedUpstream()
    yield u
    u.stop()


def _with_scripted(routes, scripted):
    table = copy.deepcopy(routes)
    table["routes"].append({"prefix": "/scripted/", "upstream": scripted.url, "auth": ["none"]})
    return table


def _wait_closed(scripted, token, within):
    """Seconds from now until the gateway closed the upstream connection that read token;
    fails after within."""
    t0 = time.monotonic()
    H.wait_until(lambda: scripted.conn_of(token), timeout=3, interval=0.01,
                 what=f"upstream read of {token}")
    rec = scripted.conn_of(token)
    H.wait_until(lambda: rec["closed_at"], timeout=within, interval=0.01,
                 what=f"gateway closing the upstream connection of {token}")
    return rec["closed_at"] - t0


def test_http10_answer_with_transfer_encoding_is_502_and_not_reused(gateway_factory, routes,
                                                                    scripted):
    """RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. The
    client gets the gateway's 502 for a malformed answer (not a body relayed as chunked)
    and the upstream connection is closed, even though the answer asked to keep it."""
    g = gateway_factory(route_table=_with_scripted(routes, scripted), name="gateway-te10")
    before = g.stats()["upstream_errors"]
    for i in range(2):
        t = f"te10-{i}-{time.monotonic_ns()}"
        r = g.get(f"/scripted/{t}", headers={"X-Request-Id": f"te10-{i}"})
        body = G.assert_gw_error(r, 502, "UPSTREAM_UNAVAILABLE")
        assert body["requestId"] == f"te10-{i}"
        assert _wait_closed(scripted, t, within=2) < 2
        assert scripted.conn_of(t)["paths"] == [f"/scripted/{t}"], "connection reused"
    assert g.stats()["upstream_errors"] - before == 2
    assert g.get("/scripted/ok-after-te10").content == b"ok"


@pytest.mark.parametrize("kind", ["eof10", "eof10ka"])
def test_http10_answer_until_close_is_relayed_whole(gateway_factory, routes, scripted, kind):
    """An HTTP/1.0 answer without Content-Length ends at the upstream's close (keep-alive
    asked or not): the HTTP/1.1 client gets all of it, chunked with a proper ending, on
    a connection that carries the next request; the upstream connection is not reused."""
    g = gateway_factory(route_table=_with_scripted(routes, scripted), name="gateway-eof10")
    for i in range(2):
        t = f"{kind}-{i}-{time.monotonic_ns()}"
        r = g.get(f"/scripted/{t}")
        assert r.status_code == 200, r.text[:300]
        assert r.headers.get("transfer-encoding") == "chunked", r.headers
        assert r.content == ScriptedUpstream.BODY
        assert scripted.conn_of(t)["paths"] == [f"/scripted/{t}"]
    assert g.get("/scripted/ok-after-eof10").content == b"ok"
    assert g.stats()["upstream_errors"] == 0


def test_client_closing_before_the_answer_cancels_the_upstream_request(gateway_factory, routes,
                                                                       scripted):
    """A client that closes while the gateway waits for the upstream's first answer byte
    cancels the exchange: the upstream connection is closed within a second (not after
    UPSTREAM_TIMEOUT_SECONDS=60 s) and its pool slot freed (one slot, three cancels), and the
    gateway serves the next request on the same upstream."""
    g = gateway_factory({"UPSTREAM_TIMEOUT_SECONDS": "60", "UPSTREAM_POOL": "1", "GATEWAY_WORKERS": "1"},
                        _with_scripted(routes, scripted), name="gateway-hold")
    before = g.stats()["upstream_cancels"]
    for i in range(3):
        t = f"hold-{i}-{time.monotonic_ns()}"
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall(f"GET /scripted/{t} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        H.wait_until(lambda: scripted.conn_of(t), timeout=3, interval=0.01,
                     what=f"upstream read of {t}")
        s.close()
        took = _wait_closed(scripted, t, within=1.0)
        assert took < 1.0, f"upstream connection closed {took:.2f}s after the client left"
    H.wait_until(lambda: g.stats()["upstream_cancels"] - before == 3, timeout=2,
                 what="three upstream cancels")

    def logged():  # the access log's status for each: nothing was answered
        lines = (json.loads(ln) for ln in g.log_path.read_text(errors="replace").splitlines()
                 if "/scripted/hold-" in ln)
        return [e["status"] for e in lines if e.get("path", "").startswith("/scripted/hold-")]
    H.wait_until(lambda: len(logged()) == 3, timeout=2, what="three access log lines")
    assert logged() == [499] * 3
    for i in range(3):
        r = g.get(f"/scripted/ok-after-hold-{i}", headers={"Connection": "close"})
        assert (r.status_code, r.content) == (200, b"ok"), r.text[:300]
    assert G.echo(g.get("/pub/after-hold"))["path"] == "/pub/after-hold"
