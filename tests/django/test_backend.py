"""Django's email backend contract, kept by EmailBackend in its sync and async twins."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives

from amsdal_mail import RecipientsRefusedError
from django_amsdal_mail.backend import EmailBackend
from tests.smtpd import RecordingServer, ServerFactory, free_port

from .conftest import Twin


def _message(to: list[str] | None = None, **kwargs: object) -> EmailMessage:
    return EmailMessage(
        "Subject", "Body", "from@example.com", ["to@example.com"] if to is None else to, **kwargs
    )


def _backend(server: RecordingServer, **options: object) -> EmailBackend:
    return EmailBackend(host=server.host, port=server.port, **options)


async def test_returns_the_number_of_messages_sent(twin: Twin, server: RecordingServer) -> None:
    """send_messages() returns how many messages were sent."""
    messages = [_message([f"user{i}@example.com"]) for i in range(3)]
    assert await twin.send(_backend(server), messages) == 3
    assert [m.rcpt_tos for m in server.messages] == [[f"user{i}@example.com"] for i in range(3)]


async def test_an_empty_list_opens_no_connection(twin: Twin, server: RecordingServer) -> None:
    """send_messages([]) returns 0 without connecting."""
    assert await twin.send(_backend(server), []) == 0
    assert server.connections == 0


async def test_messages_without_recipients_are_skipped(twin: Twin, server: RecordingServer) -> None:
    """A message without recipients is not sent, not counted, and needs no connection."""
    assert await twin.send(_backend(server), [_message([])]) == 0
    assert server.connections == 0


async def test_a_batch_uses_one_connection(twin: Twin, server: RecordingServer) -> None:
    """All messages of one call go over one connection, closed at the end of the call."""
    backend = _backend(server)
    await twin.send(backend, [_message(), _message()])
    await twin.send(backend, [_message()])
    assert server.connections == 2
    assert [m.session_id for m in server.messages] == [1, 1, 2]


async def test_an_open_connection_is_reused_across_calls(
    twin: Twin, server: RecordingServer
) -> None:
    """Inside ``with backend`` (or ``async with``) every call shares one connection."""
    backend = _backend(server)
    async with twin.connected(backend):
        await twin.send(backend, [_message()])
        await twin.send(backend, [_message(), _message()])
    assert server.connections == 1
    assert len(server.messages) == 3


def test_open_reports_whether_it_connected(server: RecordingServer) -> None:
    """open() returns True when it connected and False when already open, as Django's does."""
    backend = _backend(server)
    try:
        assert backend.open() is True
        assert backend.open() is False
    finally:
        backend.close()
    backend.close()  # closing twice is harmless
    assert server.connections == 1


def test_open_with_fail_silently_returns_none_when_the_server_is_down() -> None:
    """With fail_silently, a failed open() returns None instead of raising."""
    backend = EmailBackend(host="127.0.0.1", port=free_port(), fail_silently=True)
    assert backend.open() is None


async def test_every_recipient_refused_raises_smtp_recipients_refused(
    twin: Twin, smtp_server: ServerFactory
) -> None:
    """When all recipients are refused: smtplib.SMTPRecipientsRefused with each address's reply."""
    server = smtp_server(
        rcpt_replies={"a@example.com": "550 5.1.1 No such user", "b@example.com": "450 Try later"}
    )
    with pytest.raises(smtplib.SMTPRecipientsRefused) as excinfo:
        await twin.send(_backend(server), [_message(["a@example.com", "b@example.com"])])
    assert isinstance(excinfo.value, RecipientsRefusedError)
    assert excinfo.value.recipients == {
        "a@example.com": (550, b"5.1.1 No such user"),
        "b@example.com": (450, b"Try later"),
    }
    assert server.messages == []


