"""The one-line switch: an email backend that puts messages in the outbox.

::

    EMAIL_BACKEND = "django_amsdal_mail.outbox.backend.OutboxBackend"

or as a MAILERS ``BACKEND`` on Django 6.1+ (its OPTIONS may give ``mailer``
and ``priority``; the ``MAILER`` that sends must then be another alias, one
using :class:`django_amsdal_mail.backend.EmailBackend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from amsdal_mail import RecipientStatus, SendStatus

from . import aenqueue, enqueue
from .models import OutboxMessage

__all__ = ["OutboxBackend"]


class OutboxBackend(BaseEmailBackend):
    """Queue messages in the outbox instead of sending them.

    :meth:`send_messages` returns how many messages were **queued**, not
    sent: a worker sends them later. Each queued message gets
    ``amsdal_status`` (every recipient ``queued``) and ``outbox_message``
    (its :class:`~django_amsdal_mail.outbox.models.OutboxMessage`). Messages
    without recipients are skipped, as Django's backends skip them. Invalid
    messages raise ``ValueError`` whatever ``fail_silently`` says, and then
    nothing of the call is queued.
    """

    def __init__(
        self,
        fail_silently: bool = False,
        *,
        mailer: str | None = None,
        priority: int = 0,
        alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Django 6.1's base class takes the alias (and reports unknown options);
        # fail_silently is kept here, as django_amsdal_mail's EmailBackend keeps it.
        if django.VERSION >= (6, 1):
            super().__init__(alias=alias, **kwargs)
        else:
            super().__init__(**kwargs)
        self.fail_silently = fail_silently
        self.mailer = mailer
        self.priority = priority

    def send_messages(self, email_messages: Sequence[DjangoEmailMessage]) -> int:
        """Queue the messages; return how many were queued."""
        messages = [m for m in email_messages if m.recipients()]
        if not messages:
            return 0
        rows = enqueue(messages, mailer=self.mailer, priority=self.priority)
        _mark(messages, rows)
        return len(rows)

    async def asend_messages(self, email_messages: Sequence[DjangoEmailMessage]) -> int:
        """Async twin of :meth:`send_messages`."""
        messages = [m for m in email_messages if m.recipients()]
        if not messages:
            return 0
        rows = await aenqueue(messages, mailer=self.mailer, priority=self.priority)
        await _amark(messages, rows)
        return len(rows)


def _queued(row: OutboxMessage, addresses: Sequence[str]) -> SendStatus:
    status = RecipientStatus("queued")
    return SendStatus(recipients=dict.fromkeys(addresses, status), message_id=row.message_id)


def _mark(messages: Sequence[DjangoEmailMessage], rows: Sequence[OutboxMessage]) -> None:
    for message, row in zip(messages, rows, strict=True):
        addresses = list(row.recipients.values_list("address", flat=True))
        message.amsdal_status = _queued(row, addresses)  # type: ignore[attr-defined]
        message.outbox_message = row  # type: ignore[attr-defined]


async def _amark(messages: Sequence[DjangoEmailMessage], rows: Sequence[OutboxMessage]) -> None:
    for message, row in zip(messages, rows, strict=True):
        addresses = [a async for a in row.recipients.values_list("address", flat=True)]
        message.amsdal_status = _queued(row, addresses)  # type: ignore[attr-defined]
        message.outbox_message = row  # type: ignore[attr-defined]
