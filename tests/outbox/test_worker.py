"""The worker against real SMTP servers: exact per recipient, retries driven by the clock.

Every message is enqueued with ``run_after=T0`` (a time in the future, so the
immediate engine leaves it) and each attempt is made with ``deliver(id, now=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage

from amsdal_mail import EmailMessage as AmsdalMessage
from amsdal_mail import SendStatus
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.message import ValidatedMessage
from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.outbox import enqueue
from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.policy import DIED
from django_amsdal_mail.outbox.worker import claim, deliver
from django_amsdal_mail.signals import outbox_finished, post_send
from tests.faulty_smtpd import FaultyServer
from tests.smtpd import ServerFactory, free_port

from .conftest import T0, at, same_bytes

pytestmark = pytest.mark.django_db(transaction=True)

A, B, C = "ann@example.com", "bob@example.com", "carl@example.com"


def _enqueue(**kwargs: Any) -> OutboxMessage:
    message = EmailMessage("Hello", "Body", "from@example.com", [A, B], cc=[C], **kwargs)
    (row,) = enqueue(message, run_after=T0)
    return row


def _statuses(row: OutboxMessage) -> dict[str, tuple[str, int | None, int]]:
    return {r.address: (r.status, r.code, r.attempts) for r in row.recipients.all()}


def _rcpts(server: FaultyServer, session: int) -> list[str]:
    commands = server.sessions[session].commands
    return [
        c.line.split(":", 1)[1].strip().strip("<>")
        for c in commands
        if c.line.upper().startswith("RCPT")
    ]


def test_a_retry_sends_only_to_recipients_not_final_with_the_same_headers(
    faulty_server: Callable[..., FaultyServer], outbox: Any, connect: Any
) -> None:
    """4xx retried after the backoff, only it gets RCPT; 5xx final at once; headers identical."""
    server = faulty_server(rcpt_replies={B: "450 4.2.0 Mailbox busy", C: "550 5.1.1 No such user"})
    outbox(server.host, server.port)
    posted: list[tuple[int, dict[str, str]]] = []
    finished: list[SendStatus] = []

    def on_post_send(sender: type, message: Any, status: SendStatus, **kwargs: Any) -> None:
        assert sender is EmailBackend and isinstance(kwargs["backend"], EmailBackend)
        assert kwargs["outbox_message"].pk == row.pk and message.to == [A, B]
        posted.append((kwargs["attempt"], {a: r.status for a, r in status.recipients.items()}))

    connect(post_send, on_post_send)
    connect(outbox_finished, lambda sender, outbox_message, status, **kw: finished.append(status))
    row = _enqueue()
    assert server.connections == 0

    deliver(row.pk, now=T0)
    row.refresh_from_db()
    assert _statuses(row) == {A: ("sent", 250, 1), B: ("failed", 450, 1), C: ("rejected", 550, 1)}
    assert (row.state, row.attempts, row.next_attempt_at) == ("queued", 1, at(60))
    assert _rcpts(server, 0) == [A, B, C]

    assert deliver(row.pk, now=at(59)) is None  # not due yet: nothing claimed, nothing sent
    assert server.connections == 1

    server.faults.rcpt_replies.pop(B)
    deliver(row.pk, now=at(60))
    row.refresh_from_db()
    assert _rcpts(server, 1) == [B]
    assert _statuses(row) == {A: ("sent", 250, 1), B: ("sent", 250, 2), C: ("rejected", 550, 1)}
    assert (row.state, row.attempts, row.next_attempt_at) == ("done", 2, None)
    first, second = server.messages
    assert first.rcpt_tos == [A] and second.rcpt_tos == [B]
    assert same_bytes(first.data) == same_bytes(second.data)  # the very same message
    assert first.header("Message-ID") == row.message_id
    assert posted == [(1, {A: "sent", B: "failed", C: "rejected"}), (2, {B: "sent"})]
    assert [{a: r.status for a, r in s.recipients.items()} for s in finished] == [
        {A: "sent", B: "sent", C: "rejected"}
    ]
    assert deliver(row.pk, now=at(10_000)) is None  # done: never sent again
    assert len(server.sessions) == 2


def test_the_outbox_sends_what_the_inline_backend_sends(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """Same Django message, same Message-ID and Date: the outbox's bytes equal the inline ones."""
    server = smtp_server()
    outbox(server.host, server.port)
    from .test_storage import rich_django_message

    EmailBackend(host=server.host, port=server.port).send_messages([rich_django_message()])
    (row,) = enqueue(rich_django_message(), run_after=T0)
    deliver(row.pk, now=T0)
    inline, queued = server.wait_for_messages(2)
    assert queued.rcpt_tos == inline.rcpt_tos
    assert same_bytes(queued.data) == same_bytes(inline.data)


