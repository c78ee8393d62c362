"""DnsServer: a real DNS server over UDP on a free loopback port (RFC 1035 messages, built
and parsed here), answering A records from a table the test changes as it runs, with the
TTL it is told, AAAA with no records, and NXDOMAIN for names it does not know. It counts
the questions it was asked, per (name, type), for the gateway's resolver tests
(test_gw_targets.py). silent: questions are read and never answered (a resolver that is
down)."""

import socket
import struct
import threading

TYPE_A, TYPE_AAAA = 1, 28


class DnsServer:
    def __init__(self, silent=False):
        self.records = {}           # name (lower case) -> ([IPv4 strings], ttl)
        self.asked = {}             # (name, qtype) -> count
        self.silent = silent
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def set(self, name, addrs, ttl=1):
        with self._lock:
            self.records[name.lower()] = (list(addrs), ttl)

    def remove(self, name):
        with self._lock:
            self.records.pop(name.lower(), None)

    def count(self, name, qtype=TYPE_A) -> int:
        with self._lock:
            return self.asked.get((name.lower(), qtype), 0)

    @staticmethod
    def _question(msg):
        """(name, qtype, end offset) of the first question."""
        i, labels = 12, []
        while True:
            n = msg[i]
            if n == 0:
                i += 1
                break
            if n & 0xC0:
                raise ValueError("compressed question")
            labels.append(msg[i + 1:i + 1 + n].decode("ascii").lower())
            i += 1 + n
        qtype, _ = struct.unpack("!HH", msg[i:i + 4])
        return ".".join(labels), qtype, i + 4

    def _answer(self, msg):
        qid, flags = struct.unpack("!HH", msg[:4])
        name, qtype, end = self._question(msg)
        with self._lock:
            self.asked[(name, qtype)] = self.asked.get((name, qtype), 0) + 1
            rec = self.records.get(name)
        question = msg[12:end]
        rd = flags & 0x0100
        if rec is None:
            return struct.pack("!HHHHHH", qid, 0x8080 | rd | 3, 1, 0, 0, 0) + question
        addrs, ttl = rec
        answers = b""
        count = 0
        if qtype == TYPE_A:
            for a in addrs:
                answers += struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, ttl, 4) + socket.inet_aton(a)
                count += 1
        return struct.pack("!HHHHHH", qid, 0x8080 | rd, 1, count, 0, 0) + question + answers

    def _serve(self):
        while not self._stop:
            try:
                msg, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.silent or len(msg) < 17:
                continue
            try:
                out = self._answer(msg)
            except (ValueError, IndexError, struct.error, UnicodeDecodeError):
                continue
            try:
                self._sock.sendto(out, peer)
            except OSError:
                pass

    def stop(self):
        self._stop = True
        self._thread.join(timeout=5)
        self._sock.close()
