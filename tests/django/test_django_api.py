"""Django's own mail entry points, unchanged, deliver through our backend to a real server.

Each test runs once with ``EMAIL_BACKEND`` and, on Django 6.1+, once with ``MAILERS``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import django
import pytest
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.utils.log import AdminEmailHandler

from tests.smtpd import RecordingServer

#: ADMINS / MANAGERS: (name, address) pairs before Django 6.0, plain addresses since.
STAFF_FORMAT_PAIRS = django.VERSION < (6, 0)


def _staff(*addresses: str) -> list[Any]:
    if STAFF_FORMAT_PAIRS:
        return [(address.split("@")[0].title(), address) for address in addresses]
    return list(addresses)


def test_send_mail(configured: Any, server: RecordingServer) -> None:
    """django.core.mail.send_mail() delivers text and HTML."""
    sent = mail.send_mail(
        "Hello", "Text body", "from@example.com", ["to@example.com"], html_message="<p>HTML</p>"
    )
    assert sent == 1
    received = server.messages[0]
    assert received.mail_from == "from@example.com"
    assert received.rcpt_tos == ["to@example.com"]
    parsed = received.message
    assert parsed["Subject"] == "Hello"
    assert parsed.get_body(("plain",)).get_content().strip() == "Text body"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>HTML</p>"


def test_send_mail_uses_default_from_email(configured: Any, server: RecordingServer) -> None:
    """from_email=None means DEFAULT_FROM_EMAIL, as always."""
    assert mail.send_mail("Hello", "Body", None, ["to@example.com"]) == 1
    assert server.messages[0].mail_from == "webmaster@example.com"


def test_send_mass_mail_uses_one_connection(configured: Any, server: RecordingServer) -> None:
    """send_mass_mail() sends each tuple as its own message over one connection."""
    sent = mail.send_mass_mail(
        [
            ("First", "One", "from@example.com", ["a@example.com"]),
            ("Second", "Two", "from@example.com", ["b@example.com", "c@example.com"]),
        ]
    )
    assert sent == 2
    assert [m.rcpt_tos for m in server.messages] == [
        ["a@example.com"],
        ["b@example.com", "c@example.com"],
    ]
    assert server.connections == 1


def test_email_message_send(configured: Any, server: RecordingServer) -> None:
    """EmailMessage.send() goes through the configured backend."""
    message = mail.EmailMessage("Hello", "Body", "from@example.com", ["to@example.com"])
    assert message.send() == 1
    assert message.amsdal_status.is_success
    assert len(server.messages) == 1


def test_mail_admins_and_mail_managers(configured: Any, server: RecordingServer) -> None:
    """mail_admins() and mail_managers() reach ADMINS and MANAGERS from SERVER_EMAIL."""
    configured.ADMINS = _staff("admin@example.com")
    configured.MANAGERS = _staff("manager@example.com", "boss@example.com")
    mail.mail_admins("Server down", "Details", html_message="<p>Details</p>")
    mail.mail_managers("Report", "Numbers")
    admins, managers = server.messages
    assert (admins.mail_from, admins.rcpt_tos) == ("server@example.com", ["admin@example.com"])
    assert admins.message["Subject"] == "[Django] Server down"
    assert admins.message.get_body(("html",)).get_content().strip() == "<p>Details</p>"
    assert managers.rcpt_tos == ["manager@example.com", "boss@example.com"]
    assert managers.message["Subject"] == "[Django] Report"


def test_sendtestemail(configured: Any, server: RecordingServer) -> None:
    """``manage.py sendtestemail`` reaches the given addresses, the admins and the managers."""
    configured.ADMINS = _staff("admin@example.com")
    configured.MANAGERS = _staff("manager@example.com")
    call_command("sendtestemail", "one@example.com", "two@example.com", "--admins", "--managers")
    test_mail, managers, admins = server.messages
    assert test_mail.rcpt_tos == ["one@example.com", "two@example.com"]
    assert test_mail.message["Subject"].startswith("Test email from ")
    assert "successful" in test_mail.message.get_content()
    assert managers.rcpt_tos == ["manager@example.com"]
    assert admins.rcpt_tos == ["admin@example.com"]


def test_admin_email_handler(configured: Any, server: RecordingServer) -> None:
    """AdminEmailHandler mails logged errors, with the traceback, to the admins."""
    configured.ADMINS = _staff("admin@example.com")
    logger = logging.getLogger("tests.django.admin_email")
    handler = AdminEmailHandler(include_html=True)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("the widget broke")
        except ValueError:
            logger.exception("Processing failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    (received,) = server.messages
    assert received.rcpt_tos == ["admin@example.com"]
    assert received.message["Subject"] == "[Django] ERROR: Processing failed"
    text = received.message.get_body(("plain",)).get_content()
    assert "ValueError" in text and "the widget broke" in text
    assert received.message.get_body(("html",)) is not None


@pytest.mark.django_db
def test_password_reset_form(configured: Any, server: RecordingServer) -> None:
    """PasswordResetForm.save() mails the reset link to the user."""
    User.objects.create_user("ann", "ann@example.com", "old-password")
    form = PasswordResetForm({"email": "ann@example.com"})
    assert form.is_valid()
    form.save(domain_override="example.com")
    (received,) = server.messages
    assert received.rcpt_tos == ["ann@example.com"]
    assert "/reset/" in received.message.get_content()


@pytest.mark.django_db
def test_password_reset_view_end_to_end(configured: Any, server: RecordingServer) -> None:
    """The password-reset view mails a link that, followed, lets the user set a password."""
    User.objects.create_user("ann", "ann@example.com", "old-password")
    client = Client()

    response = client.post("/accounts/password_reset/", {"email": "ann@example.com"})
    assert response.status_code == 302

    (received,) = server.messages
    assert received.rcpt_tos == ["ann@example.com"]
    match = re.search(r"http://testserver(/accounts/reset/\S+/)", received.message.get_content())
    assert match is not None
    response = client.get(match.group(1), follow=True)
    assert response.status_code == 200
    response = client.post(
        response.redirect_chain[-1][0],
        {"new_password1": "a-new-passw0rd!", "new_password2": "a-new-passw0rd!"},
    )
    assert response.status_code == 302
    assert User.objects.get(username="ann").check_password("a-new-passw0rd!")
