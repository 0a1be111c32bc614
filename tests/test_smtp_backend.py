"""The SMTP backend against real in-process servers, sync and async alike.

Every test that takes the ``sender`` fixture runs twice: once through
``send_messages`` / ``send_mail`` / ``with`` (smtplib) and once through
``asend_messages`` / ``asend_mail`` / ``async with`` (aiosmtplib).
"""

from __future__ import annotations

import logging
import smtplib
import sys
import time
from typing import Any

import pytest

from amsdal_mail import (
    Attachment,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    EmailMessage,
    InvalidMessageError,
    MailError,
    MailTimeoutError,
    MissingDependencyError,
    NotSupportedError,
    ServerDisconnectedError,
    TransportError,
    get_connection,
)
from amsdal_mail.backends.smtp import SMTPBackend
from tests.conftest import Sender
from tests.smtpd import RecordingServer, ServerFactory, free_port

SENDER = "sender@example.com"
TIMEOUT = 5
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
BINARY = bytes(range(256)) * 4 + b"\r\n.\r\n\n\r\x00"


def connect_to(server: RecordingServer, **options: Any) -> SMTPBackend:
    """Return an SMTP backend for ``server`` (plain SMTP unless ``options`` say otherwise)."""
    options.setdefault("timeout", TIMEOUT)
    connection = get_connection("smtp", host=server.host, port=server.port, **options)
    assert isinstance(connection, SMTPBackend)
    return connection


def simple(to: str | list[str] = "rcpt@example.com", **kwargs: Any) -> EmailMessage:
    """Return a small valid message to ``to``."""
    kwargs.setdefault("subject", "Hello")
    kwargs.setdefault("body", "Hello there.\n")
    return EmailMessage(from_email=SENDER, to=to, **kwargs)


def text_of(part: Any) -> str:
    """Return a text part's content with the wire's CRLF turned back into LF."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# -- what arrives ----------------------------------------------------------------------


async def test_every_field_arrives_as_written(sender: Sender, smtp_server: ServerFactory) -> None:
    """Headers, bodies and attachments arrive field by field as the message says."""
    server = smtp_server()
    message = EmailMessage(
        subject="Grüße — quarterly report №4",
        body="Plain body.\nSecond line: naïve café.\n",
        html_body='<p>HTML <b>body</b> <img src="cid:logo"></p>\n',
        from_email="Zoë Példa <zoe@example.com>",
        to=["Ann Example <ann@example.com>", "bob@example.com"],
        cc=["Carl <carl@example.com>"],
        bcc=["hidden@example.com"],
        reply_to=["Replies <replies@example.com>"],
        headers={"X-Campaign": "spring-2025", "X-Priority": "1"},
        attachments=[
            Attachment("report.bin", BINARY, "application/octet-stream"),
            Attachment("notes.txt", "Plain text attachment\n", "text/plain"),
            Attachment("logo.png", PNG, "image/png", content_id="logo"),
        ],
    )

    status = await sender.send(connect_to(server), [message])

    [received] = server.messages
    assert received.mail_from == "zoe@example.com"
    assert received.rcpt_tos == [
        "ann@example.com",
        "bob@example.com",
        "carl@example.com",
        "hidden@example.com",
    ]
    parsed = received.message
    assert parsed["From"].addresses[0].display_name == "Zoë Példa"
    assert parsed["From"].addresses[0].addr_spec == "zoe@example.com"
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Ann Example", "ann@example.com"),
        ("", "bob@example.com"),
    ]
    assert [(a.display_name, a.addr_spec) for a in parsed["Cc"].addresses] == [
        ("Carl", "carl@example.com")
    ]
    assert [(a.display_name, a.addr_spec) for a in parsed["Reply-To"].addresses] == [
        ("Replies", "replies@example.com")
    ]
    assert parsed["Subject"] == "Grüße — quarterly report №4"
    assert parsed["X-Campaign"] == "spring-2025"
    assert parsed["X-Priority"] == "1"
    assert parsed["Message-ID"] and parsed["Date"]
    # Bcc goes in the envelope only.
    assert "Bcc" not in parsed
    assert b"hidden" not in received.data

    body = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert body is not None and html is not None
    assert text_of(body) == "Plain body.\nSecond line: naïve café.\n"
    assert text_of(html) == '<p>HTML <b>body</b> <img src="cid:logo"></p>\n'
    attachments = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert attachments["report.bin"].get_content() == BINARY
    assert attachments["report.bin"].get_content_type() == "application/octet-stream"
    assert text_of(attachments["notes.txt"]) == "Plain text attachment\n"
    inline = [p for p in parsed.walk() if p["Content-ID"] == "<logo>"]
    assert len(inline) == 1 and inline[0].get_content() == PNG

    assert status.is_success and not status.has_failures
    assert status.status == {"sent"}
    assert set(status.recipients) == {
        "ann@example.com",
        "bob@example.com",
        "carl@example.com",
        "hidden@example.com",
    }
    assert all(r.code == 250 and r.message_id is None for r in status.recipients.values())
    assert status.message_id is None
    assert status.esp_response == "250 OK"
    assert message.status is not None
    assert message.status.recipients == status.recipients


async def test_line_starting_with_a_dot_arrives_intact(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Body lines starting with '.' (and a lone '.') survive dot-stuffing unchanged."""
    server = smtp_server()
    body = ".hidden line\n.\n..two dots\nend\n"

    await sender.send(connect_to(server), [simple(body=body)])

    [received] = server.messages
    assert b"\r\n.hidden line\r\n.\r\n..two dots\r\n" in received.data
    assert text_of(received.message) == body


