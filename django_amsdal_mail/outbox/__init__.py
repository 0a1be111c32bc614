"""Background sending: a durable outbox in the database, sent by a worker.

Add ``"django_amsdal_mail.outbox"`` to ``INSTALLED_APPS`` and migrate; then
either call :func:`enqueue` (or :func:`aenqueue`) with Django messages, or
switch existing ``send_mail()`` calls with one line::

    EMAIL_BACKEND = "django_amsdal_mail.outbox.backend.OutboxBackend"

Each message is converted as the inline backend converts it, validated,
given its ``Message-ID`` and ``Date`` for good, and stored with one row per
recipient, in one transaction; the engine (``AMSDAL_EMAIL_OUTBOX["ENGINE"]``)
is told on commit, so a rolled-back transaction sends nothing. What a
worker then does is described in :mod:`django_amsdal_mail.outbox.worker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.mail import EmailMessage as DjangoEmailMessage

if TYPE_CHECKING:
    from .models import OutboxMessage

__all__ = ["aenqueue", "enqueue"]


def enqueue(
    messages: DjangoEmailMessage | Sequence[DjangoEmailMessage],
    *,
    mailer: str | None = None,
    priority: int = 0,
    run_after: datetime | None = None,
) -> list[OutboxMessage]:
    """Store ``messages`` in the outbox and tell the engine on commit; return their rows.

    ``mailer`` names the backend options that send (default: the ``MAILER``
    setting); a higher ``priority`` is sent first; ``run_after`` delays the
    first attempt. Nothing is stored unless every message is valid.

    Raises:
        ValueError: a malformed message (an :class:`amsdal_mail.InvalidMessageError`
            for one without recipients, a bad address, or larger than
            ``MAX_MESSAGE_SIZE`` once rendered).
        django.core.exceptions.ImproperlyConfigured: bad outbox settings, or
            an engine this version does not provide.
    """
    from .store import enqueue_messages

    return enqueue_messages(messages, mailer=mailer, priority=priority, run_after=run_after)


async def aenqueue(
    messages: DjangoEmailMessage | Sequence[DjangoEmailMessage],
    *,
    mailer: str | None = None,
    priority: int = 0,
    run_after: datetime | None = None,
) -> list[OutboxMessage]:
    """Async twin of :func:`enqueue` (the ORM work runs in Django's sync thread)."""
    kwargs: dict[str, Any] = {"mailer": mailer, "priority": priority, "run_after": run_after}
    return await sync_to_async(enqueue)(messages, **kwargs)
