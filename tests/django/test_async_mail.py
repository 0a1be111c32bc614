"""asend_mail / asend_mass_mail: awaitable twins of Django's send_mail / send_mass_mail."""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest
from django.core import mail

from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.mail import asend_mail, asend_mass_mail
from tests.smtpd import RecordingServer, ServerFactory


async def test_asend_mail(configured: Any, server: RecordingServer) -> None:
    """asend_mail() sends text and HTML through the configured backend."""
    sent = await asend_mail(
        "Hello", "Text", "from@example.com", ["to@example.com"], html_message="<p>HTML</p>"
    )
    assert sent == 1
    parsed = server.messages[0].message
    assert parsed["Subject"] == "Hello"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>HTML</p>"


async def test_asend_mail_defaults_the_sender(configured: Any, server: RecordingServer) -> None:
    """from_email=None means DEFAULT_FROM_EMAIL."""
    assert await asend_mail("Hello", "Text", None, ["to@example.com"]) == 1
    assert server.messages[0].mail_from == "webmaster@example.com"


async def test_asend_mass_mail_uses_one_connection(
    configured: Any, server: RecordingServer
) -> None:
    """asend_mass_mail() sends every tuple over one connection and returns the count."""
    sent = await asend_mass_mail(
        [
            ("First", "One", "from@example.com", ["a@example.com"]),
            ("Second", "Two", None, ["b@example.com"]),
        ]
    )
    assert sent == 2
    assert [m.rcpt_tos for m in server.messages] == [["a@example.com"], ["b@example.com"]]
    assert server.connections == 1


async def test_asend_mail_with_a_connection(server: RecordingServer) -> None:
    """An explicit connection is used as given."""
    connection = EmailBackend(host=server.host, port=server.port)
    assert await asend_mail("Hi", "Body", "a@example.com", ["b@example.com"], connection=connection)
    assert len(server.messages) == 1


async def test_asend_mail_without_recipients_sends_nothing(configured: Any) -> None:
    """No recipients: 0, as send_mail() returns."""
    assert await asend_mail("Hi", "Body", "a@example.com", []) == 0


async def test_asend_mail_raises_what_send_mail_raises(smtp_server: ServerFactory) -> None:
    """A fully refused message raises SMTPRecipientsRefused; fail_silently returns 0."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 No such user"})
    connection = EmailBackend(host=server.host, port=server.port)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await asend_mail("Hi", "Body", "a@example.com", ["gone@example.com"], connection=connection)
    quiet = EmailBackend(host=server.host, port=server.port, fail_silently=True)
    assert (
        await asend_mail("Hi", "Body", "a@example.com", ["gone@example.com"], connection=quiet) == 0
    )


async def test_another_django_backend_runs_in_a_thread(settings: Any) -> None:
    """With a backend that has no async twin (Django's locmem), sending still works."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert await asend_mail("Hi", "Body", "a@example.com", ["b@example.com"]) == 1
    assert [m.subject for m in mail.outbox] == ["Hi"]


async def test_sending_does_not_block_the_event_loop(silent_server: tuple[str, int]) -> None:
    """asend_messages() waits on the server without blocking other tasks (the async path)."""
    host, port = silent_server
    backend = EmailBackend(host=host, port=port, timeout=0.5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(TimeoutError):
            await backend.asend_messages([mail.EmailMessage("Hi", "Body", "a@x.com", ["b@x.com"])])
    finally:
        ticker.cancel()
    # A blocking send would have starved the ticker for the whole half second.
    assert ticks >= 10
