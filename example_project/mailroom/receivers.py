"""The ``post_send`` receiver: store every message's per-recipient status.

Set ``MAILROOM_RECORD_STATUS = False`` to turn recording off (the library's own
test suite does, since most of its tests send mail without a database).
"""

from typing import Any

from django.conf import settings

from amsdal_mail import SendStatus

from .models import RecipientRecord, SentMessage


def record_status(sender: Any, message: Any, status: SendStatus, **kwargs: Any) -> None:
    """Record ``message`` and one :class:`RecipientRecord` per recipient of ``status``."""
    if not getattr(settings, "MAILROOM_RECORD_STATUS", True):
        return
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
