"""TestEmailBackend in this process: the real backend's steps with scripted replies.

Django is set up by pytest-django (tests/django_settings.py), whose test
environment switched mail to locmem, as it does in users' projects.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.core import mail
from django.core.mail import EmailMessage as DjangoEmailMessage
from django.dispatch import Signal

from amsdal_mail import SendStatus
from amsdal_mail.testing import SMTPServer
from django_amsdal_mail import CancelSend
from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.signals import post_send, pre_send
from django_amsdal_mail.testing import (
    TEST_BACKEND,
    CapturedMail,
    TestEmailBackend,
    capture_mail,
    script_replies,
    use_test_backend,
)

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
REFUSING = {"gone@example.com": (550, "5.1.1 No such user"), "later@example.com": (451, "4.3.0")}


class Received:
    """What the receivers of one signal were sent, connected for EmailBackend only."""

    def __init__(self, signal: Signal) -> None:
        self.calls: list[dict[str, Any]] = []
        self.signal = signal
        signal.connect(self.receive, sender=EmailBackend, weak=False)

    def receive(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)

    def disconnect(self) -> None:
        self.signal.disconnect(self.receive, sender=EmailBackend)


@pytest.fixture
def signals() -> Iterator[tuple[Received, Received]]:
    """Receivers of pre_send and post_send, as a project connects them for the real backend."""
    received = Received(pre_send), Received(post_send)
    yield received
    for one in received:
        one.disconnect()


@pytest.fixture
def captured() -> Iterator[CapturedMail]:
    """Django mail through TestEmailBackend, as the amsdal_test_backend fixture does."""
    with capture_mail() as mail_capture:
        yield mail_capture


def message(*to: str, subject: str = "Hi") -> DjangoEmailMessage:
    return DjangoEmailMessage(subject, "Hello", "me@example.com", list(to))


def test_mail_goes_through_the_test_backend_and_back_to_locmem() -> None:
    assert settings.EMAIL_BACKEND == LOCMEM  # the test environment's
    with capture_mail():
        assert isinstance(mail.get_connection(), TestEmailBackend)
    assert settings.EMAIL_BACKEND == LOCMEM


def test_statuses_signals_and_the_outbox(
    captured: CapturedMail, signals: tuple[Received, Received]
) -> None:
    before, after = signals
    with script_replies(REFUSING):
        sent = mail.send_mail(
            "Hi", "Hello", "me@example.com", ["gone@example.com", "Ok <ok@example.com>"]
        )
    assert sent == 1
    (kept,) = captured.outbox
    assert captured.outbox is mail.outbox
    assert kept.subject == "Hi"
    status: SendStatus = kept.amsdal_status  # type: ignore[attr-defined]
    assert {a: r.status for a, r in status.recipients.items()} == {
        "gone@example.com": "rejected",
        "ok@example.com": "sent",
    }
    assert status.recipients["gone@example.com"].code == 550
    assert [call["message"].subject for call in before.calls] == ["Hi"]
    (reported,) = after.calls
    assert reported["status"] is reported["message"].amsdal_status
    assert reported["status"].recipients == status.recipients
    assert reported["sender"] is EmailBackend
    assert isinstance(reported["backend"], TestEmailBackend)


def test_every_recipient_refused_raises_as_the_real_backend(
    captured: CapturedMail, signals: tuple[Received, Received]
) -> None:
    _, after = signals
    with script_replies(REFUSING), pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
        mail.send_mail("Hi", "Hello", "me@example.com", ["gone@example.com", "later@example.com"])
    assert raised.value.recipients == {
        "gone@example.com": (550, b"5.1.1 No such user"),
        "later@example.com": (451, b"4.3.0"),
    }
    assert len(after.calls) == 1  # post_send came before the error
    assert len(captured.outbox) == 1  # handed over, refused: kept with its status
    with script_replies(REFUSING):
        assert (
            mail.send_mail("Hi", "x", "me@example.com", ["gone@example.com"], fail_silently=True)
            == 0
        )
    assert captured.outbox[1].amsdal_status.status == {"rejected"}  # type: ignore[attr-defined]


def test_a_cancelled_message_and_one_without_recipients_are_not_kept(
    captured: CapturedMail, signals: tuple[Received, Received]
) -> None:
    _, after = signals

    def cancel(message: DjangoEmailMessage, **kwargs: Any) -> None:
        if message.subject == "cancel me":
            raise CancelSend

    pre_send.connect(cancel, weak=False)
    try:
        connection = mail.get_connection()
        sent = connection.send_messages(
            [message("a@example.com", subject="cancel me"), message(), message("b@example.com")]
        )
    finally:
        pre_send.disconnect(cancel)
    assert sent == 1
    assert [m.subject for m in captured.outbox] == ["Hi"]
    assert captured.outbox[0].to == ["b@example.com"]
    assert len(after.calls) == 1


def test_captured_script_lasts_until_the_end(captured: CapturedMail) -> None:
    captured.script({"x@example.com": (552, "5.2.2 Full")})
    mail.send_mail("Hi", "Hello", "me@example.com", ["x@example.com", "y@example.com"])
    status = captured.outbox[0].amsdal_status  # type: ignore[attr-defined]
    assert status.recipients["x@example.com"].status == "rejected"


def test_the_script_of_captured_mail_ends_with_it() -> None:
    with capture_mail() as first:
        first.script({"x@example.com": (550, "No")})
    with capture_mail() as second:
        mail.send_mail("Hi", "Hello", "me@example.com", ["x@example.com"])
        assert second.outbox[0].amsdal_status.status == {"sent"}  # type: ignore[attr-defined]


async def test_async_sending_sends_the_signals_and_keeps_the_message(
    captured: CapturedMail, signals: tuple[Received, Received]
) -> None:
    before, after = signals
    backend = TestEmailBackend()
    with script_replies({"x@example.com": (450, "4.2.1 Busy")}):
        sent = await backend.asend_messages([message("x@example.com", "y@example.com")])
    assert sent == 1
    assert len(before.calls) == len(after.calls) == 1
    status = captured.outbox[0].amsdal_status  # type: ignore[attr-defined]
    assert status.recipients["x@example.com"].status == "failed"


def test_the_kept_copy_is_a_copy() -> None:
    with capture_mail() as captured:
        original = message("x@example.com")
        original.connection = TestEmailBackend()
        original.send()
        original.subject = "changed later"
        (kept,) = captured.outbox
    assert kept is not original and kept.subject == "Hi"
    assert kept.connection is original.connection


@pytest.mark.parametrize(
    ("to", "fail_silently"),
    [
        (["gone@example.com", "ok@example.com"], False),
        (["gone@example.com", "later@example.com"], False),
        (["gone@example.com", "later@example.com"], True),
        (["ok@example.com"], False),
    ],
)
def test_the_same_as_the_real_backend_against_a_server(to: list[str], fail_silently: bool) -> None:
    """Count, error and statuses equal EmailBackend's against SMTPServer with the same replies."""

    def outcome(backend: Any) -> tuple[Any, ...]:
        sent: int | str
        email = message(*to)
        try:
            sent = backend.send_messages([email])
        except smtplib.SMTPRecipientsRefused as exc:
            sent = f"refused {exc.recipients}"
        return sent, email.amsdal_status.recipients  # type: ignore[attr-defined]

    with SMTPServer(REFUSING) as server:
        real = outcome(
            EmailBackend(
                host=server.host, port=server.port, backend="smtp", fail_silently=fail_silently
            )
        )
    with capture_mail(), script_replies(REFUSING):
        scripted = outcome(TestEmailBackend(fail_silently=fail_silently))
    assert scripted == real


