"""redis-server on a free loopback port, a tiny RESP2 client and a pub/sub
subscriber (no redis-py on this machine; no pytest here)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

from .procs import Proc, free_port, tail, wait_until

REDIS_SERVER = os.environ.get("REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server")


class RespError(Exception):
    pass


class RespClient:
    """Minimal blocking RESP2 client over a socket (no redis-py on this machine)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, timeout: float = 5.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def encode(*args) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read_reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read_reply() for _ in range(n)]
        raise RespError(f"bad RESP type byte {line!r}")

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def command(self, *args):
        self.send(*args)
        r = self.read_reply()
        if isinstance(r, RespError):
            raise r
        return r

    __call__ = command

    # conveniences (bytes values; keys may be str)
    def get(self, key):
        return self.command("GET", key)

    def exists(self, key) -> bool:
        return self.command("EXISTS", key) == 1

    def ttl(self, key) -> int:
        return self.command("TTL", key)

    def pttl(self, key) -> int:
        return self.command("PTTL", key)

    def keys(self, pattern="*"):
        out, cursor = [], b"0"
        for _ in range(100000):
            cursor, batch = self.command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            out.extend(batch)
            if cursor in (b"0", "0"):
                break
        return out

    def delete(self, *keys) -> int:
        return self.command("DEL", *keys) if keys else 0

    def ping(self) -> bool:
        return self.command("PING") == "PONG"


class Subscriber:
    """A socket SUBSCRIBEd to one or more channels; collects published messages."""

    def __init__(self, host: str, port: int, *channels, timeout: float = 5.0):
        self.client = RespClient(host, port, timeout=timeout)
        self.client.send("SUBSCRIBE", *channels)
        for _ in channels:
            r = self.client.read_reply()
            if not (isinstance(r, list) and r and r[0] == b"subscribe"):
                raise RespError(f"unexpected subscribe reply {r!r}")
        self.messages: list = []   # (channel:str, data:str), data without "#<seq> "
        self.seqs: list = []       # the "#<seq> " numbers seen, in order (lib/revmsg.h)

    def get_message(self, timeout: float = 1.0):
        """Next message as (channel, data) or None after timeout."""
        self.client.sock.settimeout(max(timeout, 0.001))
        try:
            r = self.client.read_reply()
        except (socket.timeout, TimeoutError):
            return None
        finally:
            self.client.sock.settimeout(self.client.timeout)
        if isinstance(r, list) and len(r) == 3 and r[0] == b"message":
            data = r[2].decode("utf-8", "replace")
            seq, sep, rest = data.partition(" ")
            if data.startswith("#") and sep and seq[1:].isdigit():
                self.seqs.append(int(seq[1:]))
                data = rest
            m = (r[1].decode(), data)
            self.messages.append(m)
            return m
        return None

    def wait_for(self, expected, timeout: float = 5.0):
        """Collect messages until every data value in expected was seen (bounded).

        Returns the set of data values seen."""
        expected = set(expected)
        deadline = time.monotonic() + timeout
        while True:
            seen = {d for _, d in self.messages}
            if expected <= seen:
                return seen
            left = deadline - time.monotonic()
            if left <= 0:
                return seen
            self.get_message(min(left, 0.5))

    def drain(self, timeout: float = 0.3):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.get_message(max(end - time.monotonic(), 0.001))
        return [d for _, d in self.messages]

    def close(self):
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Redis:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self, port: int | None = None, basedir: str | None = None, start: bool = True,
                 extra_args: list | None = None):
        """extra_args: more redis-server options (e.g. ["--replicaof", host, port])."""
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.host = "127.0.0.1"
        self._owned_dir = basedir is None
        self.dir = Path(basedir or tempfile.mkdtemp(prefix="pc-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.proc: Proc | None = None
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def client(self, timeout: float = 5.0) -> RespClient:
        return RespClient(self.host, self.port, timeout=timeout)

    def subscribe(self, *channels, timeout: float = 5.0) -> Subscriber:
        return Subscriber(self.host, self.port, *channels, timeout=timeout)

    def _ping(self) -> bool:
        with self.client(timeout=1.0) as c:
            return c.ping()

    def start(self, timeout: float = 15.0):
        if self.proc is not None and self.proc.running:
            return self
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(self.dir), "--logfile", str(self.logfile),
                "--protected-mode", "no", "--databases", "4", *self.extra_args]
        self.proc = Proc(argv, stdout=self.logfile, stderr=self.logfile, name="redis-server",
                         env={"PATH": "/usr/bin:/bin"})

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{tail(self.logfile)}")
            return self._ping()
        try:
            wait_until(ready, timeout, interval=0.05, what=f"redis on port {self.port}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def stop(self, timeout: float = 10.0):
        if self.proc is None:
            return None
        return self.proc.stop(signal.SIGTERM, timeout=timeout)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()

    def restart(self, timeout: float = 15.0):
        self.stop()
        return self.start(timeout=timeout)

    def cleanup(self):
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
