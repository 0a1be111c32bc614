"""The "tasks" engine with real ``db_worker`` processes, on an SQLite file and on PostgreSQL.

This process enqueues (the engine writes django-tasks-db's task rows in the
shared database), starts ``db_worker`` processes (:mod:`.db_workers`) that
send to an SMTP server running here (:class:`~tests.faulty_smtpd.FaultyServer`),
and reads the outcome three ways: the outbox's rows, what the server
received per recipient, and the signals the workers recorded
(:mod:`.recorder`). Time is real: ``RETRY_BACKOFF`` is 0.2 s and ``LEASE`` a
second or two, and every wait is a bounded poll.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import router, transaction
from django.utils import timezone

from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.outbox import enqueue, tasks
from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.policy import DIED
from tests.faulty_smtpd import FaultyServer
from tests.smtpd import free_port

from ..conftest import same_bytes
from .tasks_harness import WAIT, Live, done, no_task_waiting, wait_for

A, B, C = "ann@example.com", "bob@example.com", "carl@example.com"


def statuses(row: OutboxMessage) -> dict[str, tuple[str, int | None, int]]:
    """Each recipient's (status, code, attempts)."""
    return {r.address: (r.status, r.code, r.attempts) for r in row.recipients.all()}


def _message(subject: str = "Hello", to: tuple[str, ...] = (A, B), **kwargs: Any) -> EmailMessage:
    return EmailMessage(subject, "Body", "from@example.com", list(to), **kwargs)


def _holder_pid(row: OutboxMessage) -> int:
    """The PID of the worker that claimed ``row`` (``claimed_by`` is host:pid:token)."""
    row.refresh_from_db()
    return int(row.claimed_by.split(":")[1])


# -- delivery -----------------------------------------------------------------------------


