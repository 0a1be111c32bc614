"""``manage.py demo_send``: send through Django's own mail API, then print what was recorded.

Used by ``python -m demo``: each send goes, inline, through
``django_amsdal_mail.backend.EmailBackend`` (given as the ``connection``, since the
project's ``EMAIL_BACKEND`` is the outbox, shown by ``demo_outbox``), and the
``post_send`` receiver stores every recipient's status, which is printed at the
end, one line per recipient.
"""

import smtplib
from typing import Any

from django.core.mail import (
    EmailMultiAlternatives,
    get_connection,
    mail_admins,
    send_mail,
    send_mass_mail,
)
from django.core.management.base import BaseCommand

from mailroom.models import RecipientRecord, SentMessage
from mailroom.views import build_message

#: Sends in the caller, so each status is known when the call returns.
INLINE_BACKEND = "django_amsdal_mail.backend.EmailBackend"


class Command(BaseCommand):
    help = "Send demo messages with Django's mail functions and print the recorded statuses."

    def handle(self, *args: Any, **options: Any) -> None:
        out = self.stdout.write
        SentMessage.objects.all().delete()
        inline = get_connection(INLINE_BACKEND)

        count = send_mail(
            "Hello from Django",
            "Sent with django.core.mail.send_mail().",
            None,
            ["alice@example.com"],
            connection=inline,
        )
        out(f"send_mail() -> {count}")

        email = build_message(
            ["bob@example.com"], "Report with attachment", "HTML alternative and a file."
        )
        email.connection = inline
        out(f"EmailMultiAlternatives(...).send() -> {email.send()}")

        count = send_mass_mail(
            [
                ("Mass 1", "First of two.", None, ["carol@example.com"]),
                ("Mass 2", "Second of two.", None, ["dave@example.com", "erin@example.com"]),
            ],
            connection=inline,
        )
        out(f"send_mass_mail() -> {count}")

        mail_admins("Server notice", "Sent with mail_admins().", connection=inline)
        out("mail_admins() -> sent")

        mixed = EmailMultiAlternatives(
            "Some recipients refused",
            "One good, one unknown, one busy.",
            to=["frank@example.com", "nobody@example.com", "busy@example.com"],
            connection=inline,
        )
        out(f"partly refused message .send() -> {mixed.send()}")

        try:
            send_mail(
                "Nobody home",
                "Every recipient is refused.",
                None,
                ["nobody@example.com"],
                connection=inline,
            )
        except smtplib.SMTPRecipientsRefused as exc:
            out(f"all refused -> SMTPRecipientsRefused {sorted(exc.recipients)}")

        out("\nStatuses stored by the post_send receiver:")
        records = RecipientRecord.objects.select_related("message").order_by("message_id", "id")
        for record in records:
            code = "" if record.code is None else f" {record.code}"
            out(
                f"  {record.message.subject!r:28} {record.address:22} {record.status}{code}"
                f"  {record.response}".rstrip()
            )
