"""Streamed request bodies (issue 15): a body that has not all come with its head is not
read whole first. The request is authenticated on its head; a refused one is answered
before its body is read (no 100 Continue, and the connection closes after), an allowed
one goes to the upstream through a 64 KiB window with back-pressure, so an upload of any
size costs the gateway bounded memory, Content-Length kept or chunked as it came.

Real processes: the gateway, authsvc's stores, and a Python upstream that hashes the
bodies it reads (pcsupport/sinkupstream.py)."""

import hashlib
import json
import re
import socket
import threading
import time

import pytest

from pcsupport.sinkupstream import SinkUpstream

MiB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096          # 1 MiB, not all one byte


@pytest.fixture
def sink():
    s = SinkUpstream()
    yield s
    s.stop()


def _routes(sink, *extra):
    return {"routes": [
        {"prefix": "/up/", "upstream": sink.url, "auth": ["none"], "timeout_ms": 5000},
        {"prefix": "/key/", "upstream": sink.url, "auth": ["api_key"]},
        *extra,
    ]}


def _gw(gateway_factory, sink, name, *extra, **env):
    env = {"GATEWAY_MAX_BODY_BYTES": str(1 << 30), **env}
    return gateway_factory(env, route_table=_routes(sink, *extra), name=name)


def _rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class Conn:
    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)
        return self

    def answer(self):
        """One answer: (status, headers, body); a 1xx comes back as it is."""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, f"closed before an answer: {self.buf[:300]!r}"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            assert chunk, "closed inside an answer"
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def closed(self, timeout=3.0):
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self):
        self.s.close()


def _head(path, framing, size=None, extra=""):
    fr = f"Content-Length: {size}\r\n" if framing == "length" else "Transfer-Encoding: chunked\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{fr}{extra}\r\n".encode()


def _frame(framing, data):
    return data if framing == "length" else b"%x\r\n%s\r\n" % (len(data), data)


def _end(framing):
    return b"" if framing == "length" else b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_large_upload_is_intact_and_costs_bounded_memory(gateway_factory, sink, framing):
    """96 MiB, to an upstream that reads nothing for its first 2 s: the client is held
    back instead of the gateway buffering, and every byte arrives."""
    g = _gw(gateway_factory, sink, f"gateway-upload-{framing}")
    mib = 96
    pid = g.proc.pid
    base = _rss_kb(pid)
    c = Conn(g.port, timeout=60)
    c.send(_head("/up/slow", framing, mib * MiB))
    peak = [base]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb(pid))
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    h = hashlib.sha256()
    try:
        for _ in range(mib):
            c.send(_frame(framing, BLOCK))
            h.update(BLOCK)
        c.send(_end(framing))
        st, _, body = c.answer()
    finally:
        done.set()
        t.join()
    assert st == 200, body[:300]
    got = json.loads(body)
    assert got["length"] == mib * MiB and got["sha256"] == h.hexdigest()
    assert got["chunked"] == (framing == "chunked")
    if framing == "length":
        assert got["headers"]["content-length"] == str(mib * MiB)
    grew = peak[0] - base
    assert grew < 8 * 1024, f"the gateway grew by {grew} KiB for a {mib} MiB upload"
    # the connection goes on: the next request on it is read where the body ended
    st, _, body = c.send(b"GET /up/after HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").answer()
    assert st == 200 and json.loads(body)["path"] == "/up/after"
    c.close()


@pytest.mark.parametrize("cred", ["none", "bad"])
def test_a_refused_request_is_answered_before_its_body(gateway_factory, sink, cred):
    """1 GiB announced, not a byte of it sent: the 401 comes at once, the connection
    closes after it, and the upstream never hears of the request."""
    g = _gw(gateway_factory, sink, f"gateway-upload-refused-{cred}")
    extra = "x-api-key: pc_nonsense_key_0123456789abcdef\r\n" if cred == "bad" else ""
    c = Conn(g.port, timeout=10)
    t0 = time.monotonic()
    st, hdrs, body = c.send(_head("/key/file", "length", 1 << 30, extra)).answer()
    assert st == 401 and time.monotonic() - t0 < 3, (st, body)
    assert json.loads(body)["code"] and hdrs.get("connection") == "close"
    # the client goes on sending its body: dropped, then the connection closes
    try:
        for _ in range(4):
            c.send(BLOCK)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.closed(5)
    assert not [r for r in sink.records if r["path"] == "/key/file"]