def test_connection_failures_are_attempts_retried_until_max_attempts(
    outbox: Any, settings: Any
) -> None:
    """Nothing listening: each refused connection is an attempt, backoff doubles, then final."""
    outbox("127.0.0.1", free_port(), MAX_ATTEMPTS=3, RETRY_BACKOFF=60)
    row = _enqueue()
    for now, attempts, next_at in [(T0, 1, at(60)), (at(60), 2, at(180)), (at(180), 3, None)]:
        assert deliver(row.pk, now=now) is not None
        row.refresh_from_db()
        assert row.attempts == attempts and row.next_attempt_at == next_at
        assert {s for s, _, n in _statuses(row).values() if n == attempts} == {"failed"}
    assert row.state == "done" and "not sent" in row.recipients.first().response  # type: ignore[union-attr]
    assert row.last_error


def test_the_server_down_for_a_while_then_back_delivers_everything(
    smtp_server: ServerFactory, outbox: Any, settings: Any
) -> None:
    """Refused connections, then a server: every recipient sent, once."""
    outbox("127.0.0.1", free_port())
    row = _enqueue()
    deliver(row.pk, now=T0)
    deliver(row.pk, now=at(60))
    server = smtp_server()
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port  # back up
    deliver(row.pk, now=at(180))
    row.refresh_from_db()
    assert _statuses(row) == {A: ("sent", 250, 3), B: ("sent", 250, 3), C: ("sent", 250, 3)}
    assert [m.rcpt_tos for m in server.messages] == [[A, B, C]]


def test_no_attempt_after_max_age(faulty_server: Callable[..., FaultyServer], outbox: Any) -> None:
    """A retry that would start later than MAX_AGE after the first attempt is not made."""
    server = faulty_server(rcpt_replies={A: "451 4.3.0 Try later"})
    outbox(server.host, server.port, MAX_AGE=100, RETRY_BACKOFF=60)
    row = _enqueue()
    deliver(row.pk, now=T0)
    deliver(row.pk, now=at(60))
    row.refresh_from_db()
    assert _statuses(row)[A] == ("failed", 451, 2)
    assert (row.state, row.next_attempt_at) == ("done", None)


def test_data_sent_then_no_reply_is_unknown_and_never_resent(
    faulty_server: Callable[..., FaultyServer], outbox: Any
) -> None:
    """ON_UNKNOWN='report': the server stored it, the reply was lost: unknown, final."""
    server = faulty_server(drop_before_reply={1})
    outbox(server.host, server.port)
    row = _enqueue()
    deliver(row.pk, now=T0)
    row.refresh_from_db()
    assert {s for s, _, _ in _statuses(row).values()} == {"unknown"}
    assert row.state == "done"
    assert deliver(row.pk, now=at(10_000)) is None
    assert len(server.attempts) == 1


def test_unknown_is_resent_once_with_resend(
    faulty_server: Callable[..., FaultyServer], outbox: Any
) -> None:
    """ON_UNKNOWN='resend': unknown again after the resend is final; a third attempt never comes."""
    server = faulty_server(drop_before_reply={1, 2})
    outbox(server.host, server.port, ON_UNKNOWN="resend")
    row = _enqueue()
    deliver(row.pk, now=T0)
    row.refresh_from_db()
    assert row.next_attempt_at == at(60)
    deliver(row.pk, now=at(60))
    row.refresh_from_db()
    assert {v for v in _statuses(row).values()} == {("unknown", None, 2)}
    assert (row.state, len(server.attempts)) == ("done", 2)


class DyingSMTPBackend(SMTPBackend):
    """Sends over SMTP, then the process "dies" before the worker records anything.

    ``SystemExit`` is what a worker shut down mid-task sees; like SIGKILL, no
    ``except Exception`` of the worker records an outcome.
    """

    def _deliver(self, message: AmsdalMessage, valid: ValidatedMessage) -> SendStatus:
        super()._deliver(message, valid)
        raise SystemExit("worker killed after the data went out")


@pytest.mark.parametrize(("on_unknown", "sends"), [("report", 1), ("resend", 2)])
def test_a_worker_that_died_during_the_attempt_leaves_unknown(
    smtp_server: ServerFactory, outbox: Any, monkeypatch: pytest.MonkeyPatch, on_unknown: str,
    sends: int,
) -> None:  # fmt: skip
    """Taken up after the lease: in-flight recipients unknown; resent once only with 'resend'."""
    server = smtp_server()
    outbox(server.host, server.port, ON_UNKNOWN=on_unknown, LEASE=60)
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", f"{__name__}.DyingSMTPBackend")
    row = _enqueue()
    with pytest.raises(SystemExit):
        deliver(row.pk, now=T0)
    row.refresh_from_db()
    assert row.state == "sending" and row.lease_until == at(60)
    assert set(row.recipients.values_list("status", flat=True)) == {"queued"}
    assert all(row.recipients.values_list("attempt_token", flat=True))  # "attempt begun"
    assert len(server.messages) == 1

    monkeypatch.delenv("AMSDAL_EMAIL_BACKEND")
    assert deliver(row.pk, now=at(59)) is None  # the lease still holds
    deliver(row.pk, now=at(61))
    row.refresh_from_db()
    assert {(s, n) for s, _, n in _statuses(row).values()} == {("unknown", 1)}
    assert set(row.recipients.values_list("response", flat=True)) == {DIED}
    if on_unknown == "resend":
        assert row.next_attempt_at == at(121)
        deliver(row.pk, now=at(121))
        row.refresh_from_db()
        assert {(s, n) for s, _, n in _statuses(row).values()} == {("sent", 2)}
    assert row.state == "done"
    assert deliver(row.pk, now=at(10_000)) is None
    assert len(server.messages) == sends


