"""The ``post_send`` receiver: store every message's per-recipient status.

Inline sends (``django_amsdal_mail.backend.EmailBackend``) fire ``post_send``
once per message, in the caller: each gets its own :class:`SentMessage`. The
outbox's worker fires it after every attempt, with ``outbox_message`` and
``attempt`` and the recipients of that attempt: each outbox message gets one
:class:`SentMessage` and one record per recipient and attempt, so a ``451``
followed by a ``250`` on the retry shows as two records.

Set ``MAILROOM_RECORD_STATUS = False`` to turn recording off (the library's own
test suite does, since most of its tests send mail without a database).
"""

from typing import Any

from django.conf import settings

from amsdal_mail import SendStatus

from .models import RecipientRecord, SentMessage


def record_status(
    sender: Any,
    message: Any,
    status: SendStatus,
    outbox_message: Any = None,
    attempt: int | None = None,
    **kwargs: Any,
) -> None:
    """Record ``message`` and one :class:`RecipientRecord` per recipient of ``status``."""
    if not getattr(settings, "MAILROOM_RECORD_STATUS", True):
        return
    if outbox_message is None:
        sent = SentMessage.objects.create(
            subject=str(message.subject), from_email=str(message.from_email)
        )
        RecipientRecord.objects.bulk_create(
            RecipientRecord(
                message=sent,
                address=address,
                status=recipient.status,
                code=recipient.code,
                response=recipient.response or "",
            )
            for address, recipient in status.recipients.items()
        )
        return
    sent, _ = SentMessage.objects.get_or_create(
        outbox_id=outbox_message.pk,
        defaults={"subject": str(message.subject), "from_email": str(message.from_email)},
    )
    RecipientRecord.objects.bulk_create(
        RecipientRecord(
            message=sent,
            address=address,
            status=recipient.status,
            code=recipient.code,
            response=recipient.response or "",
            attempt=attempt,
        )
        for address, recipient in status.recipients.items()
    )
