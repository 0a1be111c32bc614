"""Self-test of the in-process SMTP server in ``tests/smtpd.py``."""

from __future__ import annotations

import smtplib
import ssl
import threading
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.smtpd import RecordingServer, ServerFactory

SENDER = "sender@example.com"
RECIPIENT = "rcpt@example.com"
# The line starting with a dot is dot-stuffed by the client and unstuffed again
# by the server, so it must come out unchanged.
RAW_MESSAGE = (
    b"From: sender@example.com\r\n"
    b"To: rcpt@example.com\r\n"
    b"Subject: Hello\r\n"
    b"\r\n"
    b"First line\r\n"
    b".starts with a dot\r\n"
)
TIMEOUT = 5


def connect(server: RecordingServer) -> smtplib.SMTP:
    """Open a plain stdlib client connection to ``server``."""
    return smtplib.SMTP(server.host, server.port, timeout=TIMEOUT)


def test_plain_delivery_records_envelope_and_raw_bytes(smtp_server: ServerFactory) -> None:
    """A delivered message is recorded with its envelope and the exact DATA bytes."""
    server = smtp_server()

    with connect(server) as client:
        refused = client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    assert refused == {}
    [received] = server.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == [RECIPIENT]
    assert received.data == RAW_MESSAGE
    assert received.message["Subject"] == "Hello"
    assert received.session_id == 1
    assert (received.tls, received.peer_cert, received.auth_user) == (False, None, None)
    assert server.refused_data == []


def test_ehlo_advertises_configured_extensions(smtp_server: ServerFactory) -> None:
    """EHLO advertises SIZE and SMTPUTF8 as configured, and AUTH only when configured."""
    server = smtp_server(data_size_limit=1000, enable_smtputf8=False)

    with connect(server) as client:
        client.ehlo()

    assert client.esmtp_features["size"] == "1000"
    assert not client.has_extn("smtputf8")
    assert not client.has_extn("auth")
    assert server.ehlo_count == 1


def test_rcpt_replies_refuse_listed_recipients(smtp_server: ServerFactory) -> None:
    """A recipient listed in rcpt_replies is refused with that reply; others are accepted."""
    server = smtp_server(
        rcpt_replies={
            "Gone@Example.com": "550 5.1.1 No such user",
            "busy@example.com": "450 4.2.0 Try later",
        }
    )

    with connect(server) as client:
        refused = client.sendmail(
            SENDER, [RECIPIENT, "gone@example.com", "BUSY@example.com"], RAW_MESSAGE
        )

    assert refused == {
        "gone@example.com": (550, b"5.1.1 No such user"),
        "BUSY@example.com": (450, b"4.2.0 Try later"),
    }
    assert server.messages[0].rcpt_tos == [RECIPIENT]


def test_mail_reply_refuses_the_sender(smtp_server: ServerFactory) -> None:
    """With mail_reply every MAIL FROM is refused with that reply and nothing is recorded."""
    server = smtp_server(mail_reply="553 5.7.1 Sender refused")

    with connect(server) as client, pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    assert (excinfo.value.smtp_code, excinfo.value.smtp_error) == (553, b"5.7.1 Sender refused")
    assert server.messages == []


def test_data_reply_refuses_the_message(smtp_server: ServerFactory) -> None:
    """With data_reply the message is refused at the end of DATA and kept in refused_data."""
    server = smtp_server(data_reply="554 5.6.0 Message rejected")

    with connect(server) as client, pytest.raises(smtplib.SMTPDataError) as excinfo:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    assert (excinfo.value.smtp_code, excinfo.value.smtp_error) == (554, b"5.6.0 Message rejected")
    assert server.messages == []
    [refused] = server.refused_data
    assert (refused.rcpt_tos, refused.data) == ([RECIPIENT], RAW_MESSAGE)


def test_required_starttls_refuses_mail_until_tls(
    smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext
) -> None:
    """With tls="starttls" MAIL is refused with 530 before STARTTLS and accepted after it."""
    server = smtp_server(tls="starttls")

    with connect(server) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
            client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)
        assert excinfo.value.smtp_code == 530
        assert client.has_extn("starttls")

        client.starttls(context=client_ssl_context)
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    [received] = server.messages
    assert received.tls
    assert server.connections == 1
    assert server.ehlo_count == 2


def test_optional_starttls_accepts_plain_mail(smtp_server: ServerFactory) -> None:
    """With tls="starttls_optional" STARTTLS is offered but mail is accepted without it."""
    server = smtp_server(tls="starttls_optional")

    with connect(server) as client:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)
        assert client.has_extn("starttls")

    assert server.messages[0].tls is False


