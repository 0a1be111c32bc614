"""Delivery reports back onto the outbox: :func:`record_event` for each :class:`DeliveryEvent`.

A delivery report (an RFC 3464 DSN, or a bounce that flufl.bounce reads)
becomes :class:`amsdal_mail.tracking.DeliveryEvent` values; this module finds
the outbox recipient each one is about and records it there, then sends the
:data:`django_amsdal_mail.signals.delivery` signal. ``manage.py amsdal_bounces``
feeds it (an SMTP receiver, or one report on standard input).

Which message and recipient, in this order:

1. **A VERP return path** (``bounces+TOKEN@example.com``, sent with the
   backend options ``return_path`` and ``verp``): the token's signature is
   checked with ``AMSDAL_EMAIL_VERP_SECRET``, else ``SECRET_KEY`` (the
   backend's default); it names the message (:func:`~amsdal_mail.tracking.message_key`
   of its Message-ID) and the recipient. A token that does not check is
   forged or altered: the event is logged and ignored, nothing else is tried.
2. **The envelope id or the returned Message-ID**: amsdal_mail sends the
   Message-ID as the DSN ``ENVID``; a report quotes it as Original-Envelope-Id,
   or returns the original headers. The recipient is the report's
   Original-Recipient, else its Final-Recipient, compared without regard to
   the case of the domain.

A message the outbox never held, or a recipient that message never had, is
logged (logger ``django_amsdal_mail.tracking``) and changes nothing; the signal
is still sent, with ``outbox_recipient=None``.

What is kept: ``OutboxRecipient.delivery`` takes the event word, with
``delivery_status``, ``delivery_diagnostic`` and ``delivery_at``. A final
word (``delivered``, ``bounced``) is not replaced by a passing one
(``delayed``, ``relayed``, ``expanded``), and an event reported as happening
before the one kept does not replace it; the same event recorded twice
changes nothing the second time.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Final

from django.apps import apps
from django.db import transaction

from amsdal_mail.tracking import (
    BOUNCED,
    DELIVERED,
    VERP_SECRET_ENV,
    DeliveryEvent,
    decode_verp,
    is_verp,
)

from .signals import delivery

if TYPE_CHECKING:
    from .outbox.models import OutboxRecipient

__all__ = ["FINAL_EVENTS", "find_recipient", "record_event", "verp_secret"]

logger = logging.getLogger("django_amsdal_mail.tracking")

#: Event words that end a recipient's story: a later passing event does not replace them.
FINAL_EVENTS: Final = frozenset({DELIVERED, BOUNCED})
_OUTBOX_APP: Final = "django_amsdal_mail.outbox"


def verp_secret() -> str:
    """Return the secret VERP tokens are checked with: the environment's, else ``SECRET_KEY``."""
    from .settings import django_secret_key

    return os.environ.get(VERP_SECRET_ENV) or django_secret_key()


def _message_ids(value: str) -> list[str]:
    core = value.strip().removeprefix("<").removesuffix(">").strip()
    return [f"<{core}>", core] if core else []


def _same_address(stored: str, reported: str) -> bool:
    """The same mailbox: the local part as written (or in any case), the domain in any case."""
    local, _, domain = stored.rpartition("@")
    r_local, _, r_domain = reported.strip().strip("<>").rpartition("@")
    return domain.lower() == r_domain.lower() and local.lower() == r_local.lower()


def find_recipient(event: DeliveryEvent) -> OutboxRecipient | None:
    """Return the outbox recipient ``event`` is about, or None (logged) when there is none.

    See the module's docstring for the order of the rules. Needs the outbox app.
    """
    from .outbox.models import OutboxMessage, OutboxRecipient

    if event.return_path and is_verp(event.return_path):
        try:
            token = decode_verp(event.return_path, secret=verp_secret())
        except ValueError as exc:
            logger.warning("delivery report ignored: %s", exc)
            return None
        found = OutboxRecipient.objects.filter(
            message__message_key=token.message_key, address__iexact=token.recipient
        ).first()
        if found is None:
            logger.info(
                "delivery report ignored: no outbox message %s with recipient %s",
                token.message_key,
                token.recipient,
            )
        return found

    ids = [i for value in (event.envid, event.message_id) if value for i in _message_ids(value)]
    if not ids:
        logger.info("delivery report for %s ignored: it names no message", event.recipient)
        return None
    message = OutboxMessage.objects.filter(message_id__in=ids).order_by("created_at").first()
    if message is None:
        logger.info("delivery report ignored: no outbox message has Message-ID %s", ids[0])
        return None
    rows = list(message.recipients.all())
    for address in (event.original_recipient, event.recipient):
        for row in rows:
            if address and _same_address(row.address, address):
                return row
    logger.warning(
        "delivery report ignored: outbox message %s has no recipient %s",
        message.message_id,
        event.original_recipient or event.recipient,
    )
    return None


def _replaces(current: OutboxRecipient, event: DeliveryEvent) -> bool:
    if current.delivery in FINAL_EVENTS and event.event not in FINAL_EVENTS:
        return False
    if current.delivery_at and event.reported_at and event.reported_at < current.delivery_at:
        return False
    return (
        current.delivery,
        current.delivery_status,
        current.delivery_diagnostic,
        current.delivery_at,
    ) != (event.event, event.status or "", event.diagnostic or "", event.reported_at)


def record_event(event: DeliveryEvent) -> OutboxRecipient | None:
    """Record ``event`` on its outbox recipient and send the ``delivery`` signal.

    Returns the recipient (updated, or left as it was when the event does
    not replace what it holds), or None when the outbox is not installed or
    holds no such message and recipient (then only the signal is sent).
    """
    row = None
    if apps.is_installed(_OUTBOX_APP):
        from .outbox.models import OutboxRecipient

        found = find_recipient(event)
        if found is not None:
            with transaction.atomic():
                row = OutboxRecipient.objects.select_for_update().get(pk=found.pk)
                if _replaces(row, event):
                    row.delivery = event.event
                    row.delivery_status = event.status or ""
                    row.delivery_diagnostic = event.diagnostic or ""
                    row.delivery_at = event.reported_at
                    row.save(
                        update_fields=[
                            "delivery",
                            "delivery_status",
                            "delivery_diagnostic",
                            "delivery_at",
                            "updated_at",
                        ]
                    )
    delivery.send(sender=DeliveryEvent, event=event, outbox_recipient=row)
    return row
