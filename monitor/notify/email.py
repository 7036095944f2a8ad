"""SMTP: sends one message per connection with smtplib, and says clearly what the server objected to."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal

log = logging.getLogger(__name__)

TLS_MODES = ("none", "starttls", "ssl")
LOCAL_HOSTNAME = "monitor.localdomain"  # what we say in EHLO; smtplib's default asks DNS for our name, which can hang


class MailError(Exception):
    """A message the server did not take; `permanent` says whether sending it again later can help."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.code = code


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).replace("\n", " ").strip()


class Mailer:
    """SMTP with the machine's settings; one connection per send."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: Literal["none", "starttls", "ssl"] = "none",
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        if tls not in TLS_MODES:
            raise ValueError(f"SMTP TLS mode {tls!r} is not one of {', '.join(TLS_MODES)}")
        if bool(user) != bool(password):
            raise ValueError("set both the SMTP user and password, or neither")
        self.host, self.port, self.tls = host, port, tls
        self.user, self.password, self.timeout = user, password, timeout
        self.ssl_context = ssl_context
        self.where = f"SMTP server {host}:{port}"

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        if self.tls == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, local_hostname=LOCAL_HOSTNAME, timeout=self.timeout, context=context)
        smtp = smtplib.SMTP(self.host, self.port, local_hostname=LOCAL_HOSTNAME, timeout=self.timeout)
        if self.tls == "starttls":
            try:
                smtp.starttls(context=context)
            except BaseException:
                smtp.close()
                raise
        return smtp

    def send(self, message: EmailMessage) -> None:
        """Delivers the message to the server; raises MailError naming host:port and the server's own words."""
        try:
            with self._connect() as smtp:
                if self.user and self.password:
                    smtp.login(self.user, self.password)
                refused = smtp.send_message(message)
        except smtplib.SMTPException as exc:
            raise self._smtp_error(exc) from None
        except ssl.SSLCertVerificationError as exc:
            raise MailError(f"{self.where}: its TLS certificate is not trusted ({exc.verify_message})", permanent=True) from None
        except ssl.SSLError as exc:
            hint = " (is the port right for MONITOR_SMTP_TLS=" + self.tls + "? 465 is usually ssl, 587 starttls)"
            raise MailError(f"{self.where}: TLS failed: {exc.reason or exc}{hint}", permanent=True) from None
        except TimeoutError:
            raise MailError(f"{self.where} did not answer within {self.timeout:g} s", permanent=False) from None
        except OSError as exc:
            raise MailError(f"{self.where} could not be reached: {exc.strerror or exc}", permanent=False) from None
        if refused:
            log.warning("%s refused some recipients (the others got the message): %s", self.where, _refusals(refused))
        log.info("%s took the message %s", self.where, message.get("Message-ID", ""))

    def _smtp_error(self, exc: smtplib.SMTPException) -> MailError:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return MailError(
                f"{self.where} refused the login of {self.user!r}: {exc.smtp_code} {_text(exc.smtp_error)}", permanent=True, code=exc.smtp_code
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return MailError(f"{self.where} refused every recipient: {_refusals(exc.recipients)}", permanent=True)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            need = "STARTTLS" if "STARTTLS" in str(exc) else "AUTH"
            hint = " (set MONITOR_SMTP_TLS=starttls or ssl: many servers offer AUTH only over TLS)" if need == "AUTH" else ""
            return MailError(f"{self.where} does not offer {need}: {exc}{hint}", permanent=True)
        if isinstance(exc, smtplib.SMTPServerDisconnected) and "timed out" in str(exc):
            return MailError(f"{self.where} did not answer within {self.timeout:g} s", permanent=False)
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return MailError(f"{self.where} closed the connection: {exc}", permanent=False)
        if isinstance(exc, smtplib.SMTPResponseException):
            code, words = exc.smtp_code, _text(exc.smtp_error)
            if code in (530, 535) or "auth" in words.lower():
                hint = ": it wants a login (set MONITOR_SMTP_USER and MONITOR_SMTP_PASSWORD)" if not self.user else ""
                return MailError(f"{self.where} answered {code} {words}{hint}", permanent=True, code=code)
            permanent = 500 <= code < 600
            return MailError(f"{self.where} answered {code} {words}", permanent=permanent, code=code)
        return MailError(f"{self.where}: {exc}", permanent=False)


def _refusals(refused: dict) -> str:
    return "; ".join(f"{address} ({code} {_text(reply)})" for address, (code, reply) in refused.items())
