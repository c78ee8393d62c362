"""A mail sink: the SMTP server of `make run` (no SMTP_URL) and of the e2e tests
(tests/e2e/pcsupport/smtpsink.py), run as its own process:

    /usr/bin/python3 tools/mail_sink.py --port N --dir DIR [--fail-rcpt ADDR]...
        [--require-auth USER:PASS] [--tls-cert CERT --tls-key KEY] [--require-tls]

Debian's python3-aiosmtpd: aiosmtpd's SMTP protocol class served by
loop.create_server on 127.0.0.1 only (no Controller thread).  Every message
accepted is written into DIR as <seq>.json ({"seq", "mail_from", "rcpt_tos",
"tls", "auth_login", "peer"}) and then <seq>.eml (the message bytes as received,
dot-stuffing undone), each through a temp file and rename, so a reader that sees
<seq>.eml sees the whole message and its .json; only then the answer is 250.
seq continues after the highest one already in DIR (a restart on the same DIR
does not overwrite).

--fail-rcpt ADDR (repeatable, case-insensitive): RCPT TO:<ADDR> is answered
  "550 5.1.1 mailbox unavailable" (a permanent failure).
--require-auth USER:PASS: AUTH PLAIN / LOGIN offered without TLS
  (auth_require_tls=False) and required before MAIL (530 otherwise); other
  credentials get 535.
--tls-cert/--tls-key: STARTTLS offered (not required unless --require-tls).

Prints "ready <port>" on stdout once listening (--port 0 = an ephemeral port).
SIGTERM/SIGINT: stop listening, exit 0.  Logs (aiosmtpd, INFO) go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def _next_seq(d: str) -> int:
    top = 0
    for name in os.listdir(d):
        stem, dot, ext = name.partition(".")
        if dot and ext in ("eml", "json") and stem.isdigit():
            top = max(top, int(stem))
    return top + 1


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


class Handler:
    def __init__(self, directory: str, fail_rcpts):
        self.dir = directory
        self.fail = {a.lower() for a in fail_rcpts}
        self.seq = _next_seq(directory)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.fail:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        seq = self.seq
        self.seq += 1
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        meta = {"seq": seq, "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                "tls": session.ssl is not None, "auth_login": login,
                "peer": list(session.peer) if session.peer else None}
        raw = envelope.original_content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        base = os.path.join(self.dir, str(seq))
        _write_atomic(base + ".json", json.dumps(meta).encode())
        _write_atomic(base + ".eml", raw)
        return f"250 OK queued as {seq}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--fail-rcpt", action="append", default=[])
    ap.add_argument("--require-auth", metavar="USER:PASS")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--require-tls", action="store_true")
    a = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.makedirs(a.dir, exist_ok=True)
    handler = Handler(a.dir, a.fail_rcpt)

    tls_context = None
    if a.tls_cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(a.tls_cert, a.tls_key or a.tls_cert)

    kw = {}
    if a.require_auth:
        user, sep, password = a.require_auth.partition(":")
        if not sep:
            ap.error("--require-auth wants USER:PASS")
        want = LoginPassword(user.encode(), password.encode())

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and auth_data == want
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)
        kw.update(auth_required=True, auth_require_tls=False, authenticator=authenticator)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(handler, hostname="smtpsink.localhost", ident="portcullis-smtpsink",
                    tls_context=tls_context, require_starttls=a.require_tls and tls_context is not None,
                    timeout=60, loop=loop, **kw)

    server = loop.run_until_complete(
        loop.create_server(factory, host="127.0.0.1", port=a.port, reuse_address=True))
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"ready {port}\n")
    sys.stdout.flush()
    try:
        loop.run_until_complete(stop.wait())
    finally:
        server.close()
        try:
            loop.run_until_complete(asyncio.wait_for(server.wait_closed(), 2))
        except asyncio.TimeoutError:
            pass
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
