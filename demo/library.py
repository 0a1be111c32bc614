"""The library half of the demo: every kind of send, through a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from amsdal_mail import Attachment, EmailMessage, SendStatus, asend_mail, get_connection

from .report import show_received, show_status
from .samples import tiny_pdf, tiny_png
from .server import RecordingServer


def run(server: RecordingServer) -> None:
    """Send the demo messages through ``server`` and print what happened."""
    options = {"host": server.host, "port": server.port}
    conn = get_connection("smtp", **options)

    def sent(title: str, status: SendStatus) -> None:
        show_status(title, status)
        show_received(server.messages[-1])

    # 1. A plain message.
    status = conn.send_messages(
        [
            EmailMessage(
                subject="Hello from amsdal-mail",
                body="A plain text message.\n.A line that starts with a dot survives.\n",
                from_email="Demo Sender <demo@example.com>",
                to=["alice@example.com"],
                cc=["carol@example.com"],
                bcc=["audit@example.com"],
            )
        ]
    )
    sent("1. plain message (bcc only in the envelope)", status)

    # 2. HTML with a PDF attachment.
    invoice = EmailMessage(
        subject="Invoice #1234",
        body="Please find your invoice attached.",
        html_body="<h1>Invoice #1234</h1><p>See attachment.</p>",
        from_email="billing@example.com",
        to=["customer@example.com"],
        attachments=[Attachment("invoice-1234.pdf", tiny_pdf(), "application/pdf")],
    )
    sent("2. HTML message with a PDF attachment", conn.send_messages([invoice]))

    # 3. An inline image referenced as cid:header.
    newsletter = EmailMessage(
        subject="Newsletter — Ünïcödé Weekly",
        body="See HTML version.",
        html_body='<img src="cid:header"><h1>Weekly Update</h1>',
        from_email="Zoë from News <news@example.com>",
        to=["subscriber@example.com"],
        attachments=[Attachment("header.png", tiny_png(), "image/png", content_id="header")],
    )
    sent("3. inline image (multipart/related, Content-ID)", conn.send_messages([newsletter]))

    # 4. A batch over one connection.
    before = server.connections
    with get_connection("smtp", **options) as pooled:
        batch = [
            EmailMessage(
                subject=f"Notification {n}",
                body=f"Hello user {n}!",
                from_email="noreply@example.com",
                to=[f"user{n}@example.com"],
            )
            for n in range(1, 6)
        ]
        status = pooled.send_messages(batch)
    show_status(
        f"4. batch of {len(batch)} messages over {server.connections - before} connection(s)",
        status,
    )

    # 5. Async.
    status = asyncio.run(
        asend_mail(
            subject="Hello",
            message="Sent asynchronously via SMTP.",
            from_email="noreply@example.com",
            recipient_list=["user@example.com"],
            connection=get_connection("smtp", **options),
        )
    )
    sent("5. async send (aiosmtplib)", status)

    # 6. Partial refusal: one recipient 550, one 450, one accepted.
    refused = EmailMessage(
        subject="Some of you will not get this",
        body="Per-recipient status demo.",
        from_email="demo@example.com",
        to=["alice@example.com", "nobody@example.com", "busy@example.com"],
    )
    status = conn.send_messages([refused])
    show_status("6. server refuses one recipient with 550 and another with 450", status)
    if status.recipients:
        show_received(server.messages[-1])
    for line in _summary(status):
        print(line)


def _summary(status: SendStatus) -> Iterator[str]:
    yield f"   successful: {status.get_successful_recipients()}"
    yield f"   failed:     {status.get_failed_recipients()}"
