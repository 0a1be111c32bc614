"""Deliver one outbox message: claim it, send to the recipients due, record each fate.

:func:`deliver` is what an engine's task runs for an outbox id. In order:

1. **claim** -- one conditional UPDATE (``queued`` and due, or ``sending``
   with an expired lease) sets ``sending``, ``lease_until`` and
   ``claimed_by`` in a short transaction (``SELECT ... FOR UPDATE SKIP
   LOCKED`` first where the database has it): one worker at a time per
   message; a worker that died leaves its lease to expire.
2. **take up** -- recipients whose ``attempt_token`` is still set were in
   flight when a worker died: they become ``unknown`` (see the policy).
3. **attempt** -- connect; record durably "attempt begun" (``attempt_token``)
   for the recipients due; send the stored message with those recipients
   as its only envelope (:func:`~.storage.for_attempt`); record the outcome
   as :mod:`~.policy` decides, only while this worker's token still holds.
4. **release** -- the message goes back to ``queued`` (with the next due
   time, told to the engine) or to ``done``; ``post_send`` fires after the
   attempt, ``outbox_finished`` when every recipient is final.

Every function takes ``now`` so tests drive time instead of waiting.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from uuid import UUID

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router, transaction
from django.db.models import F, Q
from django.utils import timezone

from amsdal_mail import (
    BaseBackend,
    EmailMessage,
    InvalidMessageError,
    RecipientStatus,
    SendStatus,
    TransportError,
)
from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.signals import outbox_finished, post_send

from . import policy, storage
from .conf import OutboxSettings, outbox_settings
from .engines import engine
from .models import OutboxMessage, OutboxRecipient

__all__ = ["OnClaim", "claim", "deliver", "deliver_due", "due_messages", "mailer_backend"]

logger = logging.getLogger(__name__)
_State = OutboxMessage.State


def _token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _available(now: datetime) -> Q:
    return Q(state=_State.QUEUED, next_attempt_at__lte=now) | Q(
        state=_State.SENDING, lease_until__lt=now
    )


#: Called inside the claim's transaction with the message id and the lease's end.
OnClaim = Callable[[UUID, datetime], None]


def claim(
    message_id: UUID,
    *,
    now: datetime,
    token: str,
    lease: float,
    on_claim: OnClaim | None = None,
) -> OutboxMessage | None:
    """Claim the message for ``token`` until ``now + lease``; return it, or None.

    ``on_claim`` runs inside the claiming transaction once the claim is made
    (an engine schedules its look after the lease there: both or neither).
    """
    db = router.db_for_write(OutboxMessage)
    lease_until = now + timedelta(seconds=lease)
    with transaction.atomic(using=db):
        rows = OutboxMessage.objects.using(db).filter(_available(now), pk=message_id)
        if connections[db].features.has_select_for_update_skip_locked:
            if not list(rows.select_for_update(skip_locked=True).values_list("pk", flat=True)):
                return None
        claimed = rows.update(state=_State.SENDING, lease_until=lease_until, claimed_by=token)
        if claimed and on_claim is not None:
            on_claim(message_id, lease_until)
    if not claimed:
        return None
    return OutboxMessage.objects.using(db).get(pk=message_id)


def due_messages(*, now: datetime | None = None, limit: int = 100) -> list[UUID]:
    """Return the ids of messages available to a worker at ``now``, by priority then due time."""
    now = now or timezone.now()
    rows = OutboxMessage.objects.filter(_available(now)).order_by("-priority", "next_attempt_at")
    return list(rows.values_list("pk", flat=True)[:limit])


def deliver_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Deliver every message available at ``now`` (at most ``limit``); return how many ran."""
    ran = 0
    for message_id in due_messages(now=now, limit=limit):
        ran += deliver(message_id, now=now) is not None
    return ran


