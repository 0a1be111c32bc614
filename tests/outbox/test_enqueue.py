"""enqueue / aenqueue and the OutboxBackend: validate, store in one transaction, tell on commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.db import transaction

from amsdal_mail import DSN, InvalidMessageError
from django_amsdal_mail.outbox import aenqueue, enqueue
from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient
from django_amsdal_mail.outbox.storage import loads
from django_amsdal_mail.outbox.worker import deliver_due
from tests.dsn_smtpd import DSNRecordingServer
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import T0

OUTBOX_BACKEND = "django_amsdal_mail.outbox.backend.OutboxBackend"


def _message(subject: str = "Hello", **kwargs: Any) -> EmailMessage:
    kwargs.setdefault("to", ["ann@example.com", "bob@example.com"])
    return EmailMessage(subject, "Body", "from@example.com", **kwargs)


@pytest.fixture
def server(smtp_server: ServerFactory, outbox: Any) -> RecordingServer:
    """A recording server that the outbox (engine 'immediate') sends to."""
    server = smtp_server()
    outbox(server.host, server.port)
    return server


@pytest.mark.django_db(transaction=True)
def test_enqueue_stores_then_sends_on_commit(server: RecordingServer) -> None:
    """One row per message and per recipient; the immediate engine sends after the commit."""
    with transaction.atomic():
        (row,) = enqueue(_message(cc=["carl@example.com"], bcc=["dora@example.com"]))
        assert server.messages == []  # not before the commit
    received = server.wait_for_messages(1)[0]
    row.refresh_from_db()
    assert row.state == "done" and row.attempts == 1
    recipients = list(row.recipients.values_list("address", "kind", "status", "code"))
    assert recipients == [
        ("ann@example.com", "to", "sent", 250),
        ("bob@example.com", "to", "sent", 250),
        ("carl@example.com", "cc", "sent", 250),
        ("dora@example.com", "bcc", "sent", 250),
    ]
    assert received.rcpt_tos == [
        "ann@example.com",
        "bob@example.com",
        "carl@example.com",
        "dora@example.com",
    ]
    # The Message-ID fixed at enqueue is the one sent; Date too; Bcc never in the headers.
    assert received.message["Message-ID"] == row.message_id
    assert received.message["Date"] == loads(row.payload).headers["Date"]
    assert received.message["Bcc"] is None
    assert received.message["To"] == "ann@example.com, bob@example.com"
    assert received.message["Cc"] == "carl@example.com"


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_sends_nothing(server: RecordingServer) -> None:
    """Enqueued inside a transaction that rolls back: nothing stored, nothing sent."""

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        enqueue(_message())
        raise Abort
    assert OutboxMessage.objects.count() == 0
    assert server.connections == 0 and server.messages == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"to": ["not an address"]}, "Invalid address|invalid address"),
        ({"to": []}, "no recipients"),
        ({"headers": {"X-Evil": "a\r\nBcc: x@example.com"}}, "line break|newline"),
    ],
)
def test_a_bad_message_raises_and_nothing_of_the_call_is_stored(
    server: RecordingServer, bad: dict[str, Any], match: str
) -> None:
    """Validation happens before anything is stored: the good message of the call is not stored."""
    with pytest.raises(ValueError, match=match):
        enqueue([_message("good"), _message("bad", **bad)])
    assert OutboxMessage.objects.count() == 0 and OutboxRecipient.objects.count() == 0
    assert server.connections == 0


@pytest.mark.django_db(transaction=True)
def test_a_message_larger_than_max_message_size_is_refused(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """The rendered size counts (base64 included); over the limit: a clear error, nothing stored."""
    server = smtp_server()
    outbox(server.host, server.port, MAX_MESSAGE_SIZE=4000)
    small = _message("small")
    small.attach("a.bin", b"x" * 1000, "application/octet-stream")
    big = _message("big")
    big.attach("b.bin", b"x" * 2900, "application/octet-stream")  # about 3.9 kB of base64
    with pytest.raises(InvalidMessageError, match=r"bytes once rendered, more than .* 4000 bytes"):
        enqueue([small, big])
    assert OutboxMessage.objects.count() == 0
    assert len(enqueue(small)) == 1
    assert len(server.wait_for_messages(1)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_task_backend_that_refuses_the_queue_is_refused_before_storing(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """ENGINE 'tasks' whose backend does not take QUEUE: enqueue says so and stores nothing."""
    server = smtp_server()
    settings = outbox(server.host, server.port, ENGINE="tasks")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}  # "default" only
    with pytest.raises(ImproperlyConfigured, match="does not accept the outbox's queue 'email'"):
        enqueue(_message())
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_run_after_delays_the_first_attempt(server: RecordingServer) -> None:
    """A message due later is stored and not sent; a sweep at its time sends it."""
    (row,) = enqueue(_message(), run_after=T0, priority=5)
    assert server.connections == 0
    row.refresh_from_db()
    assert (row.state, row.next_attempt_at, row.priority) == ("queued", T0, 5)
    assert set(row.recipients.values_list("next_attempt_at", flat=True)) == {T0}
    assert deliver_due(now=T0) == 1
    assert len(server.wait_for_messages(1)) == 1


@pytest.mark.django_db(transaction=True)
async def test_aenqueue_stores_and_sends(server: RecordingServer) -> None:
    """The async twin stores the same rows and the engine sends on commit."""
    rows = await aenqueue([_message("one"), _message("two")])
    assert len(rows) == 2
    received = server.wait_for_messages(2)
    assert sorted(r.message["Subject"] for r in received) == ["one", "two"]
    assert await OutboxMessage.objects.filter(state="done").acount() == 2


@pytest.mark.django_db(transaction=True)
def test_outbox_backend_queues_and_reports_queued(server: RecordingServer, settings: Any) -> None:
    """send_mail() through OutboxBackend: counts queued messages; every recipient 'queued'."""
    settings.EMAIL_BACKEND = OUTBOX_BACKEND
    message = _message()
    empty = EmailMessage("nobody", "Body", "from@example.com", [])
    with transaction.atomic():
        assert mail.get_connection().send_messages([message, empty]) == 1
        status = message.amsdal_status  # type: ignore[attr-defined]
        assert {a: r.status for a, r in status.recipients.items()} == {
            "ann@example.com": "queued",
            "bob@example.com": "queued",
        }
        assert status.message_id == message.outbox_message.message_id  # type: ignore[attr-defined]
        assert server.messages == []
    assert server.wait_for_messages(1)[0].rcpt_tos == ["ann@example.com", "bob@example.com"]
    assert mail.send_mail("S", "B", "from@example.com", ["x@example.com"]) == 1
    assert len(server.wait_for_messages(2)) == 2


@pytest.mark.django_db(transaction=True)
async def test_outbox_backend_async_twin(server: RecordingServer, settings: Any) -> None:
    """asend_messages() queues through aenqueue with the same statuses."""
    settings.EMAIL_BACKEND = OUTBOX_BACKEND
    message = _message()
    assert await mail.get_connection().asend_messages([message]) == 1
    assert {r.status for r in message.amsdal_status.recipients.values()} == {"queued"}  # type: ignore[attr-defined]
    assert len(server.wait_for_messages(1)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_queued_message_keeps_its_dsn_request_and_unsubscribe_link(outbox: Any) -> None:
    """``message.dsn`` and ``message.unsubscribe`` set before queueing reach the wire."""
    with DSNRecordingServer() as server:
        outbox(server.host, server.port)
        message = _message(to=["ann@example.com"])
        message.dsn = DSN(notify="success,failure", ret="headers")  # type: ignore[attr-defined]
        message.unsubscribe = "https://example.com/unsubscribe/ann"  # type: ignore[attr-defined]
        (row,) = enqueue(message)
        received = server.wait_for_messages(1)[0]
    (record,) = server.dsn
    assert record.mail == {"RET": "HDRS", "ENVID": row.message_id}
    assert record.for_recipient("ann@example.com")["NOTIFY"] == "SUCCESS,FAILURE"
    assert received.message["List-Unsubscribe"] == "<https://example.com/unsubscribe/ann>"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
