"""Store messages in the outbox (the body of :func:`django_amsdal_mail.outbox.enqueue`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.mail import EmailMessage as DjangoEmailMessage
from django.db import router, transaction
from django.utils import timezone

from amsdal_mail import EmailMessage, InvalidMessageError
from amsdal_mail.mime import make_message_id, render
from amsdal_mail.tracking import message_key
from django_amsdal_mail.convert import convert_message

from . import storage
from .conf import OutboxSettings, outbox_settings
from .engines import engine
from .models import OutboxMessage, OutboxRecipient

__all__ = ["enqueue_messages", "prepare"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A message ready to store: its stored form and recipients as (address, kind)."""

    message: EmailMessage
    message_id: str
    recipients: list[tuple[str, str]]


def prepare(django_message: DjangoEmailMessage, rules: OutboxSettings) -> Prepared:
    """Convert and check one message, fixing its Message-ID (and Date) in its headers."""
    message = convert_message(django_message)
    names = {name.lower(): name for name in message.headers}
    valid = message.validate()
    if "message-id" not in names:
        message.headers["Message-ID"] = make_message_id(valid.from_address.ascii_domain or None)
        names["message-id"] = "Message-ID"
    valid = message.validate()
    to = {a.envelope.lower() for a in valid.to}
    cc = {a.envelope.lower() for a in valid.cc}
    recipients = [
        (
            a.addr_spec,
            "to" if a.envelope.lower() in to else "cc" if a.envelope.lower() in cc else "bcc",
        )
        for a in valid.recipients
    ]
    size = len(render(storage.for_attempt(message, [a for a, _ in recipients])))
    if size > rules.max_message_size:
        raise InvalidMessageError(
            f"the message is {size} bytes once rendered, more than the outbox's "
            f"MAX_MESSAGE_SIZE of {rules.max_message_size} bytes; nothing was stored",
            field="size",
        )
    return Prepared(message, message.headers[names["message-id"]], recipients)


def enqueue_messages(
    messages: DjangoEmailMessage | Sequence[DjangoEmailMessage],
    *,
    mailer: str | None,
    priority: int,
    run_after: datetime | None,
) -> list[OutboxMessage]:
    """Store ``messages`` (all or none) and tell the engine on commit; return their rows."""
    rules = outbox_settings()
    notify = engine(rules)
    batch = [messages] if isinstance(messages, DjangoEmailMessage) else list(messages)
    prepared = [prepare(m, rules) for m in batch]
    now = timezone.now()
    due = run_after or now
    rows = [
        OutboxMessage(
            payload=storage.dumps(p.message),
            mailer=mailer or rules.mailer,
            priority=priority,
            next_attempt_at=due,
            message_id=p.message_id,
            message_key=message_key(p.message_id),
            subject=p.message.subject,
            from_email=p.message.from_email or "",
            created_at=now,
        )
        for p in prepared
    ]
    recipients: list[Any] = [
        OutboxRecipient(message=row, position=n, address=address, kind=kind, next_attempt_at=due)
        for row, p in zip(rows, prepared, strict=True)
        for n, (address, kind) in enumerate(p.recipients)
    ]
    db = router.db_for_write(OutboxMessage)
    with transaction.atomic(using=db):
        OutboxMessage.objects.using(db).bulk_create(rows)
        OutboxRecipient.objects.using(db).bulk_create(recipients)
        ids = [row.pk for row in rows]
        transaction.on_commit(lambda: notify(ids, run_after), using=db)
    return rows
