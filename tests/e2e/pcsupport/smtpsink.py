"""SmtpSink: a real SMTP server on a loopback port that keeps every message it
accepts, for the e2e tests of authsvc's mail (email verification, password reset).

The server is tools/mail_sink.py (Debian's python3-aiosmtpd), run as
its own process with /usr/bin/python3 through procs.Proc and stopped by PID.  It
writes each message into <basedir>/mail/ as <seq>.eml (raw bytes) + <seq>.json
(envelope), both atomically, before answering 250; this module reads them back
and parses them with the email package (policy=email.policy.default).

    sink = SmtpSink(tmp / "smtp", fail_rcpt=["bounce@example.com"],
                    require_auth="user:pass", tls_cert=cert, tls_key=key)
    sink.start()                      # prints "ready <port>" -> returns
    env["SMTP_URL"] = sink.url        # smtp://127.0.0.1:<port>
    [m] = sink.wait_for("alice@example.com")
    m.subject, m.text, m.html, sink.links(m)
    sink.stop(); sink.start()         # same port, same directory, seq continues

No pytest here (the fixture `smtp_sink` is in tests/e2e/conftest.py).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Proc, free_port, tail

PYTHON = "/usr/bin/python3"        # Debian's python: python3-aiosmtpd lives there
SERVER = Path(__file__).resolve().parents[3] / "tools" / "mail_sink.py"
START_TIMEOUT = 15.0

_URL_RE = re.compile(r"https?://[^\s<>\"'`]+")
_URL_TRAILING = ".,;:!?)]}"


@dataclass
class SinkMessage:
    """One message the sink accepted.

    seq             its number in the sink's directory (1, 2, ... in arrival order)
    raw             the message bytes as received (dot-stuffing undone)
    msg             the parsed email.message.EmailMessage (policy=default)
    mail_from       the envelope sender (MAIL FROM)
    envelope_rcpts  the envelope recipients accepted (RCPT TO), as given
    tls             True when it came over a STARTTLS'd connection
    auth_login      the AUTH user name the client authenticated as, or None
    to              the To header (str, '' when absent); to_addrs: its addresses, lower case
    subject         the Subject header (str, '' when absent)
    text, html      the text/plain and text/html bodies, decoded, line ends as "\n"
                    (None when absent; .raw and .msg keep the CRLFs of the wire)
    """

    seq: int
    raw: bytes
    msg: email.message.EmailMessage
    mail_from: str
    envelope_rcpts: list
    tls: bool = False
    auth_login: str | None = None
    to: str = ""
    to_addrs: list = field(default_factory=list)
    subject: str = ""
    text: str | None = None
    html: str | None = None

    @classmethod
    def parse(cls, seq: int, raw: bytes, meta: dict) -> "SinkMessage":
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        to = str(msg.get("To", "") or "")
        addrs = [a.lower() for _, a in email.utils.getaddresses([to]) if a]
        return cls(seq=seq, raw=raw, msg=msg, mail_from=meta.get("mail_from") or "",
                   envelope_rcpts=list(meta.get("rcpt_tos") or []), tls=bool(meta.get("tls")),
                   auth_login=meta.get("auth_login"), to=to, to_addrs=addrs,
                   subject=str(msg.get("Subject", "") or ""),
                   text=_body(msg, "plain"), html=_body(msg, "html"))

    def header(self, name: str, default=None):
        v = self.msg.get(name)
        return default if v is None else str(v)

    def is_for(self, address: str) -> bool:
        """address is among the To header's addresses or the envelope recipients."""
        a = address.lower()
        return a in self.to_addrs or a in (r.lower() for r in self.envelope_rcpts)

    def __repr__(self) -> str:
        return (f"<SinkMessage #{self.seq} from={self.mail_from!r} rcpts={self.envelope_rcpts!r} "
                f"subject={self.subject!r}>")


def _body(msg, subtype: str):
    part = msg.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    return part.get_content().replace("\r\n", "\n")


def links_in(text: str | None) -> list:
    """Every http(s) URL in text, in order (trailing punctuation not included)."""
    out = []
    for m in _URL_RE.finditer(text or ""):
        out.append(m.group(0).rstrip(_URL_TRAILING))
    return out


