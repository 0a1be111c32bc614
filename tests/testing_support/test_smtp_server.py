"""amsdal_mail.testing.SMTPServer: a real server on 127.0.0.1, driven by real clients."""

from __future__ import annotations

import smtplib
import socket
import sys
import threading
from collections.abc import Iterator

import pytest

from amsdal_mail import EmailMessage, MissingDependencyError, get_connection
from amsdal_mail.testing import DATA_REPLY, SMTPServer, script_replies, scripted_status

REPLIES = {
    "gone@example.com": (550, "5.1.1 No such user"),
    "later@example.com": (451, "4.3.0 Try later"),
    "fwd@example.com": (251, "2.1.5 Will forward"),
}
RECIPIENTS = ["gone@example.com", "later@example.com", "fwd@example.com", "ok@example.com"]


@pytest.fixture
def server() -> Iterator[SMTPServer]:
    """A running server with the REPLIES script, stopped after the test."""
    with SMTPServer(REPLIES) as running:
        yield running


def test_it_records_what_smtplib_sends(server: SMTPServer) -> None:
    assert server.host == "127.0.0.1" and server.port > 0
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        refused = client.sendmail(
            "me@example.com", RECIPIENTS, b"Subject: Hi\r\nTo: you\r\n\r\nHello\r\n"
        )
    assert refused == {
        "gone@example.com": (550, b"5.1.1 No such user"),
        "later@example.com": (451, b"4.3.0 Try later"),
    }
    (message,) = server.messages
    assert message.mail_from == "me@example.com"
    assert message.rcpt_tos == ["fwd@example.com", "ok@example.com"]
    assert message.message["Subject"] == "Hi"
    assert message.data.endswith(b"Hello\r\n")
    assert [(address, reply.code) for address, reply in server.refused] == [
        ("gone@example.com", 550),
        ("later@example.com", 451),
    ]
    server.clear()
    assert server.messages == [] and server.refused == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_smtp_backend_reports_what_a_script_says(server: SMTPServer, mode: str) -> None:
    """The same replies give the same statuses over SMTP as scripted (TestEmailBackend's)."""
    message = EmailMessage(subject="Hi", body="Hello", from_email="me@example.com", to=RECIPIENTS)
    connection = get_connection("smtp", **server.options, timeout=10)
    if mode == "async":
        over_smtp = await connection.asend_messages([message])
        await connection.aclose()
    else:
        over_smtp = connection.send_messages([message])
        connection.close()
    with script_replies(REPLIES):
        scripted = scripted_status(RECIPIENTS)
    assert over_smtp.recipients == scripted.recipients
    assert over_smtp.esp_response == scripted.esp_response == str(DATA_REPLY)
    assert {a: r.status for a, r in scripted.recipients.items()} == {
        "gone@example.com": "rejected",
        "later@example.com": "failed",
        "fwd@example.com": "sent",
        "ok@example.com": "sent",
    }


def test_a_script_can_change_while_it_runs(server: SMTPServer) -> None:
    server.script({"ok@example.com": (552, "5.2.2 Mailbox full")})
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as raised:
            client.sendmail("me@example.com", ["OK@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert raised.value.recipients == {"OK@example.com": (552, b"5.2.2 Mailbox full")}
    assert server.messages == []


def test_wait_for_messages_from_a_background_sender(server: SMTPServer) -> None:
    def send() -> None:
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.sendmail("me@example.com", ["ok@example.com"], b"Subject: bg\r\n\r\nx\r\n")

    thread = threading.Thread(target=send)
    thread.start()
    received = server.wait_for_messages(1, timeout=10)
    thread.join(10)
    assert [m.message["Subject"] for m in received] == ["bg"]
    with pytest.raises(AssertionError, match=r"expected 2 message\(s\) within 0.2 s, got 1"):
        server.wait_for_messages(2, timeout=0.2)


def test_stop_closes_open_connections_and_the_port() -> None:
    server = SMTPServer().start()
    client = smtplib.SMTP(server.host, server.port, timeout=10)
    assert client.noop()[0] == 250
    with pytest.raises(RuntimeError, match="is running already"):
        server.start()
    server.stop()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((server.host, server.port), timeout=10),
    ):
        pass
    server.stop()  # stopping again does nothing


def test_a_bad_reply_is_named() -> None:
    with pytest.raises(ValueError, match=r"SMTPServer replies\['x@example.com'\]: the code"):
        SMTPServer({"x@example.com": (99, "No")})


def test_without_aiosmtpd_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # aiosmtpd cannot be uninstalled from the shared environments for one test:
    # a None entry in sys.modules makes its import fail as if it were absent.
    monkeypatch.setitem(sys.modules, "aiosmtpd", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'amsdal-mail\[testing\]'"):
        SMTPServer()
