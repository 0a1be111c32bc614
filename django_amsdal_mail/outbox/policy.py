"""The retry policy: pure decisions about recipients, no database and no I/O.

Given the recipients of one attempt (as :class:`Recipient`, with
``attempts`` already counting this attempt), what the attempt produced (the
library's statuses, or the error that stopped it) and the time, return each
recipient's new :class:`Decision`:

* accepted (``sent``; an ESP's ``queued`` counts as accepted) -- final;
* ``rejected`` (5xx) and ``invalid`` -- final after one attempt;
* ``failed`` (4xx, or the connection failed: a refused connection is an
  attempt) -- due again after ``RETRY_BACKOFF * 2**(n-1)`` seconds, at most
  ``MAX_RETRY_DELAY``; final once ``MAX_ATTEMPTS`` attempts were made or the
  next would start later than ``MAX_AGE`` after the first attempt;
* ``unknown`` (the data went out, no reply; or the worker died during the
  attempt) -- final with ``ON_UNKNOWN="report"``; with ``"resend"`` due again
  like a failure, once: a second unknown is final.

A recipient is final when its ``next_attempt_at`` is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from amsdal_mail import RecipientStatus, TransportError

from .conf import OutboxSettings

__all__ = ["Decision", "Recipient", "decide", "died", "due", "next_due"]

_ACCEPTED: Final = frozenset({"sent", "queued"})
_FINAL: Final = frozenset({"sent", "rejected", "invalid"})
#: Why a recipient whose attempt was in flight when its worker died is unknown.
DIED: Final = (
    "the worker ended during the attempt, after it began handing the message over; "
    "the server may or may not have accepted it"
)


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the policy knows of one recipient."""

    address: str
    status: str = "queued"
    attempts: int = 0
    unknowns: int = 0
    next_attempt_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """A recipient's new state after an attempt."""

    address: str
    status: str
    code: int | None
    response: str
    attempts: int
    unknowns: int
    next_attempt_at: datetime | None

    @property
    def is_final(self) -> bool:
        """Return True when nothing more will be sent to this recipient."""
        return self.next_attempt_at is None


def due(recipients: Iterable[Recipient], now: datetime) -> list[Recipient]:
    """Return the recipients an attempt at ``now`` sends to (not final, and due)."""
    return [
        r
        for r in recipients
        if r.status not in _FINAL and r.next_attempt_at is not None and r.next_attempt_at <= now
    ]


def next_due(recipients: Iterable[Recipient | Decision]) -> datetime | None:
    """Return when the next recipient is due, or None when every one is final."""
    times = [r.next_attempt_at for r in recipients if r.next_attempt_at is not None]
    return min(times) if times else None


def decide(
    recipients: Sequence[Recipient],
    outcome: Mapping[str, RecipientStatus] | TransportError,
    *,
    now: datetime,
    first_attempt_at: datetime,
    rules: OutboxSettings,
) -> list[Decision]:
    """Return each recipient's decision after an attempt that produced ``outcome``.

    ``outcome`` maps addresses to the library's statuses (a recipient missing
    from it is ``unknown``), or is the error that ended the attempt before
    the data was handed over (every recipient ``failed``).
    """
    decisions = []
    for recipient in recipients:
        if isinstance(outcome, TransportError):
            code = getattr(outcome, "smtp_code", None)
            status = RecipientStatus("failed", code=code, response=f"not sent: {outcome}")
        else:
            status = outcome.get(recipient.address) or RecipientStatus(
                "unknown", response="the backend reported nothing for this recipient"
            )
        decisions.append(_decide_one(recipient, status, now, first_attempt_at, rules))
    return decisions


def died(
    recipients: Sequence[Recipient],
    *,
    now: datetime,
    first_attempt_at: datetime,
    rules: OutboxSettings,
) -> list[Decision]:
    """Return the decisions for recipients whose worker died during their attempt."""
    status = RecipientStatus("unknown", response=DIED)
    return [_decide_one(r, status, now, first_attempt_at, rules) for r in recipients]


def _decide_one(
    recipient: Recipient,
    status: RecipientStatus,
    now: datetime,
    first_attempt_at: datetime,
    rules: OutboxSettings,
) -> Decision:
    word = "sent" if status.status in _ACCEPTED else status.status
    unknowns = recipient.unknowns + (word == "unknown")
    retry: datetime | None = None
    if word == "failed" or (word == "unknown" and rules.on_unknown == "resend" and unknowns == 1):
        retry = _retry_at(recipient.attempts, now, first_attempt_at, rules)
    return Decision(
        address=recipient.address,
        status=word,
        code=status.code,
        response=status.response or "",
        attempts=recipient.attempts,
        unknowns=unknowns,
        next_attempt_at=retry,
    )


def _retry_at(
    attempts: int, now: datetime, first_attempt_at: datetime, rules: OutboxSettings
) -> datetime | None:
    """Return when attempt ``attempts + 1`` is due, or None when there is none."""
    if attempts >= rules.max_attempts:
        return None
    delay = min(rules.retry_backoff * 2 ** (max(attempts, 1) - 1), rules.max_retry_delay)
    at = now + timedelta(seconds=delay)
    if at > first_attempt_at + timedelta(seconds=rules.max_age):
        return None
    return at