def test_expect_100_continue_only_once_allowed(gateway_factory, sink, mod_key):
    g = _gw(gateway_factory, sink, "gateway-upload-continue")
    data = b"k" * 300000
    # refused: the final answer, no 100
    c = Conn(g.port, timeout=10)
    st, _, _ = c.send(_head("/key/c", "length", len(data), "Expect: 100-continue\r\n")).answer()
    assert st == 401
    c.close()
    # allowed: 100 Continue first, then the body is wanted and forwarded
    c = Conn(g.port, timeout=10)
    c.send(_head("/key/c", "length", len(data),
                 f"Expect: 100-continue\r\nx-api-key: {mod_key.key}\r\n"))
    st, _, _ = c.answer()
    assert st == 100
    st, _, body = c.send(data).answer()
    got = json.loads(body)
    assert st == 200 and got["length"] == len(data)
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert got["headers"]["x-user-id"] == mod_key.user_id
    assert "expect" not in got["headers"] and "x-api-key" not in got["headers"]
    c.close()


def test_a_client_that_leaves_mid_body_cancels_the_upstream_request(gateway_factory, sink):
    g = _gw(gateway_factory, sink, "gateway-upload-vanish")
    c = Conn(g.port)
    c.send(_head("/up/cut", "length", 64 * MiB))
    for _ in range(4):
        c.send(BLOCK)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not [r for r in sink.records if r["path"] == "/up/cut"]:
        time.sleep(0.05)
    c.close()
    recs = sink.ended("/up/cut")
    assert recs and recs[0]["length"] is None and not recs[0]["complete"], recs


@pytest.mark.parametrize("fault", ["malformed", "too_large"])
def test_a_chunked_body_that_goes_wrong_midway(gateway_factory, sink, fault):
    """Already streaming when the fault comes: 400 or 413, the upstream's connection
    closed (it never sees a complete body)."""
    g = _gw(gateway_factory, sink, f"gateway-upload-{fault}", GATEWAY_MAX_BODY_BYTES=str(3 * MiB))
    c = Conn(g.port)
    c.send(_head("/up/bad", "chunked"))
    c.send(_frame("chunked", BLOCK))
    time.sleep(0.3)
    if fault == "malformed":
        c.send(b"zz\r\n")
        want = 400
    else:
        try:
            for _ in range(4):
                c.send(_frame("chunked", BLOCK))
        except (BrokenPipeError, ConnectionResetError):
            pass
        want = 413
    st, hdrs, body = c.answer()
    assert st == want and hdrs.get("connection") == "close", (st, body[:200])
    assert c.closed(5)
    recs = sink.ended("/up/bad")
    assert recs and not recs[0]["complete"], recs


def test_an_early_upstream_answer_ends_the_exchange(gateway_factory, sink):
    """The upstream answers 413 after the head: relayed, the client's connection closes
    (its body's end is not known), and the upstream connection is not used again."""
    g = _gw(gateway_factory, sink, "gateway-upload-early")
    c = Conn(g.port)
    c.send(_head("/up/early", "length", 64 * MiB))
    try:
        for _ in range(2):
            c.send(BLOCK)
    except (BrokenPipeError, ConnectionResetError):
        pass
    st, _, body = c.answer()
    assert st == 413 and json.loads(body)["early"]
    assert c.closed(5)
    first = next(r for r in sink.records if r["path"] == "/up/early")["conn"]
    c = Conn(g.port)
    st, _, body = c.send(b"GET /up/next HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").answer()
    assert st == 200 and json.loads(body)["conn"] != first
    c.close()


def test_streamed_bodies_keep_alive_and_pipeline(gateway_factory, sink, mod_key):
    """Two streamed uploads (each body sent after a pause) on one connection, with
    identity headers; the second followed at once by a pipelined GET."""
    g = _gw(gateway_factory, sink, "gateway-upload-keepalive")
    c = Conn(g.port)
    for i, framing in enumerate(["length", "chunked"]):
        data = bytes([65 + i]) * 200000
        c.send(_head(f"/key/u{i}", framing, len(data), f"x-api-key: {mod_key.key}\r\n"))
        time.sleep(0.2)
        tail = b"GET /up/piped HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" if i == 1 else b""
        c.send(_frame(framing, data[:100000]))
        time.sleep(0.1)
        c.send(_frame(framing, data[100000:]) + _end(framing) + tail)
        st, _, body = c.answer()
        got = json.loads(body)
        assert st == 200 and got["length"] == len(data), got
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        assert got["headers"]["x-user-id"] == mod_key.user_id
    st, _, body = c.answer()
    assert st == 200 and json.loads(body)["path"] == "/up/piped"
    assert not c.closed(0.3)
    c.close()


def test_a_dead_target_leaves_the_next_one_the_whole_body(gateway_factory, sink,
                                                          dead_upstream_url):
    g = _gw(gateway_factory, sink, "gateway-upload-failover",
            {"prefix": "/two/", "upstream": [dead_upstream_url, sink.url], "auth": ["none"]})
    data = BLOCK * 3
    for i in range(2):      # round-robin: one of the two starts on the dead target
        c = Conn(g.port)
        c.send(_head(f"/two/f{i}", "length", len(data)))
        time.sleep(0.2)
        st, _, body = c.send(data).answer()
        got = json.loads(body)
        assert st == 200 and got["length"] == len(data), got
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        c.close()
