"""The example project (example_project/): its form, its post_send receiver and its admin.

The ``mailroom`` app is installed by ``tests/django_settings.py`` (example_project/ is on
the pytest pythonpath); each test routes the project's URLs and mail to a real
RecordingServer and turns the receiver's recording on. The form is exercised both
inline (``django_amsdal_mail.backend.EmailBackend``) and through the outbox, as the
project's own settings have it (``OutboxBackend``; here with the ``immediate`` engine,
the worker running in the test's process: the example's ``tasks`` engine with a real
``db_worker`` process is run end to end by ``tests/test_demo.py``). The project's own
settings are checked and migrated in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from mailroom.models import RecipientRecord, SentMessage

from django_amsdal_mail.outbox.models import OutboxMessage
from django_amsdal_mail.outbox.worker import deliver_due
from tests.smtpd import RecordingServer, ServerFactory

MANAGE = Path(__file__).resolve().parents[2] / "example_project" / "manage.py"

pytestmark = pytest.mark.django_db


def _route(settings: Any, server: RecordingServer) -> None:
    settings.ROOT_URLCONF = "mysite.urls"
    settings.EMAIL_BACKEND = "django_amsdal_mail.backend.EmailBackend"
    settings.EMAIL_HOST = server.host
    settings.EMAIL_PORT = server.port
    settings.MAILROOM_RECORD_STATUS = True


@pytest.fixture
def server(smtp_server: ServerFactory, settings: Any) -> RecordingServer:
    """A server that refuses nobody@example.com for good; the project sends to it."""
    server = smtp_server(rcpt_replies={"nobody@example.com": "550 5.1.1 No such user here"})
    _route(settings, server)
    return server


def _post(client: Client, to: str, subject: str = "Quarterly report") -> Any:
    return client.post(
        reverse("compose"),
        {"to": to, "subject": subject, "message": "Numbers <up>.\nSee attachment."},
    )


def test_compose_page_renders(client: Client, server: RecordingServer) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b'name="subject"' in response.content


def test_form_sends_html_with_attachment_and_records_status(
    client: Client, server: RecordingServer
) -> None:
    response = _post(client, "alice@example.com, bob@example.com")

    assert response.status_code == 302
    assert response["Location"] == reverse("sent")
    assert len(server.messages) == 1
    received = server.messages[0]
    assert sorted(received.rcpt_tos) == ["alice@example.com", "bob@example.com"]
    message = received.message
    assert message["Subject"] == "Quarterly report"
    assert message.get_content_type() == "multipart/mixed"
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    assert "<h1>Quarterly report</h1>" in html.get_content()
    assert "Numbers &lt;up&gt;." in html.get_content()
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == ["summary.txt"]
    assert "Recipients: alice@example.com, bob@example.com" in attachments[0].get_content()

    sent = SentMessage.objects.get()
    assert sent.subject == "Quarterly report"
    records = {r.address: r for r in sent.recipients.all()}
    assert set(records) == {"alice@example.com", "bob@example.com"}
    for record in records.values():
        assert (record.status, record.code) == ("sent", 250)


def test_refused_recipient_is_recorded_rejected(client: Client, server: RecordingServer) -> None:
    _post(client, "alice@example.com, nobody@example.com", subject="Partly refused")

    assert server.messages[0].rcpt_tos == ["alice@example.com"]
    records = {r.address: r for r in RecipientRecord.objects.all()}
    assert records["alice@example.com"].status == "sent"
    rejected = records["nobody@example.com"]
    assert (rejected.status, rejected.code) == ("rejected", 550)
    assert "No such user" in rejected.response


def test_all_refused_is_recorded_and_reported(client: Client, server: RecordingServer) -> None:
    response = _post(client, "nobody@example.com", subject="Nobody home")

    assert response.status_code == 302
    assert server.messages == []
    record = RecipientRecord.objects.get()
    assert (record.address, record.status, record.code) == ("nobody@example.com", "rejected", 550)
    page = client.get(response["Location"])
    assert b"Not sent" in page.content


def test_sent_page_lists_records(client: Client, server: RecordingServer) -> None:
    _post(client, "alice@example.com, nobody@example.com", subject="Listed here")

    response = client.get(reverse("sent"))

    assert response.status_code == 200
    content = response.content.decode()
    assert "Listed here" in content
    assert "alice@example.com" in content
    assert "nobody@example.com" in content
    assert "rejected" in content
    assert "550" in content


def test_admin_changelists_load(client: Client, server: RecordingServer) -> None:
    _post(client, "alice@example.com, nobody@example.com", subject="Seen in the admin")
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(User.objects.get(username="admin"))

    records = client.get(reverse("admin:mailroom_recipientrecord_changelist"))
    assert records.status_code == 200
    assert "nobody@example.com" in records.content.decode()

    messages = client.get(reverse("admin:mailroom_sentmessage_changelist"))
    assert messages.status_code == 200
    assert "Seen in the admin" in messages.content.decode()

    sent = SentMessage.objects.get()
    change = client.get(reverse("admin:mailroom_sentmessage_change", args=[sent.pk]))
    assert change.status_code == 200
    assert "alice@example.com" in change.content.decode()


def test_receiver_is_connected_once(server: RecordingServer) -> None:
    from django_amsdal_mail.signals import post_send

    keys = [r[0] for r in post_send.receivers if r[0][0] == "mailroom.record_status"]
    assert len(keys) == 1


# -- through the outbox, as the project's settings send ----------------------------------


@pytest.fixture
def outbox_server(smtp_server: ServerFactory, settings: Any) -> RecordingServer:
    """A server with a busy mailbox (450) and an unknown user (550), reached via the outbox."""
    server = smtp_server(
        rcpt_replies={
            "nobody@example.com": "550 5.1.1 No such user here",
            "busy@example.com": "450 4.2.1 Mailbox busy, try again later",
        }
    )
    _route(settings, server)
    settings.EMAIL_BACKEND = "django_amsdal_mail.outbox.backend.OutboxBackend"
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate", "RETRY_BACKOFF": 60}
    return server


def _records(subject: str) -> dict[tuple[str, int | None], RecipientRecord]:
    """Return the records of the outbox message ``subject`` by (address, attempt)."""
    sent = SentMessage.objects.get(subject=subject)
    assert sent.outbox_id is not None
    return {(r.address, r.attempt): r for r in sent.recipients.all()}


def test_form_queues_and_the_worker_sends(
    client: Client,
    outbox_server: RecordingServer,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The form's message is queued; on commit the worker sends it, HTML and attachment."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(client, "alice@example.com, bob@example.com", subject="Via outbox")
        assert outbox_server.messages == [], "sent before the transaction committed"

    assert len(callbacks) == 1
    assert response.status_code == 302
    (received,) = outbox_server.messages
    assert sorted(received.rcpt_tos) == ["alice@example.com", "bob@example.com"]
    assert received.message["Subject"] == "Via outbox"
    assert [p.get_filename() for p in received.message.iter_attachments()] == ["summary.txt"]

    queued = OutboxMessage.objects.get()
    assert queued.state == "done"
    assert received.message["Message-ID"] == queued.message_id
    assert SentMessage.objects.get().outbox_id == queued.pk
    records = _records("Via outbox")
    assert set(records) == {("alice@example.com", 1), ("bob@example.com", 1)}
    for record in records.values():
        assert (record.status, record.code) == ("sent", 250)
    page = client.get(response["Location"]).content.decode()
    assert "Message queued in the outbox" in page
    assert '<table id="outbox">' in page
    assert "<td>Via outbox</td><td>done</td><td>1</td><td>alice@example.com</td>" in page


def test_temporary_refusal_is_retried_only_to_that_recipient(
    client: Client,
    outbox_server: RecordingServer,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """450 then accepted: the retry goes to the busy mailbox alone; the 550 is final."""
    to = "alice@example.com, busy@example.com, nobody@example.com"
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, to, subject="Busy at first")

    first = {key: (r.status, r.code) for key, r in _records("Busy at first").items()}
    assert first == {
        ("alice@example.com", 1): ("sent", 250),
        ("busy@example.com", 1): ("failed", 450),
        ("nobody@example.com", 1): ("rejected", 550),
    }
    assert OutboxMessage.objects.get().state == "queued"

    # The mailbox is no longer busy; the retry is due after RETRY_BACKOFF (60 s).
    del outbox_server.rcpt_replies["busy@example.com"]
    assert deliver_due(now=timezone.now() + timedelta(seconds=30)) == 0
    assert deliver_due(now=timezone.now() + timedelta(seconds=61)) == 1

    assert [m.rcpt_tos for m in outbox_server.messages] == [
        ["alice@example.com"],
        ["busy@example.com"],
    ]
    final = {key: (r.status, r.code) for key, r in _records("Busy at first").items()}
    assert final == {**first, ("busy@example.com", 2): ("sent", 250)}
    assert OutboxMessage.objects.get().state == "done"
    assert SentMessage.objects.count() == 1


def _manage(*args: str, db: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(EXAMPLE_DB_PATH=str(db), **extra)
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=env,
        cwd=MANAGE.parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_project_settings_migrate_and_pass_the_checks(tmp_path: Path) -> None:
    """The project's own settings (outbox, tasks, django-tasks-db) migrate and pass check."""
    db = tmp_path / "db.sqlite3"
    migrated = _manage("migrate", "--noinput", db=db)
    assert migrated.returncode == 0, migrated.stderr
    plan = _manage("showmigrations", "amsdal_outbox", "django_tasks_database", "mailroom", db=db)
    assert plan.returncode == 0, plan.stderr
    assert "[ ]" not in plan.stdout
    assert "[X] 0001_initial" in plan.stdout
    # Warnings fail too: the tasks engine is usable, its backend defers, QUEUE is accepted.
    checked = _manage("check", "--fail-level", "WARNING", db=db)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