async def test_every_recipient_refused_with_fail_silently_counts_nothing(
    twin: Twin, smtp_server: ServerFactory
) -> None:
    """With fail_silently, a fully refused message is not counted and later ones still go."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 No such user"})
    backend = _backend(server, fail_silently=True)
    sent = await twin.send(backend, [_message(["gone@example.com"]), _message(["ok@example.com"])])
    assert sent == 1
    assert [m.rcpt_tos for m in server.messages] == [["ok@example.com"]]


async def test_a_partly_refused_message_counts_as_sent(
    twin: Twin, smtp_server: ServerFactory
) -> None:
    """Some recipients refused, some accepted: the message counts as sent, the status tells."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 No such user"})
    message = _message(["ok@example.com", "gone@example.com"])
    assert await twin.send(_backend(server), [message]) == 1
    assert server.messages[0].rcpt_tos == ["ok@example.com"]
    status = message.amsdal_status
    assert status.recipients["ok@example.com"].status == "sent"
    assert status.recipients["gone@example.com"].status == "rejected"
    assert status.recipients["gone@example.com"].code == 550


async def test_a_refused_sender_raises_smtp_sender_refused(
    twin: Twin, smtp_server: ServerFactory
) -> None:
    """A refused MAIL FROM is smtplib.SMTPSenderRefused with the code and the sender."""
    server = smtp_server(mail_reply="553 5.7.1 Sender not allowed")
    with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
        await twin.send(_backend(server), [_message()])
    assert excinfo.value.smtp_code == 553
    assert excinfo.value.sender == "from@example.com"


async def test_refused_data_raises_smtp_data_error(twin: Twin, smtp_server: ServerFactory) -> None:
    """A message refused at the end of DATA is smtplib.SMTPDataError with the code."""
    server = smtp_server(data_reply="554 5.6.0 Content rejected")
    with pytest.raises(smtplib.SMTPDataError) as excinfo:
        await twin.send(_backend(server), [_message()])
    assert excinfo.value.smtp_code == 554
    assert len(server.refused_data) == 1


async def test_wrong_credentials_raise_smtp_authentication_error(
    twin: Twin, smtp_server: ServerFactory
) -> None:
    """A refused login is smtplib.SMTPAuthenticationError, as Django users catch it."""
    server = smtp_server(auth={"alice": "right"})
    backend = _backend(server, username="alice", password="wrong")
    with pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
        await twin.send(backend, [_message()])
    assert excinfo.value.smtp_code == 535
    assert "wrong" not in str(excinfo.value)


async def test_an_unreachable_server_is_an_oserror(twin: Twin) -> None:
    """A refused connection is an OSError; with fail_silently nothing is counted."""
    port = free_port()
    with pytest.raises(OSError):
        await twin.send(EmailBackend(host="127.0.0.1", port=port), [_message()])
    silent = EmailBackend(host="127.0.0.1", port=port, fail_silently=True)
    assert await twin.send(silent, [_message(), _message()]) == 0


