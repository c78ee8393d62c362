"""Self-test of pcsupport.SmtpSink (the SMTP server the mail tests send to): Python's
smtplib against a real sink process on a loopback port.  Nothing of Portcullis runs."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import pytest

import pcsupport as H

FROM = "noreply@portcullis.test"


def _mail(to, subject="Hello", text=None, html=None, cte="base64"):
    m = EmailMessage()
    m["From"] = f"Portcullis <{FROM}>"
    m["To"] = to
    m["Subject"] = subject
    m.set_content(text or "plain body\n", cte=cte)
    if html is not None:
        m.add_alternative(html, subtype="html", cte=cte)
    return m


def _smtp(sink, timeout=10):
    return smtplib.SMTP("127.0.0.1", sink.port, timeout=timeout)


def test_plain_message_arrives_and_parses(smtp_sink):
    assert smtp_sink.url == f"smtp://127.0.0.1:{smtp_sink.port}"
    link = "https://app.example.test/reset-password/abc123?callbackURL=%2Fdone&x=1"
    text = f"Reset your password:\n{link}\n\nOr ignore this (see http://help.example.test/faq).\n"
    html = f'<p>Reset your password: <a href="{link.replace("&", "&amp;")}">here</a> — ünïcode</p>'
    msg = _mail("Alice <alice@example.test>", subject="Réinitialiser le mot de passe", text=text, html=html)
    with _smtp(smtp_sink) as c:
        refused = c.send_message(msg, from_addr=FROM, to_addrs=["alice@example.test", "Bcc@Example.test"])
    assert refused == {}
    [m] = smtp_sink.wait_for("alice@example.test")
    assert m.msg.get_content_type() == "multipart/alternative"
    assert [p.get("Content-Transfer-Encoding") for p in m.msg.iter_parts()] == ["base64", "base64"]
    assert m.to == "Alice <alice@example.test>" and m.to_addrs == ["alice@example.test"]
    assert m.subject == "Réinitialiser le mot de passe"
    assert m.text == text and m.html.rstrip("\n") == html
    assert m.mail_from == FROM and m.envelope_rcpts == ["alice@example.test", "Bcc@Example.test"]
    assert not m.tls and m.auth_login is None
    assert smtp_sink.links(m) == [link, "http://help.example.test/faq"]
    assert b"Content-Transfer-Encoding: base64" in m.raw and link.encode() not in m.raw
    # an envelope-only recipient (Bcc) finds it too, case-insensitively
    assert [g.seq for g in smtp_sink.wait_for("bcc@example.test")] == [m.seq]
    assert smtp_sink.messages("nobody@example.test") == []
    # both files are on disk, written whole
    assert sorted(p.name for p in smtp_sink.maildir.iterdir()) == ["1.eml", "1.json"]

    # a second one counts up; clear() forgets both
    with _smtp(smtp_sink) as c:
        c.send_message(_mail("alice@example.test", subject="2", cte="quoted-printable"))
    got = smtp_sink.wait_for("alice@example.test", count=2)
    assert [g.subject for g in got] == ["Réinitialiser le mot de passe", "2"]
    assert got[1].text == "plain body\n" and got[1].html is None
    smtp_sink.clear()
    assert smtp_sink.messages() == []


def test_wait_for_times_out_naming_what_arrived(smtp_sink):
    with _smtp(smtp_sink) as c:
        c.send_message(_mail("bob@example.test", subject="for bob"))
    with pytest.raises(TimeoutError) as e:
        smtp_sink.wait_for("carol@example.test", timeout=0.5)
    assert "carol@example.test" in str(e.value) and "for bob" in str(e.value)


def test_fail_rcpt_is_a_permanent_550(smtp_sink_factory):
    sink = smtp_sink_factory(fail_rcpt="bounce@example.test")
    with _smtp(sink) as c:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            c.send_message(_mail("bounce@example.test"), to_addrs=["Bounce@example.test"])
        assert e.value.recipients["Bounce@example.test"][0] == 550
        # the others on the same message still go through
        refused = c.send_message(_mail("ok@example.test, bounce@example.test"),
                                 to_addrs=["ok@example.test", "bounce@example.test"])
        assert refused["bounce@example.test"][0] == 550
    [m] = sink.wait_for("ok@example.test")
    assert m.envelope_rcpts == ["ok@example.test"]
    # the To header names it, so messages(to) matches it; the envelope did not take it
    assert [g.seq for g in sink.messages("bounce@example.test")] == [m.seq]


def test_stop_then_start_on_the_same_port(smtp_sink):
    port = smtp_sink.port
    with _smtp(smtp_sink) as c:
        c.send_message(_mail("dave@example.test", subject="before"))
    smtp_sink.wait_for("dave@example.test")
    pid = smtp_sink.proc.pid
    assert smtp_sink.stop() == 0 and not smtp_sink.running
    with pytest.raises(OSError):          # ConnectionRefusedError: nothing listens now
        smtplib.SMTP("127.0.0.1", port, timeout=2)
    smtp_sink.start()
    assert smtp_sink.port == port and smtp_sink.running and smtp_sink.proc.pid != pid
    with _smtp(smtp_sink) as c:
        c.send_message(_mail("dave@example.test", subject="after"))
    got = smtp_sink.wait_for("dave@example.test", count=2)
    assert [(g.seq, g.subject) for g in got] == [(1, "before"), (2, "after")]


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_auth_required(smtp_sink_factory, mech):
    sink = smtp_sink_factory(require_auth="mailer:s3cret pass")
    with _smtp(sink) as c:
        c.ehlo()
        assert "PLAIN" in c.esmtp_features["auth"] and "LOGIN" in c.esmtp_features["auth"]
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            c.send_message(_mail("erin@example.test"))
        assert e.value.smtp_code == 530
        c.user, c.password = "mailer", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            c.auth(mech, getattr(c, "auth_" + mech.lower()))
        assert e.value.smtp_code == 535
    with _smtp(sink) as c:
        c.ehlo()
        c.user, c.password = "mailer", "s3cret pass"
        code, _ = c.auth(mech, getattr(c, "auth_" + mech.lower()), initial_response_ok=(mech == "PLAIN"))
        assert code == 235
        c.send_message(_mail("erin@example.test"))
    [m] = sink.wait_for("erin@example.test")
    assert m.auth_login == "mailer" and not m.tls


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("smtp-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    r = H.run_bounded(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                       "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                       "-days", "2", "-keyout", key, "-out", cert], timeout=30)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return cert, key


def test_starttls(smtp_sink_factory, self_signed):
    cert, key = self_signed
    sink = smtp_sink_factory(tls_cert=cert, tls_key=key, require_auth="u:p")
    ctx = ssl.create_default_context(cafile=str(cert))      # verifies the name (IP SAN) too
    with _smtp(sink) as c:
        c.ehlo()
        assert c.has_extn("starttls")
        assert c.has_extn("auth")          # offered without TLS too (auth_require_tls=False)
        code, _ = c.starttls(context=ctx)
        assert code == 220 and isinstance(c.sock, ssl.SSLSocket)
        c.ehlo()
        assert not c.has_extn("starttls")
        c.login("u", "p")
        c.send_message(_mail("frank@example.test", subject="over tls"))
    [m] = sink.wait_for("frank@example.test")
    assert m.tls and m.auth_login == "u" and m.subject == "over tls"
    # plain (no STARTTLS) still works when TLS is not required
    with _smtp(sink) as c:
        c.login("u", "p")
        c.send_message(_mail("frank@example.test", subject="plain"))
    assert [g.tls for g in sink.wait_for("frank@example.test", count=2)] == [True, False]


def test_require_tls(smtp_sink_factory, self_signed):
    cert, key = self_signed
    sink = smtp_sink_factory(tls_cert=cert, tls_key=key, require_tls=True)
    with _smtp(sink) as c:
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            c.send_message(_mail("gina@example.test"))
        assert e.value.smtp_code == 530
    with _smtp(sink) as c:
        c.starttls(context=ssl.create_default_context(cafile=str(cert)))
        c.send_message(_mail("gina@example.test"))
    assert sink.wait_for("gina@example.test")[0].tls
