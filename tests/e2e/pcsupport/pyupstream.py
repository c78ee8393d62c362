"""PyUpstream: a small threaded HTTP/1.1 upstream in Python that records every request
it reads (header lines in order, repeats kept), for the gateway e2e tests that check
exactly what reached the upstream (test_gw_http.py, test_gw_route_exchange.py)."""

import json
import socket
import threading


class PyUpstream:
    """A threaded HTTP/1.1 upstream answering every request with a JSON echo
    {method, path, query, headers, body, conn} and Content-Length, keep-alive. It reads
    Content-Length and chunked request bodies.

    idle_close: a connection idle for that many seconds is closed (quietly).
    serve_per_conn: that many requests are answered per connection; the next one is
    read and the connection closed without an answer, as an upstream closing a
    keep-alive connection just when a request arrives.
    answer_lines: header lines (bytes, each ending in CRLF) added to every answer.
    tls: an ssl.SSLContext (server side): every connection does its TLS handshake first
    (test_gw_upstream_tls.py); handshakes is then the number that succeeded, resumed
    how many of them resumed a session. host: the name put in url. bind, port: where it
    listens (another loopback address, or a port given back after a stop)."""

    def __init__(self, idle_close=None, serve_per_conn=None, answer_lines=b"", tls=None,
                 host="127.0.0.1", bind="127.0.0.1", port=0):
        self.idle_close, self.serve_per_conn = idle_close, serve_per_conn
        self.answer_lines = answer_lines
        self.tls = tls
        self.handshakes = 0
        self.resumed = 0
        self.seen = []              # every request read, echo dicts + "answered"
        self.conns = 0
        self.idle_closes = 0
        self._socks = []
        self._stop = False
        self._ls = socket.create_server((bind, port))
        self._ls.settimeout(0.1)
        self.port = self._ls.getsockname()[1]
        self.url = "%s://%s:%d" % ("https" if tls else "http", host, self.port)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self):
        while not self._stop:
            try:
                s, _ = self._ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            self._socks.append(s)
            t = threading.Thread(target=self._serve, args=(s, self.conns), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, s, conn_no):
        buf, served = b"", 0
        try:
            if self.tls is not None:
                s.settimeout(10)
                s = self.tls.wrap_socket(s, server_side=True)
                self.handshakes += 1
                self.resumed += bool(s.session_reused)
            while True:
                while b"\r\n\r\n" not in buf:
                    s.settimeout(self.idle_close if (self.idle_close and not buf) else 10)
                    try:
                        chunk = s.recv(65536)
                    except socket.timeout:
                        if not buf:
                            self.idle_closes += 1
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                raw_headers = [tuple(p.strip() for p in ln.split(":", 1)) for ln in lines[1:]]
                headers = {k.lower(): v for k, v in raw_headers}
                s.settimeout(10)
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    got = self._chunked(s, buf)
                    if got is None:
                        return
                    body, buf = got
                else:
                    n = int(headers.get("content-length", "0"))
                    while len(buf) < n:
                        chunk = s.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    body, buf = buf[:n], buf[n:]
                path, _, query = target.partition("?")
                e = {"method": method, "path": path, "query": query, "headers": headers,
                     "raw_headers": raw_headers, "body": body.decode("latin-1"), "conn": conn_no}
                answer = self.serve_per_conn is None or served < self.serve_per_conn
                self.seen.append(dict(e, answered=answer))
                if not answer:
                    return
                served += 1
                out = json.dumps(e).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\n" + self.answer_lines + b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(out), b"" if method == "HEAD" else out))
        except OSError:
            pass
        finally:
            s.close()

    @staticmethod
    def _chunked(s, buf):
        """A chunked body from buf and then s: (body, what follows it), or None when
        the connection ends first."""
        body = bytearray()

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
            ln, _, buf = buf.partition(b"\r\n")
            return ln

        while True:
            ln = line()
            if ln is None:
                return None
            size = int(ln.split(b";")[0], 16)
            if size == 0:
                while True:     # trailers, up to the empty line
                    ln = line()
                    if ln is None:
                        return None
                    if ln == b"":
                        return bytes(body), buf
            while len(buf) < size + 2:
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
            body += buf[:size]
            buf = buf[size + 2:]

    def saw(self, token: str) -> list:
        """The requests read whose path, query or body holds token."""
        return [e for e in self.seen if token in e["path"] or token in e["query"] or token in e["body"]]

    def stop(self):
        self._stop = True
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)
        self._ls.close()
