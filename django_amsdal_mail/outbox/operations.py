"""What an operator does with the outbox: retry, cancel, prune, count.

The admin's actions and ``manage.py amsdal_outbox`` both call these; each
takes the messages to act on (a queryset, or None for the whole outbox) and
``now`` (so tests drive the clock), and returns what it did as a small
frozen value the caller reports.

Rules every operation keeps:

* **A message being sent is not disturbed.** A ``sending`` message (a worker
  holds it, or held it and died: its lease then runs out and a worker takes
  it up) is left alone by :func:`retry` and :func:`cancel` and counted as
  ``busy``; do it again once the attempt has ended (within ``LEASE``
  seconds). Every change is a conditional UPDATE on the message's state,
  made after locking the rows (``SELECT ... FOR UPDATE`` where the database
  has it; SQLite serialises writers), so a worker claiming the message at
  the same moment either wins (the message is then busy) or claims it after
  the change was committed.
* :func:`retry` ("Retry now") puts the ``failed`` and/or ``unknown``
  recipients back to ``queued``, due now, and **starts the count again**:
  their ``attempts`` (and the unknown count of ``ON_UNKNOWN="resend"``) go
  back to 0 and the message's ``attempts`` and ``first_attempt_at`` are
  cleared, so ``MAX_ATTEMPTS`` and ``MAX_AGE`` apply afresh and the next
  attempt is attempt 1. The engine is told on commit. A ``cancelled``
  message is not retried. Recipients already ``sent``, ``rejected`` or
  ``invalid`` are never touched.
* :func:`cancel` stops a ``queued`` message: its state becomes
  ``cancelled`` and every recipient not final is made final as it stands,
  ``next_attempt_at`` cleared: a ``queued`` one stays ``queued`` (its
  response says it was cancelled before it was sent), a ``failed`` or
  ``unknown`` one keeps its status and last reply; recipients already sent
  stay sent. ``done`` and ``cancelled`` messages
  are left as they are.
* :func:`prune` deletes ``done`` and ``cancelled`` messages (and their
  recipient rows) whose ``updated_at`` -- when they became done or
  cancelled, as nothing changes them afterwards -- is older than the given
  age; never a ``queued`` or ``sending`` one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from django.db import connections, router, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from .conf import outbox_settings
from .engines import engine
from .models import FINAL_ALWAYS, OutboxMessage, OutboxRecipient

__all__ = [
    "CANCELLED_RESPONSE",
    "RETRYABLE",
    "CancelResult",
    "OutboxCounts",
    "PruneResult",
    "RetryResult",
    "cancel",
    "counts",
    "prune",
    "retry",
]

_State = OutboxMessage.State
_Status = OutboxRecipient.Status

#: The recipient statuses "Retry now" puts back to ``queued``.
RETRYABLE: Final = frozenset({_Status.FAILED.value, _Status.UNKNOWN.value})
#: The message states :func:`prune` may delete.
_FINISHED: Final = (_State.DONE, _State.CANCELLED)
#: The response stored for a recipient whose message was cancelled before it was final.
CANCELLED_RESPONSE: Final = "cancelled before it was sent"
_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class RetryResult:
    """What :func:`retry` did.

    ``messages`` and ``recipients`` were put back to queued; ``busy`` messages
    were being sent and left alone; ``cancelled`` messages are not retried;
    ``message_ids`` are the messages the engine was told of.
    """

    messages: int = 0
    recipients: int = 0
    busy: int = 0
    cancelled: int = 0
    message_ids: tuple[UUID, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What :func:`cancel` did.

    ``messages`` were cancelled, ``recipients`` of them stopped before they
    were final; ``busy`` messages were being sent and left alone;
    ``finished`` ones were already done or cancelled.
    """

    messages: int = 0
    recipients: int = 0
    busy: int = 0
    finished: int = 0


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What :func:`prune` deleted: messages and their recipient rows, finished before ``cutoff``."""

    messages: int
    recipients: int
    cutoff: datetime


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """The outbox at a glance.

    ``messages`` counts messages per state and ``recipients`` recipients per
    status (every state and status present, 0 included); ``due_now`` queued
    messages are due (a worker would take them now), ``lease_expired``
    messages are ``sending`` past their lease (their worker died; the next
    worker takes them up); ``oldest_queued_at`` is when the oldest queued
    message was enqueued and ``next_due_at`` the earliest due time of a
    queued message (None when nothing is queued).
    """

    messages: dict[str, int]
    recipients: dict[str, int]
    due_now: int
    lease_expired: int
    oldest_queued_at: datetime | None
    next_due_at: datetime | None
    now: datetime

    def as_dict(self) -> dict[str, Any]:
        """Return the counts as JSON-ready values (times in ISO 8601)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "messages": dict(self.messages),
            "recipients": dict(self.recipients),
            "due_now": self.due_now,
            "lease_expired": self.lease_expired,
            "oldest_queued_at": iso(self.oldest_queued_at),
            "next_due_at": iso(self.next_due_at),
            "now": iso(self.now),
        }


