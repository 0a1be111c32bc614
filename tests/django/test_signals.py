"""pre_send and post_send, sent around every message by the sync and async twins."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.mail import EmailMessage
from django.dispatch import Signal

from django_amsdal_mail import CancelSend
from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.signals import post_send, pre_send
from tests.smtpd import RecordingServer, ServerFactory, free_port

from .conftest import Twin

Connect = Callable[[Signal, Callable[..., Any]], Callable[..., Any]]


def _message(subject: str = "Subject", to: str = "to@example.com") -> EmailMessage:
    return EmailMessage(subject, "Body", "from@example.com", [to])


def _backend(server: RecordingServer, **options: Any) -> EmailBackend:
    return EmailBackend(host=server.host, port=server.port, **options)


async def test_pre_send_may_change_the_message(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """What a pre_send receiver changes on the message is what gets sent."""

    def change(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        message.to.append("added@example.com")
        message.extra_headers["X-Campaign"] = "spring"
        message.subject = "Changed"

    connect(pre_send, change)
    assert await twin.send(_backend(server), [_message()]) == 1
    received = server.messages[0]
    assert received.rcpt_tos == ["to@example.com", "added@example.com"]
    assert received.message["X-Campaign"] == "spring"
    assert received.message["Subject"] == "Changed"


async def test_cancel_send_skips_one_message_uncounted(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """CancelSend from pre_send skips that message: not sent, not counted, no post_send."""
    posted: list[str] = []

    def cancel(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        if message.subject == "cancel me":
            raise CancelSend

    connect(pre_send, cancel)
    connect(post_send, lambda sender, message, **kwargs: posted.append(message.subject))
    cancelled = _message("cancel me")
    messages = [_message("first"), cancelled, _message("last")]

    assert await twin.send(_backend(server), messages) == 2
    assert [m.message["Subject"] for m in server.messages] == ["first", "last"]
    assert posted == ["first", "last"]
    assert cancelled.amsdal_status is None


async def test_cancelling_every_message_opens_no_connection(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """When pre_send cancels everything, no connection is made."""

    def cancel(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        raise CancelSend

    connect(pre_send, cancel)
    assert await twin.send(_backend(server), [_message(), _message()]) == 0
    assert server.connections == 0


async def test_another_exception_from_pre_send_propagates(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """Any other exception from a pre_send receiver reaches the caller; nothing is sent."""

    def broken(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    connect(pre_send, broken)
    with pytest.raises(RuntimeError, match="receiver bug"):
        await twin.send(_backend(server), [_message()])
    assert server.messages == []


async def test_post_send_carries_the_message_and_its_status(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """post_send gets the backend class as sender, the message, its status and the backend."""
    calls: list[dict[str, Any]] = []
    connect(post_send, lambda **kwargs: calls.append(kwargs))
    backend = _backend(server)
    message = _message(to="Ann <ann@example.com>")

    await twin.send(backend, [message])

    (call,) = calls
    assert call["sender"] is EmailBackend
    assert call["signal"] is post_send
    assert call["message"] is message
    assert call["backend"] is backend
    status = call["status"]
    assert status is message.amsdal_status
    assert status.is_success
    assert status.recipients["ann@example.com"].status == "sent"
    assert status.recipients["ann@example.com"].code == 250


async def test_pre_send_carries_the_message_and_the_backend(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """pre_send gets the backend class as sender, the message and the backend."""
    calls: list[dict[str, Any]] = []
    connect(pre_send, lambda **kwargs: calls.append(kwargs))
    backend = _backend(server)
    message = _message()
    await twin.send(backend, [message])
    assert [(c["sender"], c["message"], c["backend"]) for c in calls] == [
        (EmailBackend, message, backend)
    ]


async def test_post_send_runs_before_a_refusal_error_propagates(
    twin: Twin, smtp_server: ServerFactory, connect: Connect
) -> None:
    """When every recipient is refused, post_send has the status before the error is raised."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    seen: list[str] = []
    connect(
        post_send,
        lambda status, **kwargs: seen.append(status.recipients["gone@example.com"].status),
    )
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await twin.send(_backend(server), [_message(to="gone@example.com")])
    assert seen == ["rejected"]