def test_a_worker_delivers_and_its_signals_carry_the_outbox_message(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Enqueued here, sent by the worker: rows, the server and the worker's signals agree."""
    server = smtp()
    live.configure(server.port)
    (worker,) = live.start_workers()
    (row,) = enqueue(_message(cc=[C]))
    wait_for("the message is done", done(row))
    row.refresh_from_db()
    assert statuses(row) == {A: ("sent", 250, 1), B: ("sent", 250, 1), C: ("sent", 250, 1)}
    assert (row.state, row.attempts, row.claimed_by, row.lease_until) == ("done", 1, "", None)
    (received,) = server.messages
    assert received.rcpt_tos == [A, B, C] and received.header("Message-ID") == row.message_id
    (posted,) = live.records("post_send")
    assert posted["pid"] == worker.pid and posted["outbox_message"] == str(row.pk)
    assert posted["attempt"] == 1 and posted["message_id"] == row.message_id
    assert posted["statuses"] == {A: ["sent", 250], B: ["sent", 250], C: ["sent", 250]}
    (finished,) = live.records("outbox_finished")
    assert finished["pid"] == worker.pid and finished["outbox_message"] == str(row.pk)
    assert finished["statuses"] == posted["statuses"]


def test_the_message_survives_the_queue_byte_for_byte(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Headers, alternatives, attachments, the inline image, non-ASCII, Bcc: as sent inline."""
    from ..test_storage import rich_django_message

    server = smtp()
    live.configure(server.port)
    live.start_workers()
    EmailBackend(host=server.host, port=server.port).send_messages([rich_django_message()])
    (row,) = enqueue(rich_django_message())
    wait_for("the message is done", done(row))
    inline, queued = server.messages
    assert queued.rcpt_tos == inline.rcpt_tos
    assert "hidden@example.com" in queued.rcpt_tos and queued.header("Bcc") is None
    assert b"Content-ID: <logo@example.com>" in queued.data
    assert same_bytes(queued.data) == same_bytes(inline.data)


@pytest.mark.parametrize("live_database", ["sqlite"], indirect=True)
def test_a_later_due_time_is_deferred_and_an_early_task_sends_nothing(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """run_after reaches the task backend; a task that comes before it sends nothing."""
    from django_tasks_db.models import DBTaskResult

    server = smtp()
    live.configure(server.port)
    due = timezone.now() + timedelta(seconds=1)
    (row,) = enqueue(_message(), run_after=due)
    tasks.deliver.enqueue(str(row.pk))  # an early task, as a duplicate would be
    live.start_workers()
    wait_for("the message is done", done(row))
    (posted,) = live.records("post_send")
    assert posted["time"] >= due.timestamp() and len(server.messages) == 1
    returned = DBTaskResult.objects.filter(status="SUCCESSFUL").order_by("finished_at")
    # The row is done inside the second task; its result is recorded after it returns.
    wait_for("both tasks recorded as finished", lambda: returned.count() >= 2)
    assert list(returned.values_list("return_value", flat=True))[:2] == [None, "done"]


# -- retries, per recipient ----------------------------------------------------------------


def test_a_4xx_recipient_alone_is_retried_and_a_5xx_is_final_after_one_attempt(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Accepted once is never sent again: the retry's envelope is only the 4xx recipient."""
    server = smtp(rcpt_replies={B: "450 4.2.0 Mailbox busy", C: "550 5.1.1 No such user"})
    live.configure(server.port)
    live.start_workers()
    (row,) = enqueue(_message(cc=[C]))
    server.wait_until(lambda s: len(s.attempts) >= 1, WAIT)
    server.faults.rcpt_replies.pop(B)  # the mailbox is free again
    wait_for("the message is done", done(row))
    row.refresh_from_db()
    assert statuses(row)[A] == ("sent", 250, 1) and statuses(row)[C] == ("rejected", 550, 1)
    assert statuses(row)[B][:2] == ("sent", 250)
    first, *retries = [m.rcpt_tos for m in server.messages]
    assert first == [A] and retries[-1] == [B] and len(retries) == statuses(row)[B][2] - 1
    rcpts = [c.line for s in server.sessions for c in s.commands if c.line.startswith("RCPT")]
    assert Counter(rcpts)[f"RCPT TO:<{A}>"] == 1 and Counter(rcpts)[f"RCPT TO:<{C}>"] == 1
    assert {tuple(r["statuses"]) for r in live.records("post_send")[1:]} == {(B,)}


@pytest.mark.parametrize("live_database", ["sqlite"], indirect=True)
def test_refused_connections_until_the_server_is_up_then_everything_is_delivered(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Nothing listens for a while (each try an attempt); then the server: all sent, once."""
    port = free_port()
    live.configure(port, MAX_ATTEMPTS=100, MAX_RETRY_DELAY=0.4)
    live.start_workers(2)
    rows = [enqueue(_message(f"Message {n}"))[0] for n in range(3)]
    wait_for(
        "two refused attempts each",
        lambda: OutboxMessage.objects.filter(attempts__gte=2).count() == 3,
    )
    assert set(OutboxMessage.objects.values_list("recipients__status", flat=True)) == {"failed"}
    server = smtp(port=port)
    wait_for("every message is done", done(*rows))
    assert sorted(m.header("Subject") or "" for m in server.messages) == [
        "Message 0",
        "Message 1",
        "Message 2",
    ]
    assert all(m.rcpt_tos == [A, B] for m in server.messages)
    for row in rows:
        assert {s for s, _, _ in statuses(row).values()} == {"sent"}


@pytest.mark.parametrize("live_database", ["sqlite"], indirect=True)
def test_max_attempts_then_failed_for_good(live: Live) -> None:
    """Nothing listening and MAX_ATTEMPTS=3: three attempts by the worker, then final."""
    live.configure(free_port(), MAX_ATTEMPTS=3)
    live.start_workers()
    (row,) = enqueue(_message())
    wait_for("the message is done", done(row))
    row.refresh_from_db()
    assert statuses(row) == {A: ("failed", None, 3), B: ("failed", None, 3)}
    assert row.attempts == 3 and row.last_error
    assert [r["attempt"] for r in live.records("post_send")] == [1, 2, 3]
    (finished,) = live.records("outbox_finished")
    assert finished["statuses"] == {A: ["failed", None], B: ["failed", None]}


# -- transactions and concurrency ------------------------------------------------------------


def test_a_rolled_back_transaction_sends_nothing(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """enqueue() inside atomic() that raises: no row, no task, nothing sent; a later one is."""
    from django_tasks_db.models import DBTaskResult

    server = smtp()
    live.configure(server.port)
    live.start_workers()
    with pytest.raises(RuntimeError, match="changed my mind"):
        with transaction.atomic(using=router.db_for_write(OutboxMessage)):
            enqueue(_message("Rolled back"))
            raise RuntimeError("changed my mind")
    assert OutboxMessage.objects.count() == 0 and DBTaskResult.objects.count() == 0
    (row,) = enqueue(_message("Committed"))
    wait_for("the committed message is done", done(row))
    assert [m.header("Subject") for m in server.messages] == ["Committed"]


def test_two_workers_never_send_the_same_message_at_the_same_time(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Every message has two tasks in a row (as a redelivery makes them), two workers start
    on them together: each message is sent once, by one worker."""
    server = smtp(stall_after_data=0.05)  # a transaction lasts long enough to overlap
    live.configure(server.port)
    deliver = tasks.deliver
    rows = []
    for n in range(20):
        (row,) = enqueue(_message(f"Message {n}"))
        deliver.enqueue(str(row.pk))  # its second task, next in the queue
        rows.append(row)
    workers = live.start_workers(2)
    wait_for("every message is done", done(*rows), timeout=60)
    sent = Counter(m.header("Message-ID") for m in server.messages)
    assert sent == Counter({row.message_id: 1 for row in rows})
    assert all(m.rcpt_tos == [A, B] for m in server.messages)
    for row in rows:  # no attempt was taken over by the other worker
        assert statuses(row) == {A: ("sent", 250, 1), B: ("sent", 250, 1)}
    pids = {r["pid"] for r in live.records("post_send")}
    assert pids == {w.pid for w in workers}  # both worked, never on the same message


# -- a worker killed mid-send -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("live_database", "on_unknown"),
    [("postgresql", "report"), ("postgresql", "resend"), ("sqlite", "report")],
    indirect=["live_database"],
)
def test_a_worker_killed_after_the_data_went_out(
    live: Live, smtp: Callable[..., FaultyServer], on_unknown: str
) -> None:
    """SIGKILL while the server holds its reply: another worker takes the message up after
    LEASE; its recipients are unknown, never resent with 'report', resent once with 'resend'."""
    server = smtp(hold_after_data={1})
    live.configure(server.port, LEASE=1, ON_UNKNOWN=on_unknown)
    workers = live.start_workers(2)
    (row,) = enqueue(_message())
    server.wait_until(lambda s: len(s.messages) == 1, WAIT)  # the data is in, no reply
    (victim,) = [w for w in workers if w.pid == _holder_pid(row)]
    (survivor,) = [w for w in workers if w is not victim]
    victim.kill()
    wait_for("the message is done", done(row))
    wait_for("every scheduled look has run", no_task_waiting)
    row.refresh_from_db()
    (finished,) = live.records("outbox_finished")
    assert finished["pid"] == survivor.pid
    if on_unknown == "report":
        assert statuses(row) == {A: ("unknown", None, 1), B: ("unknown", None, 1)}
        assert set(row.recipients.values_list("response", flat=True)) == {DIED}
        assert len(server.messages) == 1  # never resent
    else:
        assert statuses(row) == {A: ("sent", 250, 2), B: ("sent", 250, 2)}
        first, second = server.messages
        assert first.rcpt_tos == second.rcpt_tos == [A, B]
        assert same_bytes(first.data) == same_bytes(second.data)
        assert [(r["pid"], r["attempt"]) for r in live.records("post_send")] == [(survivor.pid, 2)]


# -- the sweep ------------------------------------------------------------------------------


@pytest.mark.parametrize("live_database", ["sqlite"], indirect=True)
def test_a_message_whose_task_was_lost_is_sent_by_the_next_task(
    live: Live, smtp: Callable[..., FaultyServer]
) -> None:
    """Its task never reached the worker; overdue by more than LEASE, the next task sends it."""
    from django_tasks_db.models import DBTaskResult

    server = smtp()
    live.configure(server.port)
    (lost,) = enqueue(_message("Lost"), run_after=timezone.now() - timedelta(seconds=10))
    DBTaskResult.objects.all().delete()  # as if the process ended before the enqueue
    (worker,) = live.start_workers()
    (fresh,) = enqueue(_message("Fresh"))
    wait_for("both messages are done", done(lost, fresh))
    assert sorted(m.header("Subject") or "" for m in server.messages) == ["Fresh", "Lost"]
    assert {r["pid"] for r in live.records("post_send")} == {worker.pid}