def _scope(messages: QuerySet[OutboxMessage] | None) -> QuerySet[OutboxMessage]:
    """Return a plain queryset of the messages (no annotations, ordering or joins of the caller)."""
    if messages is None:
        return OutboxMessage.objects.all()
    # A subquery, not a list of ids: an admin's "select all" may hold more ids than
    # a database takes as parameters.
    return OutboxMessage.objects.filter(pk__in=messages.order_by().values("pk"))


def _lock(rows: QuerySet[OutboxMessage], db: str) -> list[UUID]:
    """Return the ids of ``rows``, locked until the transaction ends where the database can."""
    if connections[db].features.has_select_for_update:
        rows = rows.select_for_update()
    return list(rows.values_list("pk", flat=True))


def _batches(ids: list[UUID]) -> Iterable[list[UUID]]:
    for start in range(0, len(ids), _BATCH):
        yield ids[start : start + _BATCH]


def retry(
    messages: QuerySet[OutboxMessage] | None = None,
    *,
    statuses: Collection[str] = RETRYABLE,
    now: datetime | None = None,
) -> RetryResult:
    """Put the ``statuses`` recipients of ``messages`` back to queued, due now; tell the engine.

    ``messages`` None means every message. ``statuses`` is a subset of
    ``{"failed", "unknown"}``. The count starts again (see the module
    docstring); ``sending`` messages are left alone, ``cancelled`` ones are
    not retried.

    Raises:
        ValueError: ``statuses`` is empty or names a status that cannot be retried.
        django.core.exceptions.ImproperlyConfigured: bad outbox settings, or
            an engine this version does not provide (raised before anything
            is changed).
    """
    wanted = frozenset(statuses)
    if not wanted or not wanted <= RETRYABLE:
        raise ValueError(
            f"retry statuses must be a non-empty subset of {sorted(RETRYABLE)}, "
            f"not {sorted(wanted)}"
        )
    notify = engine(outbox_settings())
    now = now or timezone.now()
    retryable = Q(status__in=wanted, attempt_token="")
    scope = _scope(messages)
    with_candidates = scope.filter(
        pk__in=OutboxRecipient.objects.filter(retryable).values("message_id")
    )
    db = router.db_for_write(OutboxMessage)
    with transaction.atomic(using=db):
        ids = _lock(with_candidates.filter(state__in=(_State.QUEUED, _State.DONE)), db)
        # Counted once the rows are locked: a claim that won the race shows as busy.
        busy = scope.filter(state=_State.SENDING).exclude(pk__in=ids).count()
        cancelled = with_candidates.filter(state=_State.CANCELLED).count()
        touched = 0
        recipients = 0
        for batch in _batches(ids):
            # Conditional on the state again: on a database without row locks a
            # worker may have claimed one since; that one is left to the worker.
            touched += (
                OutboxMessage.objects.using(db)
                .filter(pk__in=batch, state__in=(_State.QUEUED, _State.DONE))
                .update(
                    state=_State.QUEUED,
                    next_attempt_at=now,
                    attempts=0,
                    first_attempt_at=None,
                    lease_until=None,
                    claimed_by="",
                    last_error="",
                    updated_at=now,
                )
            )
            recipients += (
                OutboxRecipient.objects.using(db)
                .filter(retryable, message_id__in=batch, message__state=_State.QUEUED)
                .update(
                    status=_Status.QUEUED,
                    code=None,
                    response="",
                    attempts=0,
                    unknowns=0,
                    next_attempt_at=now,
                    updated_at=now,
                )
            )
        busy += len(ids) - touched
        if ids:
            told = list(ids)
            transaction.on_commit(lambda: notify(told, None), using=db)
    return RetryResult(touched, recipients, busy, cancelled, tuple(ids))