@pytest.mark.parametrize(
    "field",
    ["to", "cc", "bcc", "from_email"],
)
@pytest.mark.parametrize(
    "address",
    ["to@", "@example.com", "two@at@example.com", "ann@example.com\r\nBcc: spy@example.com"],
)
async def test_a_malformed_address_is_refused_before_any_smtp_command(
    twin: Twin, server: RecordingServer, field: str, address: str
) -> None:
    """A malformed address (or CR/LF) is a ValueError, and the server never hears of it."""
    kwargs: dict[str, object] = {"to": ["ok@example.com"], "from_email": "from@example.com"}
    kwargs[field] = address if field == "from_email" else [address]
    message = EmailMessage("Subject", "Body", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await twin.send(_backend(server), [message])
    assert server.connections == 0


async def test_a_bare_local_name_is_accepted(twin: Twin, server: RecordingServer) -> None:
    """A recipient without a domain (root, for a local MTA) is accepted, as Django accepts it."""
    assert await twin.send(_backend(server), [_message(["root"])]) == 1
    assert server.messages[0].rcpt_tos == ["root"]


async def test_idn_domains_go_out_as_punycode(twin: Twin, server: RecordingServer) -> None:
    """Non-ASCII domains are IDNA-encoded in MAIL FROM and RCPT TO."""
    message = EmailMessage("Subject", "Body", "info@bücher.example", ["zoe@münchen.example"])
    assert await twin.send(_backend(server), [message]) == 1
    received = server.messages[0]
    assert received.mail_from == "info@xn--bcher-kva.example"
    assert received.rcpt_tos == ["zoe@xn--mnchen-3ya.example"]


async def test_bcc_recipients_are_in_the_envelope_only(twin: Twin, server: RecordingServer) -> None:
    """Bcc recipients receive the message but never appear in its headers."""
    message = _message(["to@example.com"], cc=["cc@example.com"], bcc=["hidden@example.com"])
    assert await twin.send(_backend(server), [message]) == 1
    received = server.messages[0]
    assert received.rcpt_tos == ["to@example.com", "cc@example.com", "hidden@example.com"]
    assert b"hidden@example.com" not in received.data


async def test_the_status_is_kept_on_each_message(twin: Twin, server: RecordingServer) -> None:
    """After sending, message.amsdal_status is that message's own SendStatus."""
    first, second = _message(["a@example.com"]), _message(["b@example.com"])
    await twin.send(_backend(server), [first, second])
    assert list(first.amsdal_status.recipients) == ["a@example.com"]
    assert list(second.amsdal_status.recipients) == ["b@example.com"]
    assert first.amsdal_status.is_success


async def test_alternatives_and_attachments_are_delivered(
    twin: Twin, server: RecordingServer
) -> None:
    """An EmailMultiAlternatives with HTML and an attachment arrives with both."""
    message = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.attach("data.bin", b"\x00\x01", "application/octet-stream")
    assert await twin.send(_backend(server), [message]) == 1
    parsed = server.messages[0].message
    assert parsed.get_body(("html",)).get_content().strip() == "<p>HTML</p>"
    (attachment,) = parsed.iter_attachments()
    assert attachment.get_filename() == "data.bin"
    assert attachment.get_content() == b"\x00\x01"


def test_the_django_smtp_attributes_hold_the_effective_values(server: RecordingServer) -> None:
    """host, port, username, password, use_tls, use_ssl, timeout, ssl_* and fail_silently."""
    backend = EmailBackend(
        host=server.host,
        port=server.port,
        username="alice",
        password="pw",
        use_tls=True,
        timeout=12,
        ssl_certfile="cert.pem",
        ssl_keyfile="key.pem",
        fail_silently=True,
    )
    assert (backend.host, backend.port, backend.username, backend.password) == (
        server.host,
        server.port,
        "alice",
        "pw",
    )
    assert (backend.use_tls, backend.use_ssl, backend.timeout) == (True, False, 12.0)
    assert (backend.ssl_certfile, backend.ssl_keyfile) == ("cert.pem", "key.pem")
    assert backend.fail_silently is True
    assert backend.alias is None


def test_positional_arguments_follow_djangos_smtp_backend(server: RecordingServer) -> None:
    """host, port, username, password, use_tls, fail_silently: Django's positional order."""
    backend = EmailBackend(server.host, server.port, "alice", "pw", False, True)
    assert (backend.host, backend.port, backend.username, backend.password) == (
        server.host,
        server.port,
        "alice",
        "pw",
    )
    assert backend.fail_silently is True


async def test_a_reply_lost_after_the_data_is_server_disconnected(
    twin: Twin, faulty_server: Any
) -> None:
    """Data sent but the reply lost: SMTPServerDisconnected, status ``unknown``, not resent."""
    server = faulty_server(drop_before_reply=[1])
    message = _message()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        await twin.send(EmailBackend(host="127.0.0.1", port=server.port), [message])
    assert message.amsdal_status.status == {"unknown"}
    assert len(server.messages) == 1  # the server did store it: resending would duplicate it