def test_one_worker_at_a_time_per_message(smtp_server: ServerFactory, outbox: Any) -> None:
    """A claimed message is not claimed again until its lease expires; then it is."""
    server = smtp_server()
    outbox(server.host, server.port)
    row = _enqueue()
    assert claim(row.pk, now=T0, token="worker-1", lease=60) is not None
    assert claim(row.pk, now=at(30), token="worker-2", lease=60) is None
    assert deliver(row.pk, now=at(30)) is None
    assert server.connections == 0
    taken = claim(row.pk, now=at(61), token="worker-2", lease=60)
    assert taken is not None and taken.claimed_by == "worker-2"


def test_a_cancelled_message_is_never_sent(smtp_server: ServerFactory, outbox: Any) -> None:
    """Cancelled: no claim, no connection."""
    server = smtp_server()
    outbox(server.host, server.port)
    row = _enqueue()
    OutboxMessage.objects.filter(pk=row.pk).update(state="cancelled")
    assert deliver(row.pk, now=T0) is None
    assert server.connections == 0


class TakenOverSMTPBackend(SMTPBackend):
    """Sends over SMTP; meanwhile (the lease expired) another worker takes the message over."""

    def _deliver(self, message: AmsdalMessage, valid: ValidatedMessage) -> SendStatus:
        status = super()._deliver(message, valid)
        (row,) = OutboxMessage.objects.all()
        OutboxMessage.objects.filter(pk=row.pk).update(claimed_by="other")
        row.recipients.update(attempt_token="other")
        return status


def test_an_outcome_from_a_worker_that_lost_its_claim_is_dropped(
    smtp_server: ServerFactory, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow worker whose lease was taken over records nothing over the new worker's rows."""
    server = smtp_server()
    outbox(server.host, server.port, LEASE=60)
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", f"{__name__}.TakenOverSMTPBackend")
    row = _enqueue()
    deliver(row.pk, now=T0)
    row.refresh_from_db()
    assert len(server.messages) == 1
    assert (row.state, row.claimed_by) == ("sending", "other")
    assert set(row.recipients.values_list("status", "attempt_token")) == {("queued", "other")}


def test_a_mailer_alias_needs_mailers(outbox: Any, settings: Any) -> None:
    """Without MAILERS only the 'default' mailer (the EMAIL_* settings) exists."""
    if hasattr(settings, "MAILERS"):
        del settings.MAILERS
    outbox("127.0.0.1", free_port(), MAILER="bulk")
    row = _enqueue()
    with pytest.raises(ImproperlyConfigured, match="MAILER 'bulk' needs MAILERS"):
        deliver(row.pk, now=T0)
    row.refresh_from_db()  # given back at once, nothing attempted
    assert (row.state, row.claimed_by, row.attempts) == ("queued", "", 0)
    assert "needs MAILERS" in row.last_error


class BrokenSMTPBackend(SMTPBackend):
    """Sends over SMTP, then fails with an error that is not the library's."""

    def _deliver(self, message: AmsdalMessage, valid: ValidatedMessage) -> SendStatus:
        super()._deliver(message, valid)
        raise RuntimeError("a bug after the data went out")


def test_an_unexpected_error_while_sending_is_unknown_at_once_and_raised(
    smtp_server: ServerFactory, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a transport failure: the fate is unknown, recorded now (not after the lease), raised."""
    server = smtp_server()
    outbox(server.host, server.port)
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", f"{__name__}.BrokenSMTPBackend")
    row = _enqueue()
    with pytest.raises(RuntimeError, match="a bug"):
        deliver(row.pk, now=T0)
    row.refresh_from_db()
    assert {(s, n) for s, _, n in _statuses(row).values()} == {("unknown", 1)}
    assert not any(row.recipients.values_list("attempt_token", flat=True))
    monkeypatch.delenv("AMSDAL_EMAIL_BACKEND")
    assert deliver(row.pk, now=at(61)) is not None  # taken up after the lease: nothing resent
    assert len(server.messages) == 1


def test_due_messages_come_by_priority_then_due_time(outbox: Any) -> None:
    """A sweep takes higher priorities first, then the longest waiting; not what is not due."""
    from django_amsdal_mail.outbox.worker import due_messages

    outbox("127.0.0.1", free_port())

    def queued(priority: int, seconds: float) -> OutboxMessage:
        message = EmailMessage("S", "B", "f@example.com", ["a@example.com"])
        (row,) = enqueue(message, priority=priority, run_after=at(seconds))
        return row

    low, high_late, high_early, future = queued(0, 0), queued(5, 10), queued(5, 5), queued(9, 100)
    assert due_messages(now=at(20)) == [high_early.pk, high_late.pk, low.pk]
    assert future.pk in due_messages(now=at(100))
