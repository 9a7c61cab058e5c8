"""Email through the operator's SMTP server (TALLYQL_SMTP_URL, TALLYQL_MAIL_FROM), sent with
aiosmtplib so that a slow mail server never blocks the event loop.

`smtp://user:password@host:587` speaks plain SMTP and upgrades with STARTTLS when the server
offers it (`?starttls=require` refuses a server that does not, `?starttls=off` never
upgrades); `smtps://host:465` speaks TLS from the first byte. User and password are
percent-decoded; without them nothing is authenticated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

MAX_RECIPIENTS = 50


class MailError(Exception):
    """A message that could not be handed to the SMTP server (the text says why, without
    the server's own words)."""


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None  # None: upgrade when offered
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """ValueError for anything that is not an smtp:// or smtps:// URL with a host."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                "TALLYQL_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://..."
            )
        options = parse_qs(parts.query)
        mode = (options.get("starttls") or ["auto"])[0]
        if mode not in ("auto", "require", "off"):
            raise ValueError("TALLYQL_SMTP_URL: starttls must be auto, require or off")
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 587),
            implicit_tls=implicit,
            starttls=None if mode == "auto" or implicit else mode == "require",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def valid_address(address: str) -> bool:
    """A bare address of the form local@domain (no display name, no spaces or commas)."""
    name, found = parseaddr(address)
    if name or found != address or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    return bool(local) and "." in domain and not any(c in address for c in ' ,;<>"\r\n')


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime_type: str  # e.g. application/pdf


class Mailer:
    def __init__(self, server: SmtpServer | None, sender: str, timeout_seconds: float) -> None:
        self.server = server
        self.sender = sender
        self.timeout = timeout_seconds
        self.sent = 0

    @property
    def configured(self) -> bool:
        return self.server is not None

    def message(
        self,
        to: Sequence[str],
        subject: str,
        text: str,
        html: str | None = None,
        attachments: Sequence[Attachment] = (),
        headers: dict[str, str] | None = None,
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = " ".join(subject.split())  # one line, whatever the data held
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        for name, value in (headers or {}).items():
            message[name] = value
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        for item in attachments:
            main, _, sub = item.mime_type.partition("/")
            message.add_attachment(item.content, maintype=main, subtype=sub, filename=item.filename)
        return message

    async def send(self, message: EmailMessage) -> None:
        server = self.server
        if server is None:
            raise MailError("no SMTP server is configured (TALLYQL_SMTP_URL)")
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                start_tls=server.starttls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused:
            raise MailError("the SMTP server refused the recipients") from None
        except aiosmtplib.SMTPAuthenticationError:
            raise MailError("the SMTP server refused the credentials") from None
        except aiosmtplib.SMTPTimeoutError:
            raise MailError("the SMTP server timed out") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailError(f"sending failed ({type(exc).__name__})") from None
        self.sent += 1
