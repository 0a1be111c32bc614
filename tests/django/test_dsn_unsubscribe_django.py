"""DSN and unsubscribe per Django message (attributes read by convert.py), against real servers."""

from __future__ import annotations

import email
import email.policy

import pytest
from django.core.mail import EmailMessage

from amsdal_mail import DSN, InvalidMessageError
from django_amsdal_mail.backend import EmailBackend
from tests.dsn_smtpd import DSNRecordingServer
from tests.smtpd import RecordingServer

from .conftest import Twin


def _message(**headers: str) -> EmailMessage:
    return EmailMessage("Subject", "Body", "from@example.com", ["to@example.com"], headers=headers)


async def test_message_dsn_attribute(twin: Twin) -> None:
    """``message.dsn = DSN(...)`` reaches MAIL FROM and RCPT TO of a server offering DSN."""
    message = _message()
    message.dsn = DSN(notify="failure,delay", ret="full", envid="order-42")  # type: ignore[attr-defined]
    with DSNRecordingServer() as server:
        assert await twin.send(EmailBackend(host=server.host, port=server.port), [message]) == 1
    (record,) = server.dsn
    assert record.mail == {"RET": "FULL", "ENVID": "order-42"}
    assert record.rcpt == [
        ("to@example.com", {"NOTIFY": "FAILURE,DELAY", "ORCPT": "rfc822;to@example.com"})
    ]


async def test_message_unsubscribe_attribute(twin: Twin, server: RecordingServer) -> None:
    """``message.unsubscribe`` adds List-Unsubscribe and, for https, the one-click header."""
    message = _message()
    message.unsubscribe = ["https://example.com/u/9", "mailto:u@example.com"]  # type: ignore[attr-defined]
    await twin.send(EmailBackend(host=server.host, port=server.port), [message])
    received = email.message_from_bytes(server.messages[0].data, policy=email.policy.compat32)
    assert received["List-Unsubscribe"] == "<https://example.com/u/9>, <mailto:u@example.com>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_a_list_unsubscribe_header_is_kept_as_given(
    twin: Twin, server: RecordingServer
) -> None:
    """A Django message's own List-Unsubscribe header is sent exactly as given."""
    value = "<https://example.com/unsubscribe?user=" + "u" * 80 + ">,<mailto:x@example.com>"
    await twin.send(
        EmailBackend(host=server.host, port=server.port), [_message(**{"List-Unsubscribe": value})]
    )
    assert f"\r\nList-Unsubscribe: {value}\r\n".encode() in server.messages[0].data
    assert b"List-Unsubscribe-Post" not in server.messages[0].data


def test_attribute_and_header_together_are_refused(server: RecordingServer) -> None:
    """Both the attribute and the header: refused before anything is sent."""
    message = _message(**{"List-Unsubscribe": "<mailto:x@example.com>"})
    message.unsubscribe = "https://example.com/u"  # type: ignore[attr-defined]
    with pytest.raises(InvalidMessageError, match="give only one of them"):
        EmailBackend(host=server.host, port=server.port).send_messages([message])
    assert server.messages == []


async def test_dsn_options_of_the_backend(twin: Twin) -> None:
    """dsn_notify / dsn_ret as backend options (MAILERS OPTIONS take the same names)."""
    with DSNRecordingServer() as server:
        backend = EmailBackend(
            host=server.host, port=server.port, dsn_notify="failure", dsn_ret="headers"
        )
        assert await twin.send(backend, [_message()]) == 1
    (record,) = server.dsn
    assert record.mail["RET"] == "HDRS"
    assert record.for_recipient("to@example.com")["NOTIFY"] == "FAILURE"


def test_compatibility_settings(settings: object, server: RecordingServer) -> None:
    """EMAIL_DSN_NOTIFY is read in compatibility mode; a bad value names the setting."""
    settings.EMAIL_DSN_NOTIFY = "delay"  # type: ignore[attr-defined]
    backend = EmailBackend(host=server.host, port=server.port)
    assert backend.amsdal_backend.settings.dsn_notify == ("delay",)  # type: ignore[attr-defined]
    settings.EMAIL_DSN_NOTIFY = "sometimes"  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="settings.EMAIL_DSN_NOTIFY unknown NOTIFY word"):
        EmailBackend(host=server.host, port=server.port)


async def test_message_return_path_attribute(twin: Twin, server: RecordingServer) -> None:
    """``message.return_path`` is that message's MAIL FROM; the From header stays as given."""
    message = _message()
    message.return_path = "bounces@example.com"  # type: ignore[attr-defined]
    assert await twin.send(EmailBackend(host=server.host, port=server.port), [message]) == 1
    (received,) = server.messages
    assert received.mail_from == "bounces@example.com"
    assert received.data.startswith(b"From: from@example.com\r\n")