def mailer_backend(alias: str) -> EmailBackend:
    """Return the Django backend that sends for ``MAILER`` ``alias``.

    A MAILERS alias on Django 6.1+ (when MAILERS is set; its BACKEND must be
    :class:`~django_amsdal_mail.backend.EmailBackend`), else the ``EMAIL_*``
    settings through that backend (then ``alias`` must be ``"default"``).
    """
    if django.VERSION >= (6, 1) and hasattr(settings, "MAILERS"):
        from django.core.mail import mailers

        backend = mailers[alias]
        if not isinstance(backend, EmailBackend):
            raise ImproperlyConfigured(
                f"MAILERS[{alias!r}] is used by the outbox to send, so its BACKEND must be "
                f"django_amsdal_mail.backend.EmailBackend, not {type(backend).__name__}."
            )
        return backend
    if alias != "default":
        raise ImproperlyConfigured(
            f"the outbox MAILER {alias!r} needs MAILERS (Django 6.1+); without it, "
            "only 'default' (the EMAIL_* settings) exists."
        )
    return EmailBackend()


def _policy_rows(rows: Iterable[OutboxRecipient], *, begun: bool = False) -> list[policy.Recipient]:
    return [
        policy.Recipient(
            address=r.address,
            status=r.status,
            attempts=r.attempts + begun,
            unknowns=r.unknowns,
            next_attempt_at=r.next_attempt_at,
        )
        for r in rows
    ]


def _record(
    rows: Sequence[OutboxRecipient], decisions: Sequence[policy.Decision], *, token: str
) -> None:
    """Store the decisions, for each row only while its ``attempt_token`` is ``token``."""
    by_address = {row.address: row for row in rows}
    with transaction.atomic(using=router.db_for_write(OutboxRecipient)):
        for decision in decisions:
            stored = OutboxRecipient.objects.filter(
                pk=by_address[decision.address].pk, attempt_token=token
            ).update(
                status=decision.status,
                code=decision.code,
                response=decision.response,
                attempts=decision.attempts,
                unknowns=decision.unknowns,
                next_attempt_at=decision.next_attempt_at,
                attempt_token="",
                updated_at=timezone.now(),
            )
            if not stored:
                logger.warning(
                    "outbox: %s was taken over by another worker; this outcome is dropped: %s",
                    decision.address,
                    decision.status,
                )


def _send(backend: BaseBackend, message: EmailMessage) -> dict[str, RecipientStatus]:
    if isinstance(backend, BaseBackend):
        return backend.send_message(message).recipients
    backend.send_messages([message])  # a duck-typed backend
    return message.status.recipients if message.status else {}


def deliver(
    message_id: UUID | str,
    *,
    now: datetime | None = None,
    token: str | None = None,
    on_claim: OnClaim | None = None,
) -> OutboxMessage | None:
    """Make one attempt at the message if it is available; return it, or None if not.

    Transport failures are recorded, not raised. An unexpected error while
    sending leaves the recipients of the attempt ``unknown`` and is raised.
    ``on_claim`` is given to :func:`claim`.
    """
    rules = outbox_settings()
    started = now or timezone.now()
    token = token or _token()
    message = claim(
        UUID(str(message_id)), now=started, token=token, lease=rules.lease, on_claim=on_claim
    )
    if message is None:
        return None
    first = message.first_attempt_at or started
    rows = list(message.recipients.all())
    stale = [r for r in rows if r.attempt_token]
    for old in {r.attempt_token for r in stale}:
        group = [r for r in stale if r.attempt_token == old]
        decisions = policy.died(
            _policy_rows(group), now=started, first_attempt_at=first, rules=rules
        )
        _record(group, decisions, token=old)
    if stale:
        rows = list(message.recipients.all())
    due_rows = [
        r for r in rows if r.address in {p.address for p in policy.due(_policy_rows(rows), started)}
    ]
    status = None
    if due_rows:
        try:
            backend = mailer_backend(message.mailer)
        except ImproperlyConfigured as error:
            # Nothing was attempted: give the message back at once, not after the lease.
            OutboxMessage.objects.filter(pk=message.pk, claimed_by=token).update(
                state=_State.QUEUED, lease_until=None, claimed_by="", last_error=str(error)
            )
            raise
        status = _attempt(
            message, due_rows, backend, first=first, now=now, token=token, rules=rules
        )
    return _release(message, status, changed=bool(stale), token=token, rules=rules)


