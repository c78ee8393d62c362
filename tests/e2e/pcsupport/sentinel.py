"""Redis Sentinel on loopback (issue 25): a master, one replica and three sentinels
(Debian's redis-sentinel), every one our own process on a free port in a temporary
directory, stopped by PID.

    s = SentinelSet(basedir)        # waits until the sentinels see each other and the replica
    s.env()                          # REDIS_SENTINELS / REDIS_SENTINEL_MASTER for our programs
    s.master                         # pcsupport.Redis of the current master (moves on failover)
    s.kill_master(); s.wait_failover()
    s.stop()
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .procs import Proc, free_port, tail, wait_until
from .redis import Redis, RespClient

REDIS_SENTINEL = os.environ.get("REDIS_SENTINEL", shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel")
MASTER_NAME = "pcmaster"


class SentinelSet:
    def __init__(self, basedir, *, down_after_ms: int = 1000, failover_timeout_ms: int = 4000,
                 n_sentinels: int = 3):
        self.dir = Path(basedir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.down_after_ms = down_after_ms
        self.nodes = [Redis(basedir=str(self.dir / "node1"))]
        self.nodes.append(Redis(basedir=str(self.dir / "node2"),
                                extra_args=["--replicaof", "127.0.0.1", str(self.nodes[0].port)]))
        self.sentinels: list = []
        try:
            wait_until(lambda: self._link_up(self.nodes[1]), 15, what="the replica in sync")
            for i in range(n_sentinels):
                self.sentinels.append(self._start_sentinel(i, failover_timeout_ms))
            wait_until(self._sentinels_ready, 30, interval=0.1,
                       what="the sentinels seeing the replica and each other")
        except BaseException:
            self.stop()
            raise

    # -- processes
    def _start_sentinel(self, i: int, failover_timeout_ms: int):
        port = free_port()
        d = self.dir / f"sentinel{i + 1}"
        d.mkdir(exist_ok=True)
        conf = d / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", "protected-mode no", f"dir {d}",
            f"logfile {d / 'sentinel.log'}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.nodes[0].port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1", ""]))
        proc = Proc([REDIS_SENTINEL, str(conf)], stdout=d / "stdout", stderr=d / "stderr",
                    name=f"redis-sentinel{i + 1}", env={"PATH": "/usr/bin:/bin"})
        wait_until(lambda: proc.poll() is None and self._ping(port), 15, interval=0.05,
                   what=f"sentinel {i + 1} on port {port}")
        return {"port": port, "proc": proc, "dir": d}

    @staticmethod
    def _ping(port) -> bool:
        try:
            with RespClient("127.0.0.1", port, timeout=1.0) as c:
                return c.ping()
        except OSError:
            return False

    @staticmethod
    def _link_up(node) -> bool:
        with node.client(timeout=1.0) as c:
            return b"master_link_status:up" in c.command("INFO", "replication")

    def _ask(self, port, *args):
        with RespClient("127.0.0.1", port, timeout=2.0) as c:
            return c.command("SENTINEL", *args)

    def _sentinels_ready(self) -> bool:
        n = len(self.sentinels)
        for s in self.sentinels:
            try:
                if len(self._ask(s["port"], "replicas", MASTER_NAME)) < 1:
                    return False
                if len(self._ask(s["port"], "sentinels", MASTER_NAME)) < n - 1:
                    return False
            except (OSError, ConnectionError):
                return False
        return True

    # -- what the tests use
    def env(self) -> dict:
        return {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{s['port']}" for s in self.sentinels),
                "REDIS_SENTINEL_MASTER": MASTER_NAME}

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers says."""
        for s in self.sentinels:
            try:
                host, port = self._ask(s["port"], "get-master-addr-by-name", MASTER_NAME)
                return int(port)
            except (OSError, ConnectionError, ValueError, TypeError):
                continue
        return None

    @property
    def master(self) -> Redis:
        port = self.master_port()
        return next(n for n in self.nodes if n.port == port)

    @property
    def url(self) -> str:
        """REDIS_URL for our programs (the host is the sentinels' to say)."""
        return self.nodes[0].url

    def restore(self, timeout: float = 30.0):
        """A node killed by an earlier failover comes back as a replica of the current
        master, so the next failover has somewhere to go."""
        port = self.master_port()
        for n in self.nodes:
            if not n.running:
                n.extra_args = ["--replicaof", "127.0.0.1", str(port)]
                n.start()
                wait_until(lambda: self._link_up(n), timeout, what="the old master as a replica")
        wait_until(self._sentinels_ready, timeout, interval=0.1,
                   what="the sentinels seeing the replica again")

    def kill_master(self) -> Redis:
        m = self.master
        m.kill()
        return m

    def wait_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Seconds until every sentinel names a new master and it takes writes."""
        t0 = time.monotonic()

        def moved():
            ports = set()
            for s in self.sentinels:
                try:
                    ports.add(int(self._ask(s["port"], "get-master-addr-by-name", MASTER_NAME)[1]))
                except (OSError, ConnectionError, ValueError, TypeError):
                    return False
            if len(ports) != 1 or old_port in ports:
                return False
            node = next(n for n in self.nodes if n.port in ports)
            with node.client(timeout=1.0) as c:
                return b"role:master" in c.command("INFO", "replication")
        wait_until(moved, timeout, interval=0.05, what="a failover")
        return time.monotonic() - t0

    def logs(self) -> str:
        return "\n".join(f"--- sentinel {s['port']} ---\n{tail(s['dir'] / 'sentinel.log', 3000)}"
                         for s in self.sentinels)

    def stop(self):
        for s in self.sentinels:
            s["proc"].stop(timeout=10)
        for n in self.nodes:
            n.stop()
