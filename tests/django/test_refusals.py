"""Messages Django refuses, ours refuses too (and what Django sends, ours sends).

Each message is given to Django's own SMTP backend and to ours; both must
refuse it with the same kind of exception before anything reaches the
server, or both must send it. What Django refuses depends on its version
(``mixed_subtype`` and a ``Bcc`` header are refused by Django 6.x / 6.1 only),
so the expectation comes from Django itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django
import pytest
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from django_amsdal_mail.backend import EmailBackend
from tests.smtpd import RecordingServer


def _message(**kwargs: Any) -> EmailMessage:
    kwargs.setdefault("subject", "Subject")
    kwargs.setdefault("body", "Body")
    kwargs.setdefault("from_email", "from@example.com")
    kwargs.setdefault("to", ["to@example.com"])
    return EmailMessage(**kwargs)


def _mixed_subtype() -> EmailMessage:
    message = _message()
    message.attach("a.txt", "text", "text/plain")
    message.mixed_subtype = "related"  # type: ignore[attr-defined]
    return message


CASES: dict[str, Callable[[], EmailMessage]] = {
    "newline-in-subject": lambda: _message(subject="Hello\nBcc: spy@example.com"),
    "newline-in-header": lambda: _message(headers={"X-Tag": "a\r\nBcc: spy@example.com"}),
    "address-without-domain": lambda: _message(to=["to@"]),
    "address-without-local-part": lambda: _message(to=["@example.com"]),
    "address-with-two-ats": lambda: _message(cc=["a@b@example.com"]),
    "newline-in-address": lambda: _message(bcc=["a@example.com\nRCPT TO:<spy@example.com>"]),
    "malformed-sender": lambda: _message(from_email="from@"),
    "bcc-header": lambda: _message(headers={"Bcc": "shown@example.com"}),
    "mixed-subtype": _mixed_subtype,
    "bare-local-name": lambda: _message(to=["root"]),
}


def _django_backend(server: RecordingServer) -> BaseEmailBackend:
    if django.VERSION >= (6, 1):
        return DjangoSMTPBackend(host=server.host, port=server.port, alias="refusals")
    return DjangoSMTPBackend(host=server.host, port=server.port)


def _outcome(backend: BaseEmailBackend, message: EmailMessage) -> str:
    """Return "sent", or the kind of exception the backend raised."""
    try:
        assert backend.send_messages([message]) == 1
    except (ValueError, AttributeError, TypeError) as exc:
        return next(
            kind.__name__
            for kind in (ValueError, AttributeError, TypeError)
            if isinstance(exc, kind)
        )
    return "sent"


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_we_refuse_what_django_refuses(build: Callable[[], EmailMessage], smtp_server: Any) -> None:
    """Our backend refuses (with the same kind of exception) exactly what Django's refuses."""
    theirs, ours = smtp_server(), smtp_server()
    expected = _outcome(_django_backend(theirs), build())
    assert _outcome(EmailBackend(host=ours.host, port=ours.port), build()) == expected
    assert len(ours.messages) == len(theirs.messages)
    if expected != "sent":
        assert ours.connections == 0
