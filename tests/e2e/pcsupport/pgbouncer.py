"""pgbouncer (Debian's) in front of a pcsupport.Postgres, on a free loopback port, in
transaction pooling mode: what teams put between many gateways and one PostgreSQL.
pgbouncer refuses to run as root, so as root it runs as the `postgres` user, like
PostgreSQL itself. Stopped by PID.

    b = PgBouncer(pg, "authsvc"); b.url  ->  postgresql://postgres@127.0.0.1:<port>/authsvc
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .procs import Proc, free_port, tail, wait_until

PGBOUNCER = os.environ.get("PGBOUNCER", shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")


class PgBouncer:
    def __init__(self, pg, dbname: str, *, pool_mode: str = "transaction", pool_size: int = 4):
        self.pg, self.dbname = pg, dbname
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pc-pgbouncer-"))
        if pg.user is not None:
            os.chown(self.dir, pg.user, pg.group)
        self.logfile = self.dir / "pgbouncer.log"
        users = self.dir / "users.txt"
        users.write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text("\n".join([
            "[databases]",
            f"{dbname} = host=127.0.0.1 port={pg.port} dbname={dbname} user=postgres",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1", f"listen_port = {self.port}", "unix_socket_dir =",
            "auth_type = trust", f"auth_file = {users}",
            f"pool_mode = {pool_mode}", f"default_pool_size = {pool_size}",
            "max_client_conn = 400", f"logfile = {self.logfile}",
            "ignore_startup_parameters = extra_float_digits", ""]))
        for f in (users, ini):
            if pg.user is not None:
                os.chown(f, pg.user, pg.group)
        self.proc = Proc([PGBOUNCER, str(ini)], stdout=self.dir / "stdout", stderr=self.dir / "stderr",
                         user=pg.user, group=pg.group, name="pgbouncer", env={"PATH": "/usr/bin:/bin"})
        wait_until(self._up, 15, interval=0.05, what=f"pgbouncer on port {self.port}")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}:\n"
                               f"{tail(self.dir / 'stderr')}\n{tail(self.logfile)}")
        import psycopg2
        try:
            c = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres",
                                 dbname=self.dbname, connect_timeout=2)
        except psycopg2.OperationalError:
            return False
        c.close()
        return True

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def stop(self):
        self.proc.stop(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
