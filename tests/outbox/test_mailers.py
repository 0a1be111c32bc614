"""Django 6.1+ MAILERS: the outbox as the default mailer, another alias sending."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, mailers

from django_amsdal_mail.outbox.worker import deliver
from tests.smtpd import ServerFactory

from .conftest import T0

pytestmark = pytest.mark.django_db(transaction=True)

OUTBOX = "django_amsdal_mail.outbox.backend.OutboxBackend"
OURS = "django_amsdal_mail.backend.EmailBackend"


def test_the_outbox_as_default_mailer_sends_through_the_mailer_alias(
    smtp_server: ServerFactory, settings: Any
) -> None:
    """MAILERS["default"] queues (its OPTIONS give the priority); MAILER "smtp" sends."""
    server = smtp_server()
    settings.MAILERS = {
        "default": {"BACKEND": OUTBOX, "OPTIONS": {"priority": 3}},
        "smtp": {"BACKEND": OURS, "OPTIONS": {"host": server.host, "port": server.port}},
    }
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate", "MAILER": "smtp"}
    message = EmailMessage("Hi", "Body", "from@example.com", ["ann@example.com"])
    assert mailers.default.send_messages([message]) == 1
    received = server.wait_for_messages(1)[0]
    row = message.outbox_message  # type: ignore[attr-defined]
    row.refresh_from_db()
    assert (row.state, row.mailer, row.priority) == ("done", "smtp", 3)
    assert received.rcpt_tos == ["ann@example.com"]


def test_a_mailer_that_is_not_our_backend_is_refused(settings: Any) -> None:
    """The outbox cannot send through itself or through another backend: a clear error."""
    from django_amsdal_mail.outbox import enqueue

    settings.MAILERS = {"default": {"BACKEND": OUTBOX}}
    settings.AMSDAL_EMAIL_OUTBOX = {"ENGINE": "immediate"}
    (row,) = enqueue(EmailMessage("Hi", "B", "f@example.com", ["a@example.com"]), run_after=T0)
    with pytest.raises(ImproperlyConfigured, match=r"MAILERS\['default'\].*EmailBackend"):
        deliver(row.pk, now=T0)