CONFIGURATIONS = ["EMAIL_BACKEND", *(["MAILERS"] if django.VERSION >= (6, 1) else [])]


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_use_test_backend_over_each_configuration(settings: Any, configuration: str) -> None:
    if configuration == "MAILERS":
        settings.MAILERS = {"default": {"BACKEND": LOCMEM}, "bulk": {"BACKEND": LOCMEM}}
        with use_test_backend():
            assert {alias: mail.mailers[alias] for alias in ("default", "bulk")}  # type: ignore[attr-defined]
            for alias in ("default", "bulk"):
                connection = mail.mailers[alias]  # type: ignore[attr-defined]
                assert isinstance(connection, TestEmailBackend)
                assert connection.alias == alias
            assert settings.MAILERS["bulk"] == {"BACKEND": TEST_BACKEND}
        assert settings.MAILERS["bulk"] == {"BACKEND": LOCMEM}
    else:
        with use_test_backend():
            assert settings.EMAIL_BACKEND == TEST_BACKEND
        assert settings.EMAIL_BACKEND == LOCMEM


def test_connection_options_are_taken_and_ignored() -> None:
    backend = TestEmailBackend(host="smtp.example.com", port=2525, use_tls=True, timeout=3)
    assert backend.host is None  # nothing to connect to
    with capture_mail() as captured:
        assert backend.send_messages([message("x@example.com")]) == 1
        assert len(captured.outbox) == 1