def test_admin_shows_the_outbox_and_retries_now(
    client: Client,
    outbox_server: RecordingServer,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The project's admin lists the outbox, filters by recipient status, and retries."""
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, "alice@example.com, busy@example.com", subject="Watched in the admin")
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(User.objects.get(username="admin"))
    changelist = reverse("admin:amsdal_outbox_outboxmessage_changelist")

    listed = client.get(changelist)
    assert listed.status_code == 200
    assert "Watched in the admin" in listed.content.decode()
    failed = client.get(changelist, {"recipient_status": "failed"}).content.decode()
    assert "Watched in the admin" in failed
    sent_only = client.get(changelist, {"recipient_status": "invalid"}).content.decode()
    assert "Watched in the admin" not in sent_only

    queued = OutboxMessage.objects.get()
    page = client.get(reverse("admin:amsdal_outbox_outboxmessage_change", args=[queued.pk]))
    assert page.status_code == 200
    assert "busy@example.com" in page.content.decode()
    assert "4.2.1 Mailbox busy" in page.content.decode()

    # The mailbox is free again; "Retry now" sends at once (the immediate engine, on commit).
    del outbox_server.rcpt_replies["busy@example.com"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post(changelist, {"action": "retry_now", "_selected_action": [str(queued.pk)]})
    assert [m.rcpt_tos for m in outbox_server.messages] == [
        ["alice@example.com"],
        ["busy@example.com"],
    ]
    assert dict(queued.recipients.values_list("address", "status")) == {
        "alice@example.com": "sent",
        "busy@example.com": "sent",
    }


def test_project_without_a_worker_sends_in_the_request(
    tmp_path: Path, smtp_server: ServerFactory
) -> None:
    """EXAMPLE_OUTBOX_ENGINE=immediate (as the README says): sent at once, still via the outbox."""
    server = smtp_server()
    db = tmp_path / "db.sqlite3"
    where = {"EXAMPLE_EMAIL_HOST": server.host, "EXAMPLE_EMAIL_PORT": str(server.port)}
    assert _manage("migrate", "--noinput", db=db).returncode == 0

    queued = _manage("sendtestemail", "queued@example.com", db=db, **where)
    assert queued.returncode == 0, queued.stderr
    assert server.messages == [], "the tasks engine sends only from a worker"

    sent = _manage(
        "sendtestemail", "now@example.com", db=db, EXAMPLE_OUTBOX_ENGINE="immediate", **where
    )
    assert sent.returncode == 0, sent.stderr
    (received,) = server.messages
    assert received.rcpt_tos == ["now@example.com"]
    rows = _manage(
        "shell",
        "-c",
        "from django_amsdal_mail.outbox.models import OutboxRecipient as R; "
        "print(sorted(R.objects.values_list('address', 'status')))",
        db=db,
    )
    assert "('now@example.com', 'sent')" in rows.stdout, rows.stderr
    assert "('queued@example.com', 'queued')" in rows.stdout
