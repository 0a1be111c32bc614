"""The example project (example_project/): its form, its post_send receiver and its admin.

The ``mailroom`` app is installed by ``tests/django_settings.py`` (example_project/ is on
the pytest pythonpath); each test routes the project's URLs and mail to a real
RecordingServer and turns the receiver's recording on.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from mailroom.models import RecipientRecord, SentMessage

from tests.smtpd import RecordingServer, ServerFactory

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
