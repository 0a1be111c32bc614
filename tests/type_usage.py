"""The public API used the way applications use it, for ``mypy --strict``.

Not a test module (nothing here is collected by pytest): ``make lint`` runs
``mypy tests/type_usage.py`` so that a change to a public signature that would
break typed user code fails the build. Nothing here is executed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

from amsdal_mail import (
    Alternative,
    Attachment,
    AuthenticationError,
    BaseBackend,
    ConfigurationError,
    EmailMessage,
    InvalidAddressError,
    InvalidMessageError,
    MailError,
    MailTimeoutError,
    RecipientStatus,
    SendStatus,
    TransportError,
    asend_mail,
    get_connection,
    register_backend,
    send_mail,
)
from amsdal_mail.config import Layer, SMTPSettings, resolve_smtp_settings


def build_message(pdf: bytes, logo: bytes) -> EmailMessage:
    """Build a message with every kind of content."""
    return EmailMessage(
        subject="Invoice #1234",
        body="Please find your invoice attached.",
        from_email="Billing <billing@example.com>",
        to=["customer@example.com"],
        cc="accounts@example.com",
        bcc=["archive@example.com"],
        reply_to=["support@example.com"],
        headers={"X-Invoice": "1234"},
        html_body='<h1>Invoice</h1><img src="cid:logo">',
        attachments=[
            Attachment("invoice-1234.pdf", pdf, mimetype="application/pdf"),
            Attachment("logo.png", logo, "image/png", content_id="logo"),
            Attachment("notes.txt", "plain text content"),
        ],
        alternatives=[Alternative("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")],
    )


def report(status: SendStatus) -> list[str]:
    """Summarise a status the way an application might log it."""
    lines: list[str] = []
    for address, recipient in status.recipients.items():
        rs: RecipientStatus = recipient
        code: int | None = rs.code
        lines.append(f"{address}: {rs.status} {code} {rs.response or ''}")
    ok: bool = status.is_success and not status.has_failures
    words: set[str] = status.status
    failed: list[str] = status.get_failed_recipients()
    sent: list[str] = status.get_successful_recipients()
    lines.append(f"{ok} {sorted(words)} {failed} {sent} {status.esp_response}")
    message_id: str | None = status.message_id
    lines.append(str(message_id))
    return lines


def send_sync(messages: Sequence[EmailMessage], context: ssl.SSLContext) -> SendStatus:
    """Send over one connection with STARTTLS and a private CA."""
    connection: BaseBackend = get_connection(
        "smtp",
        host="smtp.example.com",
        port=587,
        username="user",
        password="secret",
        use_tls=True,
        timeout=10.0,
        ssl_context=context,
    )
    with connection as open_connection:
        total = open_connection.send_messages(messages)
    for message in messages:
        own: SendStatus | None = message.status
        if own is not None:
            report(own)
    return total


def send_one() -> SendStatus | None:
    """Send one message with send_mail, handling the errors users catch."""
    try:
        return send_mail(
            "Hello",
            "Body",
            "from@example.com",
            "to@example.com",
            html_message="<p>Body</p>",
            cc=["cc@example.com"],
        )
    except AuthenticationError as error:
        code: int = error.smtp_code
        print(code)
    except (MailTimeoutError, TransportError) as error:
        os_error: OSError = error
        print(os_error)
    except InvalidAddressError as error:
        field: str | None = error.field
        print(field, error.address)
    except InvalidMessageError as error:
        value_error: ValueError = error
        print(value_error)
    except ConfigurationError as error:
        print(error)
    except MailError as error:
        print(error)
    return None


async def send_async(messages: list[EmailMessage]) -> SendStatus:
    """Send concurrently, then one more message with asend_mail."""
    connection = get_connection("smtp", fail_silently=True)
    async with connection as open_connection:
        total = await open_connection.asend_messages(messages, concurrency=4)
    single: SendStatus = await asend_mail(
        "Subject", "Body", "from@example.com", ["to@example.com"], connection=connection
    )
    report(single)
    return total


class AuditBackend(BaseBackend):
    """A custom backend, as an application would write one."""

    def _send(self, message: EmailMessage) -> SendStatus:
        return SendStatus.uniform(message.recipients(), "queued")


def use_custom_backend() -> None:
    """Register and use a custom backend."""
    register_backend("audit", AuditBackend)
    status = get_connection("audit").send_messages([build_message(b"%PDF", b"\x89PNG")])
    report(status)
    asyncio.run(send_async([]))


class DuckBackend:
    """A backend with the backend methods, not derived from BaseBackend (duck typing)."""

    def __init__(self, *, fail_silently: bool = False) -> None:
        self.fail_silently = fail_silently

    def open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    async def aopen(self) -> bool:
        return False

    async def aclose(self) -> None:
        pass

    def send_messages(self, messages: Sequence[EmailMessage]) -> SendStatus:
        return SendStatus()

    async def asend_messages(self, messages: Sequence[EmailMessage]) -> SendStatus:
        return SendStatus()


def use_duck_backend_and_settings_layers() -> SMTPSettings:
    """Register a duck-typed backend; resolve settings with a layer of the application's own."""
    register_backend("duck", DuckBackend)
    get_connection("duck").send_messages([])
    ours = Layer({"host": "mail.example.com"}, {"host": "config.ini [mail] host"})
    return resolve_smtp_settings({"timeout": 5}, layers=[ours], defaults={"port": 2525})
