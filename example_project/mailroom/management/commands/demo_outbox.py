"""``manage.py demo_outbox enqueue | wait``: the outbox half of ``python -m demo``.

* ``enqueue`` puts messages in the outbox the two ways a project does: Django's
  ``send_mail()`` / ``EmailMessage.send()`` through ``EMAIL_BACKEND`` (the
  project's is ``OutboxBackend``) and :func:`django_amsdal_mail.outbox.enqueue`;
  it also shows that a rolled-back transaction leaves nothing to send. Nothing
  is sent by this command: a worker (``manage.py db_worker --queue-name email``)
  does that.
* ``wait`` polls the outbox until every message is ``done`` (at most
  ``--timeout`` seconds), then prints each recipient's final status and how many
  attempts it took, and every attempt as the ``post_send`` receiver recorded it in
  the worker. It fails, printing what is still pending, if the time runs out.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.mail import EmailMessage, send_mail
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxMessage
from mailroom.models import RecipientRecord
from mailroom.views import build_message

#: How often ``wait`` looks at the outbox.
POLL_INTERVAL = 0.2


class _RollBack(Exception):
    """Raised inside ``transaction.atomic()`` to roll the demo's transaction back."""


class Command(BaseCommand):
    help = "Queue demo messages in the outbox (enqueue), or wait for the worker and report (wait)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("enqueue", help="Queue the demo's messages.")
        wait = sub.add_parser("wait", help="Wait until every message is done; print statuses.")
        wait.add_argument("--timeout", type=float, default=60.0, help="Seconds (default 60).")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "enqueue":
            self._enqueue()
        else:
            self._wait(options["timeout"])

    def _enqueue(self) -> None:
        out = self.stdout.write
        count = send_mail(
            "Welcome", "Queued by send_mail(), sent by the worker.", None, ["alice@example.com"]
        )
        out(f"send_mail() -> {count} (queued, not yet sent)")

        report = build_message(
            ["bob@example.com", "later@example.com", "nobody@example.com"],
            "Monthly report",
            "One recipient is greylisted at first, one does not exist.",
        )
        report.send()
        queued = report.outbox_message  # type: ignore[attr-defined]
        statuses = {a: r.status for a, r in report.amsdal_status.recipients.items()}  # type: ignore[attr-defined]
        out(f"EmailMultiAlternatives(...).send() -> queued as {queued.pk}: {statuses}")

        (row,) = enqueue(
            EmailMessage("Urgent", "enqueue() with a priority.", None, ["carol@example.com"]),
            priority=10,
        )
        out(f"enqueue(..., priority=10) -> {row.pk}, Message-ID {row.message_id}")

        try:
            with transaction.atomic():
                enqueue(EmailMessage("Never", "Rolled back.", None, ["dave@example.com"]))
                raise _RollBack
        except _RollBack:
            pass
        never = OutboxMessage.objects.filter(subject="Never").exists()
        out(f"enqueue() in a rolled-back transaction -> stored: {never}")

        out(f"\nIn the outbox: {OutboxMessage.objects.filter(state='queued').count()} queued.")

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = OutboxMessage.objects.exclude(state__in=["done", "cancelled"])
        while pending.exists():
            if time.monotonic() > deadline:
                self._report()
                raise CommandError(
                    f"the worker did not finish within {timeout:g}s: "
                    f"{pending.count()} message(s) still queued or sending (above)"
                )
            time.sleep(POLL_INTERVAL)
        self._report()

    def _report(self) -> None:
        out = self.stdout.write
        out("Final statuses in the outbox (recipient, status, code, attempts, server reply):")
        messages = OutboxMessage.objects.prefetch_related("recipients").order_by("created_at")
        for message in messages:
            out(f"  {message.subject!r} [{message.state}, {message.attempts} attempt(s)]")
            for r in message.recipients.all():
                code = "" if r.code is None else str(r.code)
                out(
                    f"    {r.address:22} {r.status:9} {code:4} x{r.attempts}  {r.response}".rstrip()
                )
        out("\nEach attempt, as post_send reported it in the worker (attempt, recipient, status):")
        records = RecipientRecord.objects.filter(message__outbox_id__isnull=False)
        for record in records.select_related("message").order_by("attempt", "id"):
            code = "" if record.code is None else str(record.code)
            out(
                f"  #{record.attempt} {record.message.subject!r:16} {record.address:22} "
                f"{record.status:9} {code:4} {record.response}".rstrip()
            )
