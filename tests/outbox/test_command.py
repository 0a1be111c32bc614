"""``manage.py amsdal_outbox status | retry | prune`` through call_command, against real servers.

Failures come from real SMTP servers (a 450 or 550 per recipient, a reply
lost after the data); "Retry now" is shown to deliver with the immediate
engine, which sends on commit in the calling process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from django_amsdal_mail.outbox import enqueue, operations
from django_amsdal_mail.outbox.models import OutboxMessage, OutboxRecipient
from django_amsdal_mail.outbox.worker import claim, deliver
from django_amsdal_mail.signals import post_send
from tests.faulty_smtpd import FaultyServer
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import T0, at

pytestmark = pytest.mark.django_db(transaction=True)

A, B, C = "ann@example.com", "bob@example.com", "carl@example.com"
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[str, str]:
    """Run ``amsdal_outbox *args``; return what it wrote to stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command("amsdal_outbox", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def queue(to: list[str], subject: str = "Hello") -> OutboxMessage:
    """Enqueue a message due at T0 (in the future: the immediate engine leaves it)."""
    (row,) = enqueue(EmailMessage(subject, "Body", "from@example.com", to), run_after=T0)
    return row


def statuses(row: OutboxMessage) -> dict[str, tuple[str, int]]:
    return {r.address: (r.status, r.attempts) for r in row.recipients.all()}


def rcpts(server: RecordingServer | FaultyServer) -> list[list[str]]:
    return [list(m.rcpt_tos) for m in server.messages]


def test_status_of_an_empty_outbox_lists_every_state_and_status() -> None:
    """Every state and every recipient status is printed, with 0; nothing queued."""
    out, _ = run("status")
    assert out.splitlines()[:5] == [
        "Messages: 0",
        "  queued            0  (due now: 0)",
        "  sending           0  (lease expired: 0)",
        "  done              0",
        "  cancelled         0",
    ]
    assert "Recipients: 0" in out and "  unknown           0" in out
    assert "Oldest queued: -" in out and "Next due: -" in out
    data = json.loads(run("status", "--json")[0])
    assert data["messages"] == {"queued": 0, "sending": 0, "done": 0, "cancelled": 0}
    assert set(data["recipients"]) == {"queued", "sent", "rejected", "failed", "invalid", "unknown"}
    assert (data["due_now"], data["oldest_queued_at"], data["next_due_at"]) == (0, None, None)


def test_status_counts_states_statuses_due_and_the_oldest_queued(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """Counts after real attempts: sent/failed/rejected, a due message, an expired lease."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy", C: "550 5.1.1 No such user"})
    outbox(server.host, server.port)
    tried = queue([A, B, C])
    deliver(tried.pk, now=T0)  # A sent, B failed (due again at T0+60), C rejected
    done = queue([A])
    deliver(done.pk, now=T0)
    waiting = queue([A, B])  # never attempted, due at T0
    held = queue([C])
    assert claim(held.pk, now=T0, token="w1", lease=60) is not None
    now = timezone.now()
    OutboxMessage.objects.filter(pk=waiting.pk).update(
        next_attempt_at=now - timedelta(minutes=5), created_at=now - timedelta(hours=2)
    )
    OutboxMessage.objects.filter(pk=held.pk).update(lease_until=now - timedelta(seconds=1))

    data = json.loads(run("status", "--json")[0])
    assert data["messages"] == {"queued": 2, "sending": 1, "done": 1, "cancelled": 0}
    assert data["recipients"] == {
        "queued": 3,
        "sent": 2,
        "failed": 1,
        "rejected": 1,
        "invalid": 0,
        "unknown": 0,
    }
    assert (data["due_now"], data["lease_expired"]) == (1, 1)
    waiting.refresh_from_db()
    assert data["oldest_queued_at"] == waiting.created_at.isoformat()
    assert data["next_due_at"] == waiting.next_attempt_at.isoformat()  # type: ignore[union-attr]

    out, _ = run("status")
    assert "Messages: 4" in out and "  queued            2  (due now: 1)" in out
    assert "  sending           1  (lease expired: 1)" in out
    assert "Recipients: 7" in out and "  sent              2" in out
    assert f"Oldest queued: {waiting.created_at.isoformat()} (2 h 0 min ago)" in out


def _failed_for_good(server: RecordingServer, outbox: Any) -> OutboxMessage:
    """Return a done message: A sent, B failed for good after MAX_ATTEMPTS=2 attempts."""
    outbox(server.host, server.port, MAX_ATTEMPTS=2)
    row = queue([A, B])
    deliver(row.pk, now=T0)
    deliver(row.pk, now=at(60))
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("done", 2)
    assert statuses(row) == {A: ("sent", 1), B: ("failed", 2)}
    return row


def test_retry_delivers_failed_recipients_and_starts_the_count_again(
    smtp_server: ServerFactory, outbox: Any, connect: Any
) -> None:
    """Failed for good, then retried: only B is sent to, as attempt 1, and ends sent."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    row = _failed_for_good(server, outbox)
    attempts: list[int] = []
    connect(post_send, lambda sender, **kw: attempts.append(kw["attempt"]))
    server.rcpt_replies.clear()  # B's mailbox is back

    out, err = run("retry")
    assert out == "Retried 1 recipient (failed, unknown) of 1 message: queued, due now.\n"
    assert err == ""
    row.refresh_from_db()
    assert statuses(row) == {A: ("sent", 1), B: ("sent", 1)}
    assert (row.state, row.attempts, attempts) == ("done", 1, [1])
    assert rcpts(server)[-1] == [B]  # A, accepted before, is never sent again
    assert len(server.messages) == 2


def test_retry_stores_a_fresh_count_and_tells_the_engine_on_commit(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """Inside a transaction: rows queued, due now, counts and MAX_AGE cleared; sent on commit."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    row = _failed_for_good(server, outbox)
    server.rcpt_replies.clear()
    now = timezone.now()
    with transaction.atomic():
        result = operations.retry(now=now)
        assert (result.messages, result.recipients, result.busy) == (1, 1, 0)
        assert list(result.message_ids) == [row.pk]
        row.refresh_from_db()
        b = row.recipients.get(address=B)
        assert (b.status, b.attempts, b.unknowns, b.code, b.response) == ("queued", 0, 0, None, "")
        assert b.next_attempt_at == now
        assert (row.state, row.attempts, row.first_attempt_at, row.next_attempt_at) == (
            "queued",
            0,
            None,
            now,
        )
        assert len(server.messages) == 1  # not yet: the engine is told on commit
    assert rcpts(server) == [[A], [B]]
    row.refresh_from_db()
    assert statuses(row)[B] == ("sent", 1) and row.first_attempt_at is not None


def test_a_rolled_back_retry_changes_and_sends_nothing(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """Retry inside a transaction that is rolled back: the engine is never told."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    row = _failed_for_good(server, outbox)
    server.rcpt_replies.clear()
    with pytest.raises(RuntimeError, match="changed my mind"), transaction.atomic():
        assert operations.retry().recipients == 1
        raise RuntimeError("changed my mind")
    assert statuses(row) == {A: ("sent", 1), B: ("failed", 2)}
    assert len(server.messages) == 1


def test_retry_flags_choose_failed_or_unknown(
    smtp_server: ServerFactory,
    faulty_server: Callable[..., FaultyServer],
    outbox: Any,
    settings: Any,
) -> None:
    """--failed retries only failed recipients, --unknown only unknown ones; neither: both."""
    refusing = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(refusing.host, refusing.port, MAX_ATTEMPTS=1)
    failed = queue([B], subject="failed")
    deliver(failed.pk, now=T0)
    lossy = faulty_server(drop_before_reply={1})
    settings.EMAIL_HOST, settings.EMAIL_PORT = lossy.host, lossy.port
    unknown = queue([C], subject="unknown")
    deliver(unknown.pk, now=T0)
    assert statuses(failed) == {B: ("failed", 1)} and statuses(unknown) == {C: ("unknown", 1)}

    out, _ = run("retry", "--unknown")  # the lossy server answers the second message
    assert out.startswith("Retried 1 recipient (unknown) of 1 message")
    assert statuses(unknown) == {C: ("sent", 1)} and statuses(failed) == {B: ("failed", 1)}
    assert rcpts(lossy) == [[C], [C]]  # the data went out twice: that is what unknown means

    settings.EMAIL_HOST, settings.EMAIL_PORT = refusing.host, refusing.port
    refusing.rcpt_replies.clear()
    out, _ = run("retry", "--failed")
    assert out.startswith("Retried 1 recipient (failed) of 1 message")
    assert statuses(failed) == {B: ("sent", 1)}
    out, _ = run("retry", "--failed", "--unknown")
    assert out.startswith("Retried 0 recipients (failed, unknown) of 0 messages")


def test_retry_leaves_a_message_being_sent_alone(smtp_server: ServerFactory, outbox: Any) -> None:
    """A claimed message keeps its rows and its worker's lease; the command says so."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    row = queue([A, B])
    deliver(row.pk, now=T0)
    assert claim(row.pk, now=at(60), token="worker-1", lease=60) is not None
    out, err = run("retry")
    assert out.startswith("Retried 0 recipients (failed, unknown) of 0 messages")
    assert "1 message being sent left alone" in err and "LEASE" in err
    row.refresh_from_db()
    assert (row.state, row.claimed_by, row.lease_until, row.attempts) == (
        "sending",
        "worker-1",
        at(120),
        1,
    )
    assert statuses(row) == {A: ("sent", 1), B: ("failed", 1)}
    assert len(server.messages) == 1


def test_a_claim_between_the_lock_and_the_update_wins(
    smtp_server: ServerFactory, outbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker claiming just after retry chose its rows: the conditional UPDATE skips it.

    SQLite has no row locks, so this moment can only be produced by running the
    worker's claim right after retry read its ids (wrapping the read).
    """
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    row = queue([A, B])
    deliver(row.pk, now=T0)
    read = operations._lock

    def read_then_claimed(rows: Any, db: str) -> list[Any]:
        ids = read(rows, db)
        assert claim(row.pk, now=at(60), token="worker-1", lease=60) is not None
        return ids

    monkeypatch.setattr(operations, "_lock", read_then_claimed)
    result = operations.retry()
    assert (result.messages, result.recipients, result.busy) == (0, 0, 1)
    row.refresh_from_db()
    assert (row.state, row.claimed_by) == ("sending", "worker-1")
    assert statuses(row) == {A: ("sent", 1), B: ("failed", 1)}


def test_retry_does_not_resurrect_a_cancelled_message(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """Cancelled stays cancelled: its failed recipient is not retried; stderr says so."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    row = queue([A, B])
    deliver(row.pk, now=T0)
    assert operations.cancel().messages == 1
    out, err = run("retry")
    assert out.startswith("Retried 0 recipients") and "1 cancelled message not retried" in err
    row.refresh_from_db()
    assert row.state == "cancelled" and statuses(row) == {A: ("sent", 1), B: ("failed", 1)}


def test_bad_outbox_settings_are_a_command_error_and_change_nothing(
    smtp_server: ServerFactory, outbox: Any, settings: Any
) -> None:
    """A bad AMSDAL_EMAIL_OUTBOX is named; the failed recipient stays as it was."""
    server = smtp_server(rcpt_replies={B: "450 4.2.0 Busy"})
    outbox(server.host, server.port)
    row = queue([B])
    deliver(row.pk, now=T0)
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate", "MAX_ATTEMPTS": 0}
    with pytest.raises(CommandError, match=r"not configured correctly: .*MAX_ATTEMPTS.* >= 1"):
        run("retry")
    assert statuses(row) == {B: ("failed", 1)}


def test_prune_deletes_only_finished_messages_older_than_days(
    smtp_server: ServerFactory, outbox: Any
) -> None:
    """Done and cancelled ones finished > DAYS ago go with their recipients; others stay."""
    server = smtp_server()
    outbox(server.host, server.port)
    rows = {name: queue([A, B], subject=name) for name in ("old-done", "old-cancelled", "new-done")}
    rows |= {name: queue([A], subject=name) for name in ("old-queued", "old-sending")}
    for name in ("old-done", "new-done"):
        deliver(rows[name].pk, now=T0)
    operations.cancel(OutboxMessage.objects.filter(pk=rows["old-cancelled"].pk))
    assert claim(rows["old-sending"].pk, now=T0, token="w1", lease=60) is not None
    now = timezone.now()
    for name, age in [
        ("old-done", 31),
        ("old-cancelled", 40),
        ("new-done", 29),
        ("old-queued", 400),
        ("old-sending", 400),
    ]:
        OutboxMessage.objects.filter(pk=rows[name].pk).update(updated_at=now - timedelta(days=age))

    out, _ = run("prune", "--older-than", "30", "--dry-run")
    assert out.startswith("Would delete 2 messages (4 recipient rows) done or cancelled before ")
    assert OutboxMessage.objects.count() == 5

    out, _ = run("prune", "--older-than", "30")
    assert out.startswith("Deleted 2 messages (4 recipient rows) done or cancelled before ")
    left = set(OutboxMessage.objects.values_list("subject", flat=True))
    assert left == {"new-done", "old-queued", "old-sending"}
    assert OutboxRecipient.objects.count() == 4
    assert run("prune", "--older-than", "0.5")[0].startswith("Deleted 1 message (2 recipient")
    assert set(OutboxMessage.objects.values_list("state", flat=True)) == {"queued", "sending"}


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "365001", ""])
def test_a_bad_older_than_is_refused_naming_the_value(value: str) -> None:
    """Not a number of days from 0: a CommandError quoting the value; nothing deleted."""
    with pytest.raises(CommandError, match=rf"--older-than takes a number of days.*{value!r}"):
        run("prune", "--older-than", value)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["prune"], "the following arguments are required: --older-than"),
        ([], r"the following arguments are required: \{status,retry,prune,deliver\}"),
        (["resend"], "invalid choice: 'resend'"),
    ],
)
def test_usage_errors_say_what_is_missing(args: list[str], error: str) -> None:
    """A missing subcommand or option, or an unknown subcommand, is named."""
    with pytest.raises(CommandError, match=error):
        run(*args)


def test_from_the_command_line_a_usage_error_exits_2() -> None:
    """``manage.py amsdal_outbox prune --older-than x``: argparse's exit status 2, on stderr."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.django_settings"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "example_project")])
    result = subprocess.run(
        [sys.executable, "-m", "django", "amsdal_outbox", "prune", "--older-than", "x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "--older-than takes a number of days from 0 to 365000" in result.stderr
    assert result.stdout == ""


@pytest.mark.django_db
def test_deliver_attempts_what_is_due_and_refuses_a_bad_limit(
    smtp_server: Any, outbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``deliver`` sends what is due now (at most ``--limit``); ``--limit 0`` is refused."""
    server = smtp_server()
    outbox(server.host, server.port)
    past = timezone.now() - timedelta(seconds=1)
    enqueue(
        [EmailMessage(f"s{i}", "b", "from@example.com", [f"r{i}@example.com"]) for i in range(3)],
        run_after=timezone.now() + timedelta(hours=1),
    )
    OutboxMessage.objects.update(next_attempt_at=past)
    OutboxRecipient.objects.update(next_attempt_at=past)
    call_command("amsdal_outbox", "deliver", "--limit", "2")
    assert capsys.readouterr().out == "Attempted 2 messages.\n"
    assert len(server.wait_for_messages(2)) == 2
    call_command("amsdal_outbox", "deliver")
    assert capsys.readouterr().out == "Attempted 1 message.\n"
    assert OutboxRecipient.objects.filter(status="sent").count() == 3
    call_command("amsdal_outbox", "deliver")
    assert capsys.readouterr().out == "Attempted 0 messages.\n"
    with pytest.raises(CommandError, match="--limit takes a whole number"):
        call_command("amsdal_outbox", "deliver", "--limit", "0")
