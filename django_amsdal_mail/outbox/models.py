"""The outbox's tables: one row per message, one per recipient of it.

The database row is the source of truth: an engine's task carries only the
message id, and every attempt reads what to send, and to whom, from here.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from django.db import models
from django.utils import timezone

__all__ = ["OutboxMessage", "OutboxRecipient"]

#: Recipient statuses after which nothing more is ever sent to that recipient.
FINAL_ALWAYS: Final = frozenset({"sent", "rejected", "invalid"})


class OutboxMessage(models.Model):
    """One message waiting, being sent, or done.

    ``payload`` is the stored form of the message, JSON text (see
    :mod:`django_amsdal_mail.outbox.storage`; text rather than a JSON column:
    kept exactly, any NUL included, on every database), with its ``Message-ID`` and
    ``Date`` fixed at enqueue so that every attempt sends the same message;
    ``message_id`` is that Message-ID. ``next_attempt_at`` is when the next
    recipient is due (None once the message is done or cancelled).
    ``lease_until`` and ``claimed_by`` tell which worker holds the message
    while it is ``sending``; ``attempts`` counts the attempts of the message,
    from 1 (a refused connection is an attempt), and ``first_attempt_at``
    starts ``MAX_AGE``.
    """

    class State(models.TextChoices):
        QUEUED = "queued"
        SENDING = "sending"
        DONE = "done"
        CANCELLED = "cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payload = models.TextField()
    mailer = models.CharField(max_length=200, default="default")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    priority = models.IntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, default="")
    message_id = models.CharField(max_length=998, db_index=True)
    #: :func:`amsdal_mail.tracking.message_key` of ``message_id``: what a VERP token names.
    message_key = models.CharField(max_length=16, db_index=True, blank=True, default="")
    subject = models.TextField(blank=True, default="")
    from_email = models.TextField(blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "outbox message"
        indexes = [
            # The claim and the sweep: due queued messages, expired leases.
            models.Index(fields=["state", "next_attempt_at"], name="amsdal_outbox_due"),
            models.Index(fields=["state", "lease_until"], name="amsdal_outbox_lease"),
            models.Index(fields=["created_at"], name="amsdal_outbox_created"),
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} [{self.state}]"


class OutboxRecipient(models.Model):
    """One recipient of an outbox message and what happened to it.

    ``status`` is ``queued`` until the first attempt, then the word of the
    last attempt (``sent``, ``rejected``, ``failed``, ``invalid``,
    ``unknown``) with the server's ``code`` and ``response``. ``sent``,
    ``rejected`` and ``invalid`` are final; ``failed`` and ``unknown`` are
    final when ``next_attempt_at`` is None, else due again then.
    ``attempt_token`` is set, durably, just before an attempt hands the
    message over and cleared when its outcome is recorded: a worker that
    died in between leaves it set, and that recipient becomes ``unknown``.
    ``delivery`` is the word of the last delivery report about it
    (``delivered``, ``bounced``, ``delayed``, ``relayed``, ``expanded``; empty
    until one arrives), with ``delivery_status`` (the RFC 3463 code),
    ``delivery_diagnostic`` (the remote server's words) and ``delivery_at``
    (when the report says it happened): see :mod:`django_amsdal_mail.tracking`.
    """

    class Delivery(models.TextChoices):
        NONE = "", "no report"
        DELIVERED = "delivered"
        BOUNCED = "bounced"
        DELAYED = "delayed"
        RELAYED = "relayed"
        EXPANDED = "expanded"

    class Status(models.TextChoices):
        QUEUED = "queued"
        SENT = "sent"
        REJECTED = "rejected"
        FAILED = "failed"
        INVALID = "invalid"
        UNKNOWN = "unknown"

    class Kind(models.TextChoices):
        TO = "to"
        CC = "cc"
        BCC = "bcc"

    message = models.ForeignKey(OutboxMessage, on_delete=models.CASCADE, related_name="recipients")
    position = models.PositiveIntegerField(default=0)
    address = models.CharField(max_length=512)
    kind = models.CharField(max_length=3, choices=Kind.choices, default=Kind.TO)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    code = models.PositiveIntegerField(null=True, blank=True)
    response = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    unknowns = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempt_token = models.CharField(max_length=200, blank=True, default="")
    delivery = models.CharField(
        max_length=16, choices=Delivery.choices, blank=True, default=Delivery.NONE
    )
    delivery_status = models.CharField(max_length=16, blank=True, default="")
    delivery_diagnostic = models.TextField(blank=True, default="")
    delivery_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "outbox recipient"
        ordering = ["message", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["message", "address"], name="amsdal_outbox_recipient_once"
            )
        ]
        indexes = [
            models.Index(fields=["status"], name="amsdal_outbox_rcpt_status"),
            models.Index(fields=["delivery"], name="amsdal_outbox_rcpt_delivery"),
        ]

    def __str__(self) -> str:
        return f"{self.address} [{self.status}]"

    @property
    def is_final(self) -> bool:
        """Return True when nothing more will be sent to this recipient."""
        return self.status in FINAL_ALWAYS or (
            self.status != self.Status.QUEUED and self.next_attempt_at is None
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the fields the retry policy reads."""
        return {
            "address": self.address,
            "status": self.status,
            "attempts": self.attempts,
            "unknowns": self.unknowns,
            "next_attempt_at": self.next_attempt_at,
        }
