"""The retry policy as a table: recipients and an outcome in, decisions out (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from amsdal_mail import ConnectError, RecipientStatus, TransportError
from django_amsdal_mail.outbox.conf import OutboxSettings
from django_amsdal_mail.outbox.policy import DIED, Decision, Recipient, decide, died, due, next_due

from .conftest import T0, at

RULES = OutboxSettings(
    max_attempts=4, retry_backoff=60, max_retry_delay=200, max_age=3600, on_unknown="report"
)
RESEND = OutboxSettings(
    max_attempts=4, retry_backoff=60, max_retry_delay=200, max_age=3600, on_unknown="resend"
)


def _one(
    recipient: Recipient,
    outcome: RecipientStatus | TransportError,
    *,
    now: datetime = T0,
    first: datetime = T0,
    rules: OutboxSettings = RULES,
) -> Decision:
    given = outcome if isinstance(outcome, TransportError) else {recipient.address: outcome}
    (decision,) = decide([recipient], given, now=now, first_attempt_at=first, rules=rules)
    return decision


A = "a@example.com"

# (attempts including this one, unknowns before, outcome, rules, now, first) ->
# (status, code, final or the seconds after now it is due again)
TABLE = [
    pytest.param(
        1, 0, RecipientStatus("sent", code=250), RULES, T0, T0, ("sent", 250, None), id="sent"
    ),
    pytest.param(
        1,
        0,
        RecipientStatus("queued"),
        RULES,
        T0,
        T0,
        ("sent", None, None),
        id="esp-queued-is-accepted",
    ),
    pytest.param(
        1,
        0,
        RecipientStatus("rejected", code=550),
        RULES,
        T0,
        T0,
        ("rejected", 550, None),
        id="5xx-final-at-once",
    ),
    pytest.param(
        1, 0, RecipientStatus("invalid"), RULES, T0, T0, ("invalid", None, None), id="invalid-final"
    ),
    pytest.param(
        1,
        0,
        RecipientStatus("failed", code=450),
        RULES,
        T0,
        T0,
        ("failed", 450, 60),
        id="4xx-first-retry-after-backoff",
    ),
    pytest.param(
        2,
        0,
        RecipientStatus("failed", code=451),
        RULES,
        T0,
        T0,
        ("failed", 451, 120),
        id="4xx-backoff-doubles",
    ),
    pytest.param(
        3,
        0,
        RecipientStatus("failed", code=451),
        RULES,
        T0,
        T0,
        ("failed", 451, 200),
        id="4xx-backoff-capped",
    ),
    pytest.param(
        4,
        0,
        RecipientStatus("failed", code=451),
        RULES,
        T0,
        T0,
        ("failed", 451, None),
        id="4xx-final-at-max-attempts",
    ),
    pytest.param(
        1,
        0,
        ConnectError("refused"),
        RULES,
        T0,
        T0,
        ("failed", None, 60),
        id="connection-refused-is-an-attempt",
    ),
    pytest.param(
        4,
        0,
        ConnectError("refused"),
        RULES,
        T0,
        T0,
        ("failed", None, None),
        id="connection-final-at-max-attempts",
    ),
    pytest.param(
        2,
        0,
        RecipientStatus("failed", code=450),
        RULES,
        at(3500),
        T0,
        ("failed", 450, None),
        id="no-attempt-after-max-age",
    ),
    pytest.param(
        2,
        0,
        RecipientStatus("failed", code=450),
        RULES,
        at(3480),
        T0,
        ("failed", 450, 120),
        id="attempt-at-max-age-allowed",
    ),
    pytest.param(
        1,
        0,
        RecipientStatus("unknown"),
        RULES,
        T0,
        T0,
        ("unknown", None, None),
        id="unknown-reported-never-resent",
    ),
    pytest.param(
        1,
        0,
        RecipientStatus("unknown"),
        RESEND,
        T0,
        T0,
        ("unknown", None, 60),
        id="unknown-resent-once",
    ),
    pytest.param(
        2,
        1,
        RecipientStatus("unknown"),
        RESEND,
        T0,
        T0,
        ("unknown", None, None),
        id="second-unknown-final",
    ),
    pytest.param(
        4,
        0,
        RecipientStatus("unknown"),
        RESEND,
        T0,
        T0,
        ("unknown", None, None),
        id="unknown-resend-within-max-attempts",
    ),
]


@pytest.mark.parametrize(
    ("attempts", "unknowns", "outcome", "rules", "now", "first", "expected"), TABLE
)
def test_decision_table(
    attempts: int,
    unknowns: int,
    outcome: RecipientStatus | TransportError,
    rules: OutboxSettings,
    now: datetime,
    first: datetime,
    expected: tuple[str, int | None, float | None],
) -> None:
    """Each row: one recipient, one attempt's outcome, the decision the policy makes."""
    recipient = Recipient(A, "queued", attempts=attempts, unknowns=unknowns, next_attempt_at=T0)
    decision = _one(recipient, outcome, now=now, first=first, rules=rules)
    status, code, again = expected
    assert (decision.status, decision.code) == (status, code)
    assert decision.attempts == attempts
    if again is None:
        assert decision.next_attempt_at is None and decision.is_final
    else:
        assert decision.next_attempt_at == now + timedelta(seconds=again)
        assert not decision.is_final