async def test_send_mail_takes_one_recipient_string_and_message_kwargs(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """send_mail / asend_mail accept one address as a string and pass kwargs to the message."""
    server = smtp_server()

    status = await sender.send_mail(
        "Subject line",
        "Text body\n",
        SENDER,
        "only@example.com",
        html_message="<p>HTML body</p>",
        connection=connect_to(server),
        cc=["copy@example.com"],
        headers={"X-Via": "send_mail"},
    )

    [received] = server.messages
    assert received.rcpt_tos == ["only@example.com", "copy@example.com"]
    assert received.message["Subject"] == "Subject line"
    assert received.message["X-Via"] == "send_mail"
    html = received.message.get_body(("html",))
    assert html is not None and text_of(html) == "<p>HTML body</p>"  # no line break added
    assert status.get_successful_recipients() == ["only@example.com", "copy@example.com"]


async def test_send_mail_without_connection_uses_the_environment(
    sender: Sender, smtp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a connection, send_mail builds one from the AMSDAL_EMAIL_* environment."""
    server = smtp_server()
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", server.host)
    monkeypatch.setenv("AMSDAL_EMAIL_PORT", str(server.port))
    monkeypatch.setenv("AMSDAL_EMAIL_TIMEOUT", str(TIMEOUT))

    status = await sender.send_mail("Hi", "Body", SENDER, ["env@example.com"])

    assert status.status == {"sent"}
    assert server.messages[0].rcpt_tos == ["env@example.com"]


async def test_idn_domains_go_out_as_punycode(sender: Sender, smtp_server: ServerFactory) -> None:
    """An IDN domain is sent as punycode in MAIL/RCPT; the status keeps the address as written."""
    server = smtp_server()
    message = EmailMessage(
        "IDN", "Body", "Bücher Shop <shop@bücher.example>", ["user@bücher.example"]
    )

    status = await sender.send(connect_to(server), [message])

    [received] = server.messages
    assert received.mail_from == "shop@xn--bcher-kva.example"
    assert received.rcpt_tos == ["user@xn--bcher-kva.example"]
    assert received.message["From"].addresses[0].display_name == "Bücher Shop"
    assert list(status.recipients) == ["user@bücher.example"]
    assert status.recipients["user@bücher.example"].status == "sent"


# -- what the server refuses is status, not an exception -------------------------------


async def test_refused_recipients_are_rejected_or_failed_by_code(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """A recipient refused with 550 is rejected, with 450 failed; the others are sent."""
    server = smtp_server(
        rcpt_replies={
            "gone@example.com": "550 5.1.1 No such user",
            "busy@example.com": "450 4.2.0 Mailbox busy",
        }
    )
    message = simple(["ok@example.com", "Gone <gone@example.com>"], cc=["busy@example.com"])

    status = await sender.send(connect_to(server), [message])

    [received] = server.messages
    assert received.rcpt_tos == ["ok@example.com"]
    ok, gone, busy = (
        status.recipients[a] for a in ("ok@example.com", "gone@example.com", "busy@example.com")
    )
    assert (ok.status, ok.code, ok.response) == ("sent", 250, "OK")
    assert (gone.status, gone.code, gone.response) == ("rejected", 550, "5.1.1 No such user")
    assert (busy.status, busy.code, busy.response) == ("failed", 450, "4.2.0 Mailbox busy")
    assert status.status == {"sent", "rejected", "failed"}
    assert not status.is_success and status.has_failures
    assert status.get_successful_recipients() == ["ok@example.com"]
    assert sorted(status.get_failed_recipients()) == ["busy@example.com", "gone@example.com"]
    assert status.esp_response == "250 OK"
    assert message.status is not None and message.status.recipients == status.recipients


async def test_every_recipient_refused_sends_no_data(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """When every recipient is refused nothing is delivered; esp_response is the last refusal."""
    server = smtp_server(
        rcpt_replies={
            "a@example.com": "550 5.1.1 No such user",
            "b@example.com": "451 4.3.0 Try again",
        }
    )

    status = await sender.send(connect_to(server), [simple(["a@example.com", "b@example.com"])])

    assert server.messages == [] and server.refused_data == []
    assert {a: r.status for a, r in status.recipients.items()} == {
        "a@example.com": "rejected",
        "b@example.com": "failed",
    }
    assert status.esp_response == "451 4.3.0 Try again"


@pytest.mark.parametrize(
    ("reply", "word"),
    [("553 5.7.1 Sender not allowed", "rejected"), ("451 4.7.1 Greylisted", "failed")],
)
async def test_refused_sender_applies_to_every_recipient(
    sender: Sender, smtp_server: ServerFactory, reply: str, word: str
) -> None:
    """A refused MAIL FROM gives every recipient that reply's code and status word."""
    server = smtp_server(mail_reply=reply)
    code, text = reply.split(" ", 1)
    message = simple(["a@example.com", "b@example.com"], bcc=["c@example.com"])

    status = await sender.send(connect_to(server), [message])

    assert server.messages == []
    assert set(status.recipients) == {"a@example.com", "b@example.com", "c@example.com"}
    for recipient in status.recipients.values():
        assert (recipient.status, recipient.code, recipient.response) == (word, int(code), text)
    assert status.esp_response == reply
    assert message.status is not None and message.status.status == {word}


@pytest.mark.parametrize(
    ("reply", "word"),
    [("554 5.6.0 Content rejected", "rejected"), ("452 4.3.1 Out of storage", "failed")],
)
async def test_refused_data_applies_to_every_recipient(
    sender: Sender, smtp_server: ServerFactory, reply: str, word: str
) -> None:
    """A message refused at the end of DATA gives every recipient that reply."""
    server = smtp_server(data_reply=reply)
    code, text = reply.split(" ", 1)

    status = await sender.send(connect_to(server), [simple(["a@example.com", "b@example.com"])])

    assert server.messages == []
    [refused] = server.refused_data
    assert refused.rcpt_tos == ["a@example.com", "b@example.com"]
    for recipient in status.recipients.values():
        assert (recipient.status, recipient.code, recipient.response) == (word, int(code), text)
    assert status.esp_response == reply


async def test_batch_has_an_aggregate_and_each_message_its_own_status(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """A batch returns one aggregate status; each message keeps only its own recipients."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    first = simple("gone@example.com", subject="first")
    second = simple(["one@example.com", "two@example.com"], subject="second")
    third = simple("three@example.com", subject="third")

    total = await sender.send(connect_to(server), [first, second, third])

    assert [m.message["Subject"] for m in server.messages] == ["second", "third"]
    assert server.connections == 1
    assert first.status is not None and second.status is not None and third.status is not None
    assert list(first.status.recipients) == ["gone@example.com"]
    assert first.status.status == {"rejected"}
    assert first.status.esp_response == "550 5.1.1 No such user"
    assert list(second.status.recipients) == ["one@example.com", "two@example.com"]
    assert second.status.status == {"sent"}
    assert list(third.status.recipients) == ["three@example.com"]
    assert {a: r.status for a, r in total.recipients.items()} == {
        "gone@example.com": "rejected",
        "one@example.com": "sent",
        "two@example.com": "sent",
        "three@example.com": "sent",
    }
    assert total.status == {"rejected", "sent"}
    assert total.esp_response == "250 OK"


async def test_empty_batch_opens_no_connection(sender: Sender, smtp_server: ServerFactory) -> None:
    """Sending an empty list contacts no server and returns an empty status."""
    server = smtp_server()

    status = await sender.send(connect_to(server), [])

    assert status.recipients == {} and not status.is_success
    assert server.connections == 0


async def test_batch_with_an_invalid_message_sends_nothing(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """One invalid message in a batch stops the whole batch before any connection."""
    server = smtp_server()
    good = simple("good@example.com")
    bad = simple("fine@example.com")
    bad.to.append("broken@")  # the lists stay mutable after construction

    with pytest.raises(InvalidMessageError) as excinfo:
        await sender.send(connect_to(server), [good, bad, simple("later@example.com")])

    assert excinfo.value.field == "to"
    assert "broken@" in str(excinfo.value)
    assert server.connections == 0
    assert server.messages == []


# -- connections -----------------------------------------------------------------------


async def test_with_block_reuses_one_connection(sender: Sender, smtp_server: ServerFactory) -> None:
    """Inside with / async with, every send uses the one connection opened on entry."""
    server = smtp_server()

    async with sender.connected(connect_to(server)) as connection:
        assert server.connections == 1
        for index in range(3):
            await sender.send(connection, [simple(subject=f"message {index}")])
        await sender.send(connection, [simple(subject="batch a"), simple(subject="batch b")])

    assert server.connections == 1
    assert [m.session_id for m in server.messages] == [1] * 5
    assert [m.message["Subject"] for m in server.messages] == [
        "message 0",
        "message 1",
        "message 2",
        "batch a",
        "batch b",
    ]


async def test_connection_survives_a_refused_transaction(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """After a fully refused message the same connection still delivers the next one."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})

    async with sender.connected(connect_to(server)) as connection:
        refused = await sender.send(connection, [simple("gone@example.com")])
        accepted = await sender.send(connection, [simple("here@example.com")])

    assert refused.status == {"rejected"} and accepted.status == {"sent"}
    [received] = server.messages
    assert received.rcpt_tos == ["here@example.com"]
    assert server.connections == 1


async def test_each_call_outside_with_opens_its_own_connection(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Outside a with block, each send opens and closes a connection of its own."""
    server = smtp_server()
    connection = connect_to(server)

    await sender.send(connection, [simple(subject="one")])
    await sender.send(connection, [simple(subject="two"), simple(subject="three")])

    assert server.connections == 2
    assert [m.session_id for m in server.messages] == [1, 2, 2]


@pytest.mark.parametrize("concurrency", [2, 3])
async def test_async_concurrency_spreads_over_that_many_connections(
    smtp_server: ServerFactory, concurrency: int
) -> None:
    """asend_messages(concurrency=K) sends the batch over K connections at once."""
    server = smtp_server()
    batch = [simple(f"r{index}@example.com", subject=f"m{index}") for index in range(7)]

    total = await connect_to(server).asend_messages(batch, concurrency=concurrency)

    assert server.connections == concurrency
    assert sorted(m.message["Subject"] for m in server.messages) == [f"m{i}" for i in range(7)]
    assert len(total.recipients) == 7 and total.status == {"sent"}
    for index, message in enumerate(batch):
        assert message.status is not None
        assert list(message.status.recipients) == [f"r{index}@example.com"]


async def test_async_concurrency_inside_async_with_adds_connections(
    smtp_server: ServerFactory,
) -> None:
    """Inside async with, concurrency=K uses the open connection plus K-1 more."""
    server = smtp_server()

    async with connect_to(server) as connection:
        await connection.asend_messages([simple(subject=f"m{i}") for i in range(4)], concurrency=2)
        await connection.asend_messages([simple(subject="after")])

    assert server.connections == 2
    assert len(server.messages) == 5
    assert server.messages[-1].session_id == 1


async def test_concurrency_below_one_is_refused(smtp_server: ServerFactory) -> None:
    """concurrency must be at least 1."""
    server = smtp_server()

    with pytest.raises(ValueError, match="concurrency"):
        await connect_to(server).asend_messages([simple()], concurrency=0)

    assert server.connections == 0


# -- AUTH ------------------------------------------------------------------------------


async def test_auth_with_the_right_password(sender: Sender, smtp_server: ServerFactory) -> None:
    """With the right username and password the server sees an authenticated session."""
    server = smtp_server(auth={"alice": "s3cret pass"})

    status = await sender.send(
        connect_to(server, username="alice", password="s3cret pass"), [simple()]
    )

    assert status.status == {"sent"}
    assert server.messages[0].auth_user == "alice"


async def test_auth_with_a_wrong_password(sender: Sender, smtp_server: ServerFactory) -> None:
    """A wrong password raises AuthenticationError, also smtplib's, with code 535."""
    server = smtp_server(auth={"alice": "s3cret pass"})
    message = simple()

    with pytest.raises(AuthenticationError) as excinfo:
        await sender.send(connect_to(server, username="alice", password="wrong-pw"), [message])

    error = excinfo.value
    assert isinstance(error, smtplib.SMTPAuthenticationError)
    assert isinstance(error, MailError) and isinstance(error, OSError)
    assert error.smtp_code == 535
    assert "wrong-pw" not in str(error) and "wrong-pw" not in repr(error)
    assert server.messages == []
    assert message.status is not None and message.status.status == {"failed"}


async def test_auth_against_a_server_without_auth(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Credentials for a server that offers no AUTH raise NotSupportedError."""
    server = smtp_server()

    with pytest.raises(NotSupportedError) as excinfo:
        await sender.send(connect_to(server, username="alice", password="pw"), [simple()])

    assert isinstance(excinfo.value, smtplib.SMTPNotSupportedError)
    assert "AUTH" in str(excinfo.value)
    # smtplib's own words, which users match on, come first.
    assert str(excinfo.value).startswith("SMTP AUTH extension not supported by server.")
    assert server.messages == []


async def test_password_stays_out_of_debug_logs(
    sender: Sender, smtp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A debug-logged authenticated send never logs the password."""
    server = smtp_server(auth={"alice": "Pa55-w0rd-xyz"})
    caplog.set_level(logging.DEBUG)

    connection = connect_to(server, username="alice", password="Pa55-w0rd-xyz")
    await sender.send(connection, [simple()])
    logging.getLogger("amsdal_mail").debug("backend: %r", connection)

    library_records = [r for r in caplog.records if r.name.startswith("amsdal_mail")]
    assert any("rcpt@example.com" in r.getMessage() for r in library_records)
    assert "Pa55-w0rd-xyz" not in caplog.text


# -- transport failures raise (unless fail_silently) -----------------------------------


async def test_connection_refused_raises_connect_error(sender: Sender) -> None:
    """A closed port raises ConnectError, also a ConnectionError and an OSError."""
    connection = get_connection("smtp", host="127.0.0.1", port=free_port(), timeout=TIMEOUT)
    message = simple()

    with pytest.raises(ConnectError) as excinfo:
        await sender.send(connection, [message])

    assert isinstance(excinfo.value, ConnectionError)
    assert isinstance(excinfo.value, TransportError)
    assert message.status is not None
    assert message.status.recipients["rcpt@example.com"].status == "failed"


async def test_silent_server_times_out(sender: Sender, silent_server: tuple[str, int]) -> None:
    """A server that never greets raises MailTimeoutError (a TimeoutError) after timeout."""
    host, port = silent_server
    connection = get_connection("smtp", host=host, port=port, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(MailTimeoutError) as excinfo:
        await sender.send(connection, [simple()])
    elapsed = time.monotonic() - started

    assert isinstance(excinfo.value, TimeoutError)
    assert isinstance(excinfo.value, OSError)
    assert 0.25 <= elapsed < 0.3 + 2.0


async def test_dropped_connection_raises_server_disconnected(
    sender: Sender, dropping_server: tuple[str, int]
) -> None:
    """A server that hangs up at once raises ServerDisconnectedError, also smtplib's."""
    host, port = dropping_server

    with pytest.raises(ServerDisconnectedError) as excinfo:
        await sender.send(get_connection("smtp", host=host, port=port, timeout=TIMEOUT), [simple()])

    assert isinstance(excinfo.value, smtplib.SMTPServerDisconnected)
    assert isinstance(excinfo.value, ConnectionError)


async def test_fail_silently_marks_recipients_failed(sender: Sender) -> None:
    """With fail_silently a transport error is swallowed and every recipient is failed."""
    connection = get_connection(
        "smtp", fail_silently=True, host="127.0.0.1", port=free_port(), timeout=TIMEOUT
    )
    first = simple(["a@example.com", "b@example.com"])
    second = simple("c@example.com")

    total = await sender.send(connection, [first, second])

    assert {a: r.status for a, r in total.recipients.items()} == dict.fromkeys(
        ["a@example.com", "b@example.com", "c@example.com"], "failed"
    )
    assert first.status is not None and first.status.status == {"failed"}
    assert second.status is not None and second.status.status == {"failed"}
    assert not total.is_success


async def test_fail_silently_via_send_mail(sender: Sender) -> None:
    """send_mail(fail_silently=True) reports the failure instead of raising."""
    connection = get_connection(
        "smtp", fail_silently=True, host="127.0.0.1", port=free_port(), timeout=TIMEOUT
    )

    status = await sender.send_mail("Hi", "Body", SENDER, ["x@example.com"], connection=connection)

    assert status.recipients["x@example.com"].status == "failed"


async def test_fail_silently_never_hides_configuration_errors(
    sender: Sender, smtp_server: ServerFactory, tmp_path: Any
) -> None:
    """A configuration error found while connecting is raised even with fail_silently."""
    server = smtp_server(tls="ssl")
    connection = connect_to(
        server,
        fail_silently=True,
        use_ssl=True,
        ssl_certfile=str(tmp_path / "missing-cert.pem"),
    )

    with pytest.raises(ConfigurationError, match="missing-cert.pem"):
        await sender.send(connection, [simple()])

    assert server.messages == []


def test_fail_silently_never_hides_bad_settings() -> None:
    """An unusable setting raises ConfigurationError at construction, fail_silently or not."""
    with pytest.raises(ConfigurationError, match="port"):
        get_connection("smtp", fail_silently=True, port="not-a-port")


# -- optional dependency ---------------------------------------------------------------


async def test_async_without_aiosmtplib_names_the_extra(
    smtp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without aiosmtplib, async sending fails saying to pip install amsdal-mail[smtp]."""
    server = smtp_server()
    # aiosmtplib is installed in this venv, so the only way to see the library
    # without it is to make the import fail: a None entry in sys.modules makes
    # ``import aiosmtplib`` raise ImportError (monkeypatch restores it after).
    monkeypatch.setitem(sys.modules, "aiosmtplib", None)

    with pytest.raises(MissingDependencyError, match=r"pip install amsdal-mail\[smtp\]") as exc:
        await connect_to(server).asend_messages([simple()])

    assert isinstance(exc.value, ImportError)
    assert server.connections == 0
    # The sync path does not need it.
    assert connect_to(server).send_messages([simple()]).status == {"sent"}


# -- ESMTP extensions --------------------------------------------------------------------


async def test_non_ascii_local_part_uses_smtputf8(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """A non-ASCII local part is sent with SMTPUTF8 when the server offers it."""
    server = smtp_server(enable_smtputf8=True)

    status = await sender.send(connect_to(server), [simple("josé@example.com")])

    [received] = server.messages
    assert received.rcpt_tos == ["josé@example.com"]
    assert "SMTPUTF8" in received.mail_options
    assert status.recipients["josé@example.com"].status == "sent"


async def test_non_ascii_local_part_without_smtputf8_is_not_sent(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Without SMTPUTF8 on the server, such a message is reported invalid and not sent."""
    server = smtp_server(enable_smtputf8=False)

    status = await sender.send(connect_to(server), [simple(["josé@example.com", "ok@example.com"])])

    assert server.messages == []
    assert status.status == {"invalid"}
    assert "SMTPUTF8" in (status.recipients["ok@example.com"].response or "")


async def test_message_larger_than_the_server_size_limit_is_not_sent(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """A message over the server's advertised SIZE is rejected with 552 without sending it."""
    server = smtp_server(data_size_limit=2000)
    big = simple(attachments=[Attachment("big.bin", b"x" * 5000)])

    total = await sender.send(
        connect_to(server), [big, simple("other@example.com", subject="small")]
    )

    assert [m.message["Subject"] for m in server.messages] == ["small"]
    assert total.status == {"rejected", "sent"}
    assert big.status is not None
    refusal = big.status.recipients["rcpt@example.com"]
    assert (refusal.status, refusal.code) == ("rejected", 552)
    assert any(option.startswith("SIZE=") for option in server.messages[0].mail_options)


# -- one message at a time: send_message / asend_message ---------------------------------


async def test_send_message_keeps_its_connection_until_close(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """send_message opens a connection on demand and leaves it open for the next one."""
    server = smtp_server()
    connection = connect_to(server)
    first, second = simple(subject="One"), simple(subject="Two")

    status = await sender.send_message(connection, first)
    await sender.send_message(connection, second)

    assert status is first.status and status.status == {"sent"}
    assert second.status is not None and second.status.status == {"sent"}
    assert server.connections == 1
    await sender.close(connection)
    await sender.send_message(connection, simple(subject="Three"))
    await sender.close(connection)
    received = server.wait_for_messages(3)
    assert [m.message["Subject"] for m in received] == ["One", "Two", "Three"]
    assert [m.session_id for m in received] == [1, 1, 2]


async def test_send_message_records_the_failure_then_raises(sender: Sender) -> None:
    """A transport error is raised even with fail_silently, after the status records it."""
    connection = get_connection(
        "smtp", host="127.0.0.1", port=free_port(), timeout=TIMEOUT, fail_silently=True
    )
    message = simple()

    with pytest.raises(ConnectError):
        await sender.send_message(connection, message)

    assert message.status is not None
    assert message.status.status == {"failed"}
    assert "not sent" in (message.status.recipients["rcpt@example.com"].response or "")


async def test_send_message_reports_refusals_in_the_status(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """What the server refuses is status, not an exception, one message at a time too."""
    server = smtp_server(rcpt_replies={"gone@example.com": "550 5.1.1 No such user"})
    connection = connect_to(server)

    status = await sender.send_message(connection, simple(["ok@example.com", "gone@example.com"]))
    await sender.close(connection)

    assert status.recipients["gone@example.com"].status == "rejected"
    assert status.recipients["ok@example.com"].status == "sent"


async def test_each_message_is_validated_once_per_send(
    sender: Sender, smtp_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The send path validates each message once and hands the result down."""
    server = smtp_server()
    messages = [simple(subject="One"), simple(subject="Two")]
    single = simple(subject="Three")
    calls: list[str] = []
    validate = EmailMessage.validate

    def counting(self: EmailMessage) -> Any:
        calls.append(self.subject)
        return validate(self)

    monkeypatch.setattr(EmailMessage, "validate", counting)
    await sender.send(connect_to(server), messages)
    connection = connect_to(server)
    await sender.send_message(connection, single)
    await sender.close(connection)

    assert sorted(calls) == ["One", "Three", "Two"]
