"""Helpers for the open-file-limit and connection-cap tests of authsvc and the gateway
(test_fd_limits.py, gateway/test_gw_fd_limits.py): a server's CPU time and open
descriptors from /proc, its RLIMIT_NOFILE lowered while it runs, idle connections
from a chosen loopback address, one raw HTTP exchange, a metric read from /metrics."""

from __future__ import annotations

import os
import re
import resource
import socket
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def limit_fds(pid: int, spare: int) -> int:
    """Sets the process's soft RLIMIT_NOFILE to what it has open plus spare; returns it."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    n = open_fds(pid) + spare
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (n, hard))
    return n


def restore_fds(pid: int, n: int = 4096):
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(n, hard), hard))


def idle_conns(port: int, n: int, src: str = "127.0.0.1", timeout: float = 2.0) -> list:
    """n connections that send nothing (connect() completes from the kernel's backlog
    whether or not the server accepts). Stops early when a connect fails."""
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.bind((src, 0))
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            break
        out.append(s)
    return out


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def exchange(port: int, data: bytes, src: str = "127.0.0.1", timeout: float = 5.0):
    """Sends data on a new connection from src and reads until the server closes, a
    whole Content-Length answer is in, or timeout. Returns (status|None, headers, body)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        try:
            s.sendall(data)
        except OSError:
            pass
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout, TimeoutError):
                break
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    finally:
        s.close()
    if not buf.startswith(b"HTTP/"):
        return None, {}, buf
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    hdrs = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.strip().lower().decode()] = v.strip().decode()
    return status, hdrs, body


def get(port: int, path: str, src: str = "127.0.0.1", timeout: float = 5.0):
    return exchange(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                    src=src, timeout=timeout)


def metric(text: str, name: str, labels: str = "") -> float:
    """The value of name{labels} in Prometheus text (labels as written, e.g. 'reason="per_ip"')."""
    key = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    raise KeyError(key)


def file_size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def wait_for(pred, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)