def cancel(
    messages: QuerySet[OutboxMessage] | None = None, *, now: datetime | None = None
) -> CancelResult:
    """Cancel the ``queued`` ``messages`` (None: every queued message); see the module docstring.

    Nothing more is sent to any of their recipients; recipients already sent
    stay sent. ``sending`` messages are left alone and counted as busy.
    """
    now = now or timezone.now()
    scope = _scope(messages)
    db = router.db_for_write(OutboxMessage)
    with transaction.atomic(using=db):
        ids = _lock(scope.filter(state=_State.QUEUED), db)
        busy = scope.filter(state=_State.SENDING).exclude(pk__in=ids).count()
        finished = scope.filter(state__in=_FINISHED).count()
        cancelled = 0
        stopped = 0
        for batch in _batches(ids):
            cancelled += (
                OutboxMessage.objects.using(db)
                .filter(pk__in=batch, state=_State.QUEUED)
                .update(
                    state=_State.CANCELLED,
                    next_attempt_at=None,
                    lease_until=None,
                    claimed_by="",
                    updated_at=now,
                )
            )
            pending = (
                OutboxRecipient.objects.using(db)
                .filter(message_id__in=batch, message__state=_State.CANCELLED)
                .exclude(status__in=FINAL_ALWAYS)
                .filter(next_attempt_at__isnull=False)
            )
            # Never attempted: say why it never will be. Attempted: keep the last reply.
            stopped += pending.filter(status=_Status.QUEUED).update(
                next_attempt_at=None, response=CANCELLED_RESPONSE, updated_at=now
            )
            stopped += pending.update(next_attempt_at=None, updated_at=now)
        busy += len(ids) - cancelled
    return CancelResult(cancelled, stopped, busy, finished)


def prune(
    older_than: timedelta,
    *,
    messages: QuerySet[OutboxMessage] | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Delete the done and cancelled messages last updated more than ``older_than`` before now.

    With ``dry_run`` nothing is deleted and the result says what would be.

    Raises:
        ValueError: ``older_than`` is negative.
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, not {older_than}")
    now = now or timezone.now()
    cutoff = now - older_than
    old = Q(state__in=_FINISHED, updated_at__lt=cutoff)
    scope = _scope(messages).filter(old)
    if dry_run:
        return PruneResult(
            scope.count(), OutboxRecipient.objects.filter(message__in=scope).count(), cutoff
        )
    db = router.db_for_write(OutboxMessage)
    deleted_messages = deleted_recipients = 0
    ids = list(scope.values_list("pk", flat=True))
    for batch in _batches(ids):
        with transaction.atomic(using=db):
            locked = _lock(OutboxMessage.objects.using(db).filter(old, pk__in=batch), db)
            # Recipients first, in one statement conditional on the message's
            # state: a message retried meanwhile keeps its rows.
            deleted_recipients += (
                OutboxRecipient.objects.using(db)
                .filter(message_id__in=locked, message__state__in=_FINISHED)
                .filter(message__updated_at__lt=cutoff)
                .delete()[0]
            )
            _, per_model = OutboxMessage.objects.using(db).filter(old, pk__in=locked).delete()
            deleted_messages += per_model.get(OutboxMessage._meta.label, 0)
    return PruneResult(deleted_messages, deleted_recipients, cutoff)


def counts(*, now: datetime | None = None) -> OutboxCounts:
    """Return the per-state and per-status counts, what is due now and the oldest queued."""
    now = now or timezone.now()
    scope = OutboxMessage.objects.all()
    by_state = {state.value: 0 for state in _State}
    for row in scope.values("state").annotate(n=Count("pk")).order_by():
        by_state[row["state"]] = row["n"]
    by_status = {status.value: 0 for status in _Status}
    for status_row in OutboxRecipient.objects.values("status").annotate(n=Count("pk")).order_by():
        by_status[status_row["status"]] = status_row["n"]
    queued = scope.filter(state=_State.QUEUED)
    summary = queued.aggregate(
        due=Count("pk", filter=Q(next_attempt_at__lte=now)),
        oldest=Min("created_at"),
        next_due=Min("next_attempt_at"),
    )
    lease_expired = scope.filter(state=_State.SENDING, lease_until__lt=now).count()
    return OutboxCounts(
        messages=by_state,
        recipients=by_status,
        due_now=summary["due"],
        lease_expired=lease_expired,
        oldest_queued_at=summary["oldest"],
        next_due_at=summary["next_due"],
        now=now,
    )