def test_implicit_tls(smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext) -> None:
    """With tls="ssl" the server speaks TLS from the first byte."""
    server = smtp_server(tls="ssl")

    with smtplib.SMTP_SSL(
        server.host, server.port, context=client_ssl_context, timeout=TIMEOUT
    ) as client:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    [received] = server.messages
    assert received.tls
    assert received.data == RAW_MESSAGE


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_with_right_password(smtp_server: ServerFactory, mechanism: str) -> None:
    """AUTH is required before MAIL and the login used is recorded with the message."""
    server = smtp_server(auth={"alice": "s3cret"})

    with connect(server) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
            client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)
        assert excinfo.value.smtp_code == 530

        client.user, client.password = "alice", "s3cret"
        code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert code == 235
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    assert server.messages[0].auth_user == "alice"


def test_auth_with_wrong_password_gets_535(smtp_server: ServerFactory) -> None:
    """Wrong credentials are refused with 535."""
    server = smtp_server(auth={"alice": "s3cret"})

    with connect(server) as client, pytest.raises(smtplib.SMTPAuthenticationError) as excinfo:
        client.login("alice", "wrong")

    assert excinfo.value.smtp_code == 535


@pytest.mark.parametrize("context_fixture", ["untrusted_ssl_context", "wrong_host_ssl_context"])
def test_bad_server_certificate_fails_verification(
    smtp_server: ServerFactory,
    client_ssl_context: ssl.SSLContext,
    request: pytest.FixtureRequest,
    context_fixture: str,
) -> None:
    """A certificate from an unknown CA, or for another host, fails the client's handshake."""
    server = smtp_server(tls="ssl", server_context=request.getfixturevalue(context_fixture))

    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(server.host, server.port, context=client_ssl_context, timeout=TIMEOUT)

    assert server.messages == []


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_client_certificate_is_recorded(
    smtp_server: ServerFactory,
    client_ssl_context: ssl.SSLContext,
    client_cert_files: tuple[str, str],
    tls: str,
) -> None:
    """A client certificate presented during the handshake shows up in peer_cert."""
    server = smtp_server(tls=tls)
    client_ssl_context.load_cert_chain(*client_cert_files)

    client: smtplib.SMTP
    if tls == "ssl":
        client = smtplib.SMTP_SSL(
            server.host, server.port, context=client_ssl_context, timeout=TIMEOUT
        )
    else:
        client = connect(server)
        client.starttls(context=client_ssl_context)
    with client:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    peer_cert = server.messages[0].peer_cert
    assert peer_cert is not None
    assert ("email", "client@example.com") in peer_cert["subjectAltName"]


def test_connections_and_session_ids(smtp_server: ServerFactory) -> None:
    """Each TCP connection is counted once and its messages share a session id."""
    server = smtp_server()
    assert server.connections == 0

    with connect(server) as client:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)
    with connect(server) as client:
        client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    assert server.connections == 2
    assert [message.session_id for message in server.messages] == [1, 1, 2]


def test_wait_for_messages(smtp_server: ServerFactory) -> None:
    """wait_for_messages returns once a message sent in the background has arrived."""
    server = smtp_server()

    def send() -> None:
        with connect(server) as client:
            client.sendmail(SENDER, [RECIPIENT], RAW_MESSAGE)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        [received] = server.wait_for_messages(1)
    finally:
        sender.join(TIMEOUT)
    assert received.data == RAW_MESSAGE


def test_wait_for_messages_times_out_with_assertion_error(smtp_server: ServerFactory) -> None:
    """wait_for_messages raises AssertionError when too few messages arrive in time."""
    server = smtp_server()

    with pytest.raises(
        AssertionError, match=r"expected 1 accepted message\(s\) within 0.05s, got 0"
    ):
        server.wait_for_messages(1, timeout=0.05)


@pytest.mark.asyncio
async def test_aiosmtplib_starttls_and_auth(
    smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext
) -> None:
    """An aiosmtplib client in the test's own event loop can STARTTLS, log in and send."""
    server = smtp_server(tls="starttls", auth={"alice": "s3cret"})
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, RECIPIENT, "Async"
    message.set_content("Sent with aiosmtplib.")

    errors, _ = await aiosmtplib.send(
        message,
        hostname=server.host,
        port=server.port,
        start_tls=True,
        tls_context=client_ssl_context,
        username="alice",
        password="s3cret",
        timeout=TIMEOUT,
    )

    assert errors == {}
    [received] = server.messages
    assert (received.mail_from, received.rcpt_tos) == (SENDER, [RECIPIENT])
    assert (received.tls, received.auth_user) == (True, "alice")
    # The parser keeps the wire's CRLF line endings in payloads.
    assert received.message.get_content() == "Sent with aiosmtplib.\r\n"