class SmtpSink:
    """An SMTP server on 127.0.0.1:<port> keeping every message (see the module doc).

    basedir: a directory for its files (mail/, smtpsink.stdout, smtpsink.stderr);
    None = a new temp dir, removed by cleanup().  port: None = a free port, chosen
    once, so a restart after stop() listens on the same port.
    Options: fail_rcpt (an address or a list: RCPT TO answered 550), require_auth
    ("user:pass": AUTH PLAIN/LOGIN required, no TLS needed), tls_cert + tls_key
    (STARTTLS offered), require_tls (STARTTLS required before anything else).
    """

    def __init__(self, basedir=None, port=None, *, fail_rcpt=None, require_auth=None,
                 tls_cert=None, tls_key=None, require_tls=False):
        self._owned_dir = basedir is None
        self.basedir = Path(basedir or tempfile.mkdtemp(prefix="pc-smtp-"))
        self.basedir.mkdir(parents=True, exist_ok=True)
        self.maildir = self.basedir / "mail"
        self.maildir.mkdir(exist_ok=True)
        self.stdout_path = self.basedir / "smtpsink.stdout"
        self.stderr_path = self.basedir / "smtpsink.stderr"
        self.port = port or free_port()
        if isinstance(fail_rcpt, str):
            fail_rcpt = [fail_rcpt]
        self.fail_rcpt = list(fail_rcpt or [])
        self.require_auth = require_auth
        self.tls_cert, self.tls_key, self.require_tls = tls_cert, tls_key, require_tls
        self.proc = None
        self.starts = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def argv(self) -> list:
        a = [PYTHON, SERVER, "--port", self.port, "--dir", self.maildir]
        for r in self.fail_rcpt:
            a += ["--fail-rcpt", r]
        if self.require_auth:
            a += ["--require-auth", self.require_auth]
        if self.tls_cert:
            a += ["--tls-cert", self.tls_cert, "--tls-key", self.tls_key or self.tls_cert]
            if self.require_tls:
                a += ["--require-tls"]
        return a

    def logs(self, n: int = 3000) -> str:
        return (f"--- {self.stderr_path} (tail) ---\n{tail(self.stderr_path, n)}"
                f"\n--- {self.stdout_path} (tail) ---\n{tail(self.stdout_path, 500)}")

    def _spawn(self):
        self.proc = Proc(self.argv(), stdout=self.stdout_path, stderr=self.stderr_path,
                         name="smtpsink", env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})

    def start(self, timeout: float = START_TIMEOUT):
        """Start the server (again, after stop(): same port, same directory).  Bounded;
        a bind failure (the port still held a moment after a stop) is retried."""
        if self.running:
            return self
        want = f"ready {self.port}"
        deadline = time.monotonic() + timeout
        while True:
            # each start's "ready" line is told apart by counting them
            seen = tail(self.stdout_path, 1 << 20).count(want)
            err_at = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
            self._spawn()
            while True:
                if tail(self.stdout_path, 1 << 20).count(want) > seen:
                    return self
                if self.proc.poll() is not None or time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
            rc = self.proc.poll()
            self.kill()
            err = self.stderr_path.read_bytes()[err_at:].decode(errors="replace")
            if rc is not None and "Address already in use" in err and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            what = f"exited with {rc}" if rc is not None else f"not ready after {timeout}s"
            raise RuntimeError(f"smtpsink on 127.0.0.1:{self.port} {what}:\n{err[-3000:]}")

    def stop(self, timeout: float = 10.0):
        """SIGTERM by PID, bounded wait (then SIGKILL).  Messages stay on disk."""
        if self.proc is None:
            return None
        return self.proc.stop(signal.SIGTERM, timeout=timeout)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()

    def cleanup(self):
        self.stop()
        if self._owned_dir:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- reading what arrived ------------------------------------------------

    def messages(self, to: str | None = None) -> list:
        """Every message accepted so far, in arrival order (only those for `to`,
        matched against the To header and the envelope recipients, when given)."""
        out = []
        files = [(int(p.stem), p) for p in self.maildir.glob("*.eml") if p.stem.isdigit()]
        for seq, p in sorted(files):
            try:
                raw = p.read_bytes()
                meta = json.loads(p.with_suffix(".json").read_text())
            except (OSError, ValueError):
                continue        # cleared under our feet
            m = SinkMessage.parse(seq, raw, meta)
            if to is None or m.is_for(to):
                out.append(m)
        return out

    def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list:
        """The messages for `to` once at least `count` have arrived; TimeoutError
        (naming what did arrive) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages(to)
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                arrived = self.messages()
                desc = "; ".join(f"#{m.seq} to={m.envelope_rcpts} subject={m.subject!r}"
                                 for m in arrived) or "nothing"
                state = "running" if self.running else "NOT running"
                raise TimeoutError(f"smtpsink on port {self.port} ({state}): {len(got)} of {count} "
                                   f"message(s) for {to!r} after {timeout}s; arrived: {desc}")
            time.sleep(0.05)

    def assert_none(self, to: str | None = None, wait: float = 0.0):
        """No message (for `to`) arrived, after waiting `wait` seconds."""
        if wait:
            time.sleep(wait)
        got = self.messages(to)
        assert not got, f"smtpsink: unexpected message(s){' for ' + to if to else ''}: {got}"

    @staticmethod
    def links(msg) -> list:
        """Every http(s) URL in the message's text/plain part (msg: a SinkMessage or a str)."""
        return links_in(msg if isinstance(msg, str) else msg.text)

    def clear(self):
        """Forget every message so far (new ones keep counting up)."""
        for p in list(self.maildir.iterdir()):
            if p.suffix in (".eml", ".json"):
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
