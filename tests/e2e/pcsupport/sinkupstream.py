"""SinkUpstream: a threaded HTTP/1.1 upstream that reads request bodies (Content-Length
or chunked) without keeping them, for the streamed-upload tests
(test_gw_body_stream.py). Every request is answered 200 with JSON
{path, length, sha256, chunked, headers, conn} once its body has all come, except:

  .../slow    (the last path segment) sleeps `slow` seconds after the head before it reads the body
  .../early   answers 413 (keep-alive) right after the head, then reads on

records: one dict per request head read: path, headers, conn, and once known length,
sha256 and complete (False when the connection ended inside the body)."""

import hashlib
import json
import socket
import time

from .pyupstream import PyUpstream


class SinkUpstream(PyUpstream):
    """PyUpstream's listener and threads, with a _serve of its own."""

    def __init__(self, slow=2.0):
        self.slow = slow
        self.records = []
        super().__init__()

    @staticmethod
    def _answer(s, status, doc):
        out = json.dumps(doc).encode()
        s.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (status, len(out), out))

    def _serve(self, s, conn_no):
        rd = _Reader(s)
        try:
            while True:
                head = rd.until(b"\r\n\r\n", 65536)
                if head is None:
                    return
                lines = head.decode("latin-1").split("\r\n")
                _, target, _ = lines[0].split(" ")
                headers = {}
                for ln in lines[1:]:
                    k, _, v = ln.partition(":")
                    headers[k.strip().lower()] = v.strip()
                last = target.split("?")[0].rsplit("/", 1)[-1]
                rec = {"path": target, "headers": headers, "conn": conn_no, "complete": False}
                self.records.append(rec)
                if last == "early":
                    self._answer(s, 413, {"early": True, "conn": conn_no})
                if last == "slow":
                    time.sleep(self.slow)
                h = hashlib.sha256()
                chunked = headers.get("transfer-encoding", "").lower() == "chunked"
                n = rd.chunked(h) if chunked else rd.exactly(int(headers.get("content-length", "0")), h)
                if n is None:
                    rec.update(length=None)
                    return
                rec.update(length=n, sha256=h.hexdigest(), complete=True)
                if last != "early":
                    self._answer(s, 200, {"path": target, "length": n, "sha256": h.hexdigest(),
                                          "chunked": chunked, "headers": headers,
                                          "conn": conn_no})
        except (OSError, ValueError):
            pass
        finally:
            s.close()

    def ended(self, path, timeout=5.0):
        """The records for path once the first of them has ended (its length known,
        None when its connection ended inside the body)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = [r for r in self.records if r["path"] == path]
            if (recs and "length" in recs[0]) or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)

class _Reader:
    """Buffered reads off a socket; None from any read means the peer closed first."""

    def __init__(self, s):
        self.s = s
        self.buf = b""
        s.settimeout(30)

    def _more(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def until(self, sep, limit):
        while sep not in self.buf:
            if len(self.buf) > limit or not self._more():
                return None
        out, _, self.buf = self.buf.partition(sep)
        return out

    def exactly(self, n, h):
        got = 0
        while got < n:
            if not self.buf and not self._more():
                return None
            take = self.buf[:n - got]
            self.buf = self.buf[len(take):]
            h.update(take)
            got += len(take)
        return got

    def chunked(self, h):
        total = 0
        while True:
            ln = self.until(b"\r\n", 4096)
            if ln is None:
                return None
            size = int(ln.split(b";")[0], 16)
            if size == 0:
                while True:
                    ln = self.until(b"\r\n", 65536)
                    if ln is None:
                        return None
                    if ln == b"":
                        return total
            if self.exactly(size, h) is None or self.until(b"\r\n", 2) is None:
                return None
            total += size
