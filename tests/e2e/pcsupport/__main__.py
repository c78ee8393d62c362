"""Self-test of the process helpers (run by hand, from tests/e2e):

    /usr/bin/python3 -m pcsupport selftest
"""

import sys
import time

from . import procs
from .betterauth import scrypt_hash, scrypt_verify, token_hash
from .postgres import Postgres
from .redis import Redis, RespError

_LIVE_LOCK, _LIVE = procs._LIVE_LOCK, procs._LIVE


def _selftest():
    t0 = time.monotonic()
    with Postgres() as pg:
        print(f"postgres up on {pg.port} in {time.monotonic() - t0:.1f}s (pid {pg.proc.pid})")
        url = pg.create_database("selftest")
        c = pg.connect("selftest")
        with c.cursor() as cur:
            cur.execute("select current_user, version()")
            print("  ", cur.fetchone()[0], url)
        c.close()
        pid = pg.proc.pid
        pg.kill()
        assert not pg.running
        pg.start()
        print(f"  killed {pid} and restarted as {pg.proc.pid}")
        pg.restart()
        print(f"  restarted cleanly as {pg.proc.pid}")
        assert pg.connect("selftest")
    with Redis() as rd:
        print(f"redis up on {rd.port} (pid {rd.proc.pid})")
        with rd.client() as c, rd.subscribe("pc:revoked") as sub:
            assert c.command("SET", "pc:s:x", "v", "EX", 100) == "OK"
            assert c.get("pc:s:x") == b"v" and 0 < c.ttl("pc:s:x") <= 100
            assert c.keys("pc:*") == [b"pc:s:x"]
            assert c.delete("pc:s:x") == 1 and not c.exists("pc:s:x")
            assert c.command("PUBLISH", "pc:revoked", "hash1") == 1
            assert "hash1" in sub.wait_for({"hash1"}, timeout=3)
            assert sub.get_message(0.2) is None
            try:
                c.command("NOPE")
                raise AssertionError("expected RespError")
            except RespError:
                pass
        rd.stop()
        assert not rd.running
        rd.start()
        with rd.client() as c:
            assert c.ping()
        print("  stop/start ok")
    assert token_hash("abc") == "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    h = scrypt_hash("ﬁnancial")
    assert scrypt_verify("financial", h)
    with _LIVE_LOCK:
        assert not _LIVE, _LIVE
    print(f"selftest ok in {time.monotonic() - t0:.1f}s")



if __name__ == "__main__":
    if sys.argv[1:] == ["selftest"]:
        _selftest()
    else:
        print(__doc__)
