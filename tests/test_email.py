"""SMTP: the digest sent to a real local server (aiosmtpd), parsed back; and the faults a mail server can have."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from datetime import date, datetime, timezone
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from monitor.notify.digest import build_digest, to_email
from monitor.notify.email import Mailer, MailError
from tests.test_digest import STORIES, Links

NOW = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)
SENDER = "Monitor <monitor@example.org>"
RECIPIENTS = ["analyst@example.org", "desk@example.org"]


class Recorder:
    """An aiosmtpd handler that keeps what it received; refuses recipients at refused.example."""

    def __init__(self):
        self.envelopes: list = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd's hook)
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"monitor", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


def serve(recorder: Recorder, **options) -> Controller:
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Recorder]]:
    recorder = Recorder()
    controller = serve(recorder)
    yield controller, recorder
    controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is absent")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def message(recipients=RECIPIENTS):
    digest = build_digest(STORIES, day=date(2026, 11, 22), topic="china-surveillance-bans", now=NOW, archive_url="https://monitor.example")
    return digest, to_email(digest, sender=SENDER, recipients=recipients)


def received(recorder: Recorder):
    assert len(recorder.envelopes) == 1
    return BytesParser(policy=policy.default).parsebytes(recorder.envelopes[0].content)


def test_the_digest_arrives_whole(smtp):
    controller, recorder = smtp
    digest, sent = message()
    Mailer(controller.hostname, controller.port).send(sent)
    assert recorder.envelopes[0].rcpt_tos == RECIPIENTS and recorder.envelopes[0].mail_from == "monitor@example.org"
    mail = received(recorder)
    assert mail["Subject"] == digest.subject == "5 stories on China surveillance bans, 22 Nov 2026"
    assert mail["Message-ID"] == sent["Message-ID"]
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    assert "5 stories, 9 articles, 4 countries" in text and "5 stories, 9 articles, 4 countries" in html
    hrefs = Links(html).hrefs
    for story in STORIES:
        assert story.url in text and story.url in hrefs
        assert all(source.url in hrefs for source in story.sources)
    assert "🇺🇸 United States" in html  # utf-8 survives the trip


def test_nothing_listening_is_a_transient_error():
    port = free_port()
    with pytest.raises(MailError) as caught:
        Mailer("127.0.0.1", port, timeout=5).send(message()[1])
    assert not caught.value.permanent
    assert str(caught.value) == f"SMTP server 127.0.0.1:{port} could not be reached: Connection refused"


def test_a_server_that_never_answers_times_out_as_transient():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(MailError) as caught:
            Mailer("127.0.0.1", port, timeout=0.5).send(message()[1])
    assert not caught.value.permanent and "did not answer within 0.5 s" in str(caught.value)


def test_refused_recipients_are_a_permanent_error(smtp):
    controller, recorder = smtp
    with pytest.raises(MailError) as caught:
        Mailer(controller.hostname, controller.port).send(message(["nobody@refused.example"])[1])
    assert caught.value.permanent and not recorder.envelopes
    assert "refused every recipient: nobody@refused.example (550 5.1.1 no such mailbox)" in str(caught.value)


def test_some_refused_recipients_still_get_it_and_are_logged(smtp, caplog):
    controller, recorder = smtp
    Mailer(controller.hostname, controller.port).send(message(["analyst@example.org", "nobody@refused.example"])[1])
    assert recorder.envelopes[0].rcpt_tos == ["analyst@example.org"]
    assert "refused some recipients" in caplog.text and "nobody@refused.example" in caplog.text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # on purpose: a local test server
def test_login_required_but_not_configured_says_so():
    recorder = Recorder()
    controller = serve(recorder, authenticator=check_login, auth_required=True, auth_require_tls=False)
    try:
        with pytest.raises(MailError) as caught:
            Mailer(controller.hostname, controller.port).send(message()[1])
        assert caught.value.permanent and caught.value.code == 530
        assert "it wants a login (set MONITOR_SMTP_USER and MONITOR_SMTP_PASSWORD)" in str(caught.value)

        with pytest.raises(MailError) as caught:
            Mailer(controller.hostname, controller.port, user="monitor", password="wrong").send(message()[1])
        assert caught.value.permanent and f"SMTP server 127.0.0.1:{controller.port} refused the login of 'monitor': 535" in str(caught.value)
        assert "wrong" not in str(caught.value)

        Mailer(controller.hostname, controller.port, user="monitor", password="s3cret").send(message()[1])
        assert received(recorder)["To"] == ", ".join(RECIPIENTS)
    finally:
        controller.stop()


def test_starttls_with_a_trusted_certificate_and_login(certificate):
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    recorder = Recorder()
    controller = serve(recorder, tls_context=server_context, require_starttls=True, authenticator=check_login, auth_required=True)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        Mailer(controller.hostname, controller.port, tls="starttls", user="monitor", password="s3cret", ssl_context=trusting).send(message()[1])
        assert received(recorder)["Subject"].startswith("5 stories on")

        with pytest.raises(MailError) as caught:  # the machine's default trust store does not know a self-signed certificate
            Mailer(controller.hostname, controller.port, tls="starttls").send(message()[1])
        assert caught.value.permanent and "TLS certificate is not trusted (self-signed certificate)" in str(caught.value)

        with pytest.raises(MailError) as caught:  # plain SMTP where the server insists on STARTTLS
            Mailer(controller.hostname, controller.port).send(message()[1])
        assert caught.value.permanent and "530" in str(caught.value)
    finally:
        controller.stop()


def test_implicit_tls(certificate, smtp):
    cert, key = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    recorder = Recorder()
    controller = serve(recorder, ssl_context=server_context)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        Mailer(controller.hostname, controller.port, tls="ssl", ssl_context=trusting).send(message()[1])
        assert len(recorder.envelopes) == 1
    finally:
        controller.stop()

    plain, _ = smtp  # implicit TLS to a plain server: the handshake fails, and the message says where to look
    with pytest.raises(MailError) as caught:
        Mailer(plain.hostname, plain.port, tls="ssl", timeout=5).send(message()[1])
    assert caught.value.permanent and "TLS failed" in str(caught.value) and "465 is usually ssl" in str(caught.value)


def test_starttls_against_a_server_without_it(smtp):
    controller, _ = smtp
    with pytest.raises(MailError) as caught:
        Mailer(controller.hostname, controller.port, tls="starttls").send(message()[1])
    assert caught.value.permanent and "does not offer STARTTLS" in str(caught.value)


def test_bad_settings_are_refused_at_once():
    with pytest.raises(ValueError, match="not one of none, starttls, ssl"):
        Mailer("localhost", 25, tls="tls")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both the SMTP user and password"):
        Mailer("localhost", 25, user="monitor")
