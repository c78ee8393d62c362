"""An HTTP/2 client for the tests (python3-h2 over Python's ssl, ALPN h2), able to send
what a well-behaved client sends and, frame by frame, what an attacker would.

    with H2Client(port, cafile) as c:
        sid = c.request("GET", "/x", {"cookie": ...})
        resp = c.response(sid)       # .status, .headers (dict), .body, .reset (error code)

Every wait is bounded by `timeout`; nothing but 127.0.0.1 is ever reached."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


@dataclass
class Response:
    status: int | None = None
    headers: dict = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None            # the RST_STREAM error code, when reset


class H2Client:
    def __init__(self, port: int, cafile, *, server_hostname: str = "localhost",
                 timeout: float = 10, window: int | None = None, auto_ack: bool = True):
        ctx = ssl.create_default_context(cafile=str(cafile))
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        self.alpn = self.sock.selected_alpn_protocol()
        self.timeout = timeout
        self.auto_ack = auto_ack
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_inbound_headers=False))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.flush()
        self.resp: dict[int, Response] = {}
        self.terminated = None           # the GOAWAY's error code, once one came
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def request(self, method: str, path: str, headers: dict | None = None,
                body: bytes | None = None, authority: str = "localhost",
                open_body: bool = False) -> int:
        """Opens a stream: ended with the head unless body is given (sent, then ended)
        or open_body (the caller sends it with send_body)."""
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":path", path), (":scheme", "https"),
              (":authority", authority)] + [(k.lower(), v) for k, v in (headers or {}).items()]
        self.conn.send_headers(sid, hs, end_stream=body is None and not open_body)
        self.resp[sid] = Response()
        self.flush()
        if body is not None:
            self.send_body(sid, body, end=True)
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True):
        """Sends body on sid as the windows allow, reading what comes meanwhile."""
        off = 0
        deadline = time.monotonic() + self.timeout
        while off < len(body):
            room = min(self.conn.local_flow_control_window(sid),
                       self.conn.max_outbound_frame_size)
            if room <= 0:
                if time.monotonic() > deadline:
                    raise TimeoutError("no window to send the body")
                self.pump(0.5)
                continue
            chunk = body[off:off + room]
            self.conn.send_data(sid, chunk)
            off += len(chunk)
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, wait: float = 0.5) -> bool:
        """Reads once (up to wait seconds) and handles the events: False when the
        connection is closed."""
        if self.closed:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return True
        except (ConnectionError, ssl.SSLError, OSError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return False
        for ev in events:
            r = self.resp.setdefault(getattr(ev, "stream_id", 0) or 0, Response())
            if isinstance(ev, h2.events.ResponseReceived):
                hd = dict(ev.headers)
                r.status = int(hd.pop(":status"))
                r.headers = hd
            elif isinstance(ev, h2.events.DataReceived):
                r.body += ev.data
                if self.auto_ack and ev.flow_controlled_length:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                r.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                r.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev.error_code
        try:
            self.flush()
        except OSError:
            self.closed = True
        return True

    def response(self, sid: int) -> Response:
        """Reads until sid's answer ended or was reset (or the connection went)."""
        deadline = time.monotonic() + self.timeout
        while True:
            r = self.resp[sid]
            if r.ended or r.reset is not None or self.closed:
                return r
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {sid}: no whole answer in {self.timeout} s")
            self.pump(0.5)

    def ack(self, sid: int, n: int):
        """Opens sid's and the connection's windows by n (when auto_ack is off)."""
        self.conn.acknowledge_received_data(n, sid)
        self.flush()

    def wait_closed(self, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pump(0.5):
                return True
        return False