def test_connection_error_text_and_code_are_kept() -> None:
    """A transport error's text (and SMTP code, when it has one) is the recipient's response."""
    decision = _one(Recipient(A, attempts=1), ConnectError("Connection refused"))
    assert decision.status == "failed"
    assert "Connection refused" in decision.response


def test_a_recipient_missing_from_the_outcome_is_unknown() -> None:
    """A backend that says nothing about a recipient leaves it unknown, never 'sent'."""
    (decision,) = decide([Recipient(A, attempts=1)], {}, now=T0, first_attempt_at=T0, rules=RULES)
    assert decision.status == "unknown" and decision.is_final


def test_unknowns_are_counted() -> None:
    """An unknown outcome counts; others leave the count alone."""
    assert _one(Recipient(A, attempts=1), RecipientStatus("unknown")).unknowns == 1
    assert _one(Recipient(A, attempts=2, unknowns=1), RecipientStatus("sent")).unknowns == 1


@pytest.mark.parametrize(("rules", "again"), [(RULES, None), (RESEND, 60.0)])
def test_a_worker_that_died_leaves_its_recipients_unknown(
    rules: OutboxSettings, again: float | None
) -> None:
    """In flight when the worker died: unknown; resent once only with ON_UNKNOWN='resend'."""
    (decision,) = died([Recipient(A, attempts=1)], now=T0, first_attempt_at=T0, rules=rules)
    assert decision.status == "unknown" and decision.response == DIED
    expected = None if again is None else T0 + timedelta(seconds=again)
    assert decision.next_attempt_at == expected


def test_due_sends_only_to_recipients_not_final_and_due() -> None:
    """Final statuses are never due; a failed or unknown one only at its time; queued when due."""
    rows = [
        Recipient("queued@x.test", "queued", next_attempt_at=T0),
        Recipient("later@x.test", "queued", next_attempt_at=at(10)),
        Recipient("sent@x.test", "sent", next_attempt_at=None),
        Recipient("rejected@x.test", "rejected", next_attempt_at=None),
        Recipient("invalid@x.test", "invalid", next_attempt_at=None),
        Recipient("failed-due@x.test", "failed", next_attempt_at=at(-1)),
        Recipient("failed-later@x.test", "failed", next_attempt_at=at(60)),
        Recipient("failed-final@x.test", "failed", next_attempt_at=None),
        Recipient("unknown-final@x.test", "unknown", next_attempt_at=None),
        Recipient("unknown-resend@x.test", "unknown", next_attempt_at=T0),
        # A final word with a stray due time is still final.
        Recipient("sent-stray@x.test", "sent", next_attempt_at=T0),
    ]
    assert [r.address for r in due(rows, T0)] == [
        "queued@x.test",
        "failed-due@x.test",
        "unknown-resend@x.test",
    ]
    assert next_due(rows) == at(-1)
    assert next_due([Recipient(A, "sent")]) is None