async def test_post_send_reports_a_connection_failure_for_every_message(
    twin: Twin, connect: Connect
) -> None:
    """An unreachable server: each message is reported failed, even with fail_silently."""
    statuses: list[set[str]] = []
    connect(post_send, lambda status, **kwargs: statuses.append(status.status))
    backend = EmailBackend(host="127.0.0.1", port=free_port(), fail_silently=True)
    assert await twin.send(backend, [_message(), _message()]) == 0
    assert statuses == [{"failed"}, {"failed"}]


async def test_post_send_reports_an_invalid_message(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """A malformed message is reported ``invalid`` on post_send, then its ValueError raised."""
    statuses: list[Any] = []
    connect(post_send, lambda status, **kwargs: statuses.append(status))
    with pytest.raises(ValueError):
        await twin.send(_backend(server), [_message(to="broken@")])
    (status,) = statuses
    assert status.status == {"invalid"}
    assert "broken@" in status.recipients


async def test_async_receivers_are_awaited(server: RecordingServer, connect: Connect) -> None:
    """asend_messages() awaits async receivers, and one may cancel with CancelSend."""
    posted: list[str] = []

    async def cancel(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        if message.subject == "cancel me":
            raise CancelSend

    async def record(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        posted.append(message.subject)

    connect(pre_send, cancel)
    connect(post_send, record)
    sent = await _backend(server).asend_messages([_message("cancel me"), _message("kept")])
    assert sent == 1
    assert posted == ["kept"]


async def test_several_async_receivers_cancelling_together_cancel(
    server: RecordingServer, connect: Connect
) -> None:
    """Two async receivers raising CancelSend at once (an exception group on Django 6) cancel."""

    async def cancel(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        if message.subject == "cancel me":
            raise CancelSend

    async def cancel_too(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        await cancel(sender, message)

    connect(pre_send, cancel)
    connect(pre_send, cancel_too)
    sent = await _backend(server).asend_messages([_message("cancel me"), _message("kept")])
    assert sent == 1
    assert [m.message["Subject"] for m in server.messages] == ["kept"]


async def test_a_receiver_error_beside_a_cancel_propagates(
    server: RecordingServer, connect: Connect
) -> None:
    """CancelSend from one async receiver and another error from a second: not a cancel."""

    async def cancel(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        raise CancelSend

    async def broken(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    # Django 6 raises both in a group; Django 5.2 (asyncio.gather) the first to
    # fail, the first connected.
    connect(pre_send, broken)
    connect(pre_send, cancel)
    with pytest.raises((RuntimeError, BaseExceptionGroup)):
        await _backend(server).asend_messages([_message()])
    assert server.messages == []


@pytest.mark.django_db(transaction=True)
async def test_sync_receivers_may_use_the_orm_from_async_code(
    server: RecordingServer, connect: Connect
) -> None:
    """asend_messages() runs sync receivers in a thread, so they can query the database."""
    counts: list[int] = []
    connect(post_send, lambda **kwargs: counts.append(User.objects.count()))
    assert await _backend(server).asend_messages([_message()]) == 1
    assert counts == [0]


@pytest.mark.django_db(transaction=True)
async def test_sync_receivers_may_use_the_orm_for_an_invalid_message_too(
    server: RecordingServer, connect: Connect
) -> None:
    """Reporting a malformed message from async code also runs sync receivers in a thread."""
    counts: list[int] = []
    connect(post_send, lambda **kwargs: counts.append(User.objects.count()))
    with pytest.raises(ValueError):
        await _backend(server).asend_messages([_message(to="broken@")])
    assert counts == [0]


async def test_a_receiver_removing_every_recipient_skips_the_message(
    twin: Twin, server: RecordingServer, connect: Connect
) -> None:
    """A message left without recipients by pre_send is skipped, as one without any."""

    def clear(sender: type, message: EmailMessage, **kwargs: Any) -> None:
        message.to = []

    connect(pre_send, clear)
    assert await twin.send(_backend(server), [_message()]) == 0
    assert server.connections == 0