def _attempt(
    message: OutboxMessage,
    rows: list[OutboxRecipient],
    django_backend: EmailBackend,
    *,
    first: datetime,
    now: datetime | None,
    token: str,
    rules: OutboxSettings,
) -> SendStatus:
    """Send to ``rows`` and record each decision; return this attempt's status."""
    stored = storage.loads(message.payload)
    outgoing = storage.for_attempt(stored, [r.address for r in rows])
    backend = django_backend.amsdal_backend
    message.attempts += 1
    message.first_attempt_at = first
    outcome: dict[str, RecipientStatus] | TransportError
    record_token = ""
    try:
        try:
            backend.open()
        except TransportError as error:  # a refused connection is an attempt
            outcome = error
            begun = False
        else:
            _begin(message, rows, now=now or timezone.now(), token=token, rules=rules)
            begun, record_token = True, token
            try:
                outcome = _send(backend, outgoing)
            except TransportError as error:
                outcome = error
            except InvalidMessageError as error:
                outcome = {r.address: RecipientStatus("invalid", response=str(error)) for r in rows}
            except Exception:
                _record(
                    rows,
                    policy.died(
                        _policy_rows(rows, begun=True),
                        now=now or timezone.now(),
                        first_attempt_at=first,
                        rules=rules,
                    ),
                    token=token,
                )
                raise
    finally:
        backend.close()
    decisions = policy.decide(
        _policy_rows(rows, begun=True),
        outcome,
        now=now or timezone.now(),
        first_attempt_at=first,
        rules=rules,
    )
    if not begun:
        OutboxMessage.objects.filter(pk=message.pk, claimed_by=token).update(
            attempts=message.attempts, first_attempt_at=first
        )
    _record(rows, decisions, token=record_token)
    if isinstance(outcome, TransportError):
        message.last_error = str(outcome)
    attempt_status = SendStatus(
        recipients={
            d.address: RecipientStatus(d.status, code=d.code, response=d.response or None)
            for d in decisions
        }
    )
    _signal_post_send(django_backend, message, stored, attempt_status)
    return attempt_status


def _begin(
    message: OutboxMessage,
    rows: list[OutboxRecipient],
    *,
    now: datetime,
    token: str,
    rules: OutboxSettings,
) -> None:
    """Record durably, before the message is handed over, that this attempt began."""
    db = router.db_for_write(OutboxMessage)
    with transaction.atomic(using=db):
        OutboxMessage.objects.using(db).filter(pk=message.pk, claimed_by=token).update(
            attempts=message.attempts,
            first_attempt_at=message.first_attempt_at,
            lease_until=now + timedelta(seconds=rules.lease),
        )
        OutboxRecipient.objects.using(db).filter(pk__in=[r.pk for r in rows]).update(
            attempts=F("attempts") + 1, attempt_token=token
        )


def _signal_post_send(
    backend: EmailBackend, message: OutboxMessage, stored: EmailMessage, status: SendStatus
) -> None:
    django_message = storage.to_django(stored)
    django_message.amsdal_status = status  # type: ignore[attr-defined]
    post_send.send(
        sender=type(backend),
        message=django_message,
        status=status,
        backend=backend,
        outbox_message=message,
        attempt=message.attempts,
    )


def _release(
    message: OutboxMessage,
    status: SendStatus | None,
    *,
    changed: bool,
    token: str,
    rules: OutboxSettings,
) -> OutboxMessage:
    """Return the message to ``queued`` (next due time) or ``done``; tell the engine or signal.

    The engine is told of the next due time only when this run changed it (an
    attempt, or a take-up), so an early task does not schedule one more.
    """
    rows = list(message.recipients.all())
    next_at = policy.next_due(_policy_rows(rows))
    state = _State.DONE if next_at is None else _State.QUEUED
    released = OutboxMessage.objects.filter(pk=message.pk, claimed_by=token).update(
        state=state,
        next_attempt_at=next_at,
        lease_until=None,
        claimed_by="",
        last_error=message.last_error,
        updated_at=timezone.now(),
    )
    message.refresh_from_db()
    if not released:
        logger.warning("outbox: message %s was taken over by another worker", message.pk)
        return message
    if next_at is None:
        outbox_finished.send(
            sender=OutboxMessage,
            outbox_message=message,
            status=_final_status(rows, message.message_id),
        )
    elif status is not None or changed:
        engine(rules)([message.pk], next_at)
    return message


def _final_status(rows: Iterable[OutboxRecipient], message_id: str) -> SendStatus:
    return SendStatus(
        recipients={
            r.address: RecipientStatus(r.status, code=r.code, response=r.response or None)
            for r in rows
        },
        message_id=message_id,
    )
