"""A private PostgreSQL cluster on a free loopback port (no pytest here)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .procs import Proc, free_port, run_bounded, tail, wait_until

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def _ensure_postgres_user():
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "postgres"], check=True, timeout=30)
        return pwd.getpwnam("postgres")


class Postgres:
    """A private PostgreSQL cluster: initdb into a temp dir, trust auth on 127.0.0.1.

    As root, initdb and postgres run as the `postgres` system user (created if
    missing) and the temp dir is owned by it; otherwise they run as the caller."""

    def __init__(self, port: int | None = None, basedir: str | None = None, start: bool = True):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.proc: Proc | None = None
        self._owned_dir = basedir is None
        self.dir = Path(basedir or tempfile.mkdtemp(prefix="pc-pg-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.sockdir = self.dir / "sock"
        self.logfile = self.dir / "postgres.log"
        self.user = self.group = None
        if os.geteuid() == 0:
            pw = _ensure_postgres_user()
            self.user = pw.pw_uid
            self.group = pw.pw_gid
            os.chmod(self.dir, 0o700)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.sockdir.mkdir(exist_ok=True)
        if self.user is not None:
            os.chown(self.sockdir, self.user, self.group)
        self._initdb()
        if start:
            self.start()

    def _env(self):
        env = {"PATH": f"{PG_BIN}:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C",
               "HOME": str(self.dir), "TZ": "UTC"}
        return env

    def _initdb(self):
        r = run_bounded([PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                        env=self._env(), timeout=120, user=self.user, group=self.group)
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed ({r.returncode}):\n{r.stdout.decode()}\n{r.stderr.decode()}")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# portcullis e2e harness\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 200\nshared_buffers = 32MB\n"
                    "log_min_messages = warning\nlog_timezone = 'UTC'\ntimezone = 'UTC'\n")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    @property
    def dsn(self) -> str:
        return self.url()

    def _ping(self) -> bool:
        import psycopg2
        c = psycopg2.connect(host=self.host, port=self.port, user="postgres",
                             dbname="postgres", connect_timeout=2)
        try:
            with c.cursor() as cur:
                cur.execute("select 1")
                return cur.fetchone()[0] == 1
        finally:
            c.close()

    def start(self, timeout: float = 30.0):
        if self.proc is not None and self.proc.running:
            return self
        self.proc = Proc([PG_BIN / "postgres", "-D", self.data], env=self._env(),
                         stdout=self.logfile, stderr=self.logfile,
                         user=self.user, group=self.group, name="postgres")

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{tail(self.logfile)}")
            return self._ping()
        try:
            wait_until(ready, timeout, interval=0.1, what=f"postgres on port {self.port}")
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def stop(self, timeout: float = 15.0):
        """Fast shutdown (SIGINT), then SIGQUIT, then SIGKILL of the group; bounded."""
        if self.proc is None:
            return None
        p = self.proc
        if p.running:
            p.send_signal(signal.SIGINT)
            if p.wait(timeout) is None:
                p.send_signal(signal.SIGQUIT)
                if p.wait(5) is None:
                    p.kill()
        rc = p.stop(timeout=5)
        return rc

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            # backends notice postmaster death; make sure the pidfile is gone
            # before a restart, otherwise postgres refuses to start.
            pidfile = self.data / "postmaster.pid"
            try:
                pidfile.unlink()
            except OSError:
                pass

    def restart(self, timeout: float = 30.0):
        self.stop()
        return self.start(timeout=timeout)

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        import psycopg2
        c = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname=dbname,
                             connect_timeout=5)
        c.autocommit = autocommit
        return c

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name (dropping nothing); returns its URL."""
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            c.close()
        return self.url(name)

    def drop_database(self, name: str):
        c = self.connect()
        try:
            with c.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            c.close()

    def cleanup(self):
        """Stop and delete the cluster.  The data is thrown away, so shut down in
        immediate mode (SIGQUIT: no shutdown checkpoint)."""
        if self._owned_dir and self.proc is not None and self.proc.running:
            self.proc.send_signal(signal.SIGQUIT)
            if self.proc.wait(10) is None:
                self.proc.kill()
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


class Replica(Postgres):
    """A streaming replica of `primary` (pg_basebackup -R from a running primary, on its
    own port and directory): read-only, replaying the primary's WAL.

        r = Replica(pg); r.pause_replay(); ...; r.resume_replay(); r.lag_bytes()"""

    def __init__(self, primary: Postgres, port: int | None = None, basedir: str | None = None,
                 start: bool = True):
        self.primary = primary
        super().__init__(port=port, basedir=basedir, start=start)

    def _initdb(self):
        p = self.primary
        r = run_bounded([PG_BIN / "pg_basebackup", "-h", p.host, "-p", str(p.port), "-U", "postgres",
                         "-D", self.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"],
                        env=self._env(), timeout=120, user=self.user, group=self.group)
        if r.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed ({r.returncode}):\n{r.stderr.decode()}")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# portcullis e2e harness: the replica\n"
                    f"port = {self.port}\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    "hot_standby = on\n")

    def _sql(self, q: str):
        c = self.connect("postgres")
        try:
            with c.cursor() as cur:
                cur.execute(q)
                return cur.fetchone()[0] if cur.description else None
        finally:
            c.close()

    def pause_replay(self):
        self._sql("select pg_wal_replay_pause()")

    def resume_replay(self):
        self._sql("select pg_wal_replay_resume()")

    def promote(self, timeout: float = 30.0):
        """Makes it the primary (pg_promote) and waits until it takes writes."""
        self._sql("select pg_promote()")
        wait_until(lambda: self._sql("select not pg_is_in_recovery()"), timeout, interval=0.05,
                   what="the promoted replica taking writes")

    def lag_bytes(self) -> int:
        """WAL received but not replayed yet."""
        return int(self._sql("select pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                             "pg_last_wal_replay_lsn())") or 0)

    def caught_up(self) -> bool:
        """Has replayed everything the primary has written so far."""
        pc = self.primary.connect("postgres")
        try:
            with pc.cursor() as cur:
                cur.execute("select pg_current_wal_insert_lsn()::text")
                want = cur.fetchone()[0]
        finally:
            pc.close()
        return bool(self._sql(f"select pg_last_wal_replay_lsn() >= '{want}'::pg_lsn"))
