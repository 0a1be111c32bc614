"""TLS: STARTTLS and implicit TLS, certificate verification, client certificates.

Every test runs for the sync and the async twin (the ``sender`` fixture).
"""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

import pytest

from amsdal_mail import (
    ConfigurationError,
    EmailMessage,
    MailError,
    NotSupportedError,
    TLSError,
    TransportError,
    get_connection,
)
from amsdal_mail.backends.base import BaseBackend
from tests.conftest import Sender
from tests.smtpd import RecordingServer, ServerFactory

TIMEOUT = 5
CLIENT_CERT_EMAIL = ("email", "client@example.com")


def connect_to(server: RecordingServer, **options: Any) -> BaseBackend:
    """Return an SMTP backend for ``server``."""
    options.setdefault("timeout", TIMEOUT)
    return get_connection("smtp", host=server.host, port=server.port, **options)


def simple() -> EmailMessage:
    """Return a small valid message."""
    return EmailMessage("TLS", "Secret body\n", "sender@example.com", ["rcpt@example.com"])


@pytest.fixture(autouse=True)
def _no_trust_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test without a CA bundle or client certificate taken from the environment."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("USE_TLS", "USE_SSL", "SSL_CERTFILE", "SSL_KEYFILE"):
        monkeypatch.delenv(f"AMSDAL_EMAIL_{name}", raising=False)


# -- encrypted delivery ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tls", "option"), [("starttls", "use_tls"), ("ssl", "use_ssl")], ids=["starttls", "ssl"]
)
async def test_delivery_over_tls(
    sender: Sender,
    smtp_server: ServerFactory,
    client_ssl_context: ssl.SSLContext,
    tls: str,
    option: str,
) -> None:
    """STARTTLS (use_tls) and implicit TLS (use_ssl) deliver over an encrypted connection."""
    server = smtp_server(tls=tls)

    status = await sender.send(
        connect_to(server, ssl_context=client_ssl_context, **{option: True}), [simple()]
    )

    assert status.status == {"sent"}
    [received] = server.messages
    assert received.tls
    assert received.message["Subject"] == "TLS"


async def test_auth_after_starttls(
    sender: Sender, smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext
) -> None:
    """Credentials are sent after STARTTLS and the session is authenticated."""
    server = smtp_server(tls="starttls", auth={"alice": "s3cret"})
    connection = connect_to(
        server, use_tls=True, ssl_context=client_ssl_context, username="alice", password="s3cret"
    )

    await sender.send(connection, [simple()])

    [received] = server.messages
    assert (received.tls, received.auth_user) == (True, "alice")


async def test_private_ca_trusted_through_ssl_cert_file(
    sender: Sender, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ssl_context, the default context trusts the CA bundle named by SSL_CERT_FILE."""
    server = smtp_server(tls="starttls")
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)

    status = await sender.send(connect_to(server, use_tls=True), [simple()])

    assert status.status == {"sent"}
    assert server.messages[0].tls


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
async def test_client_certificate_is_presented(
    sender: Sender,
    smtp_server: ServerFactory,
    ca_file: str,
    client_cert_files: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tls: str,
) -> None:
    """ssl_certfile / ssl_keyfile are presented to the server during the handshake."""
    server = smtp_server(tls=tls)
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    certfile, keyfile = client_cert_files
    mode = {"use_tls": True} if tls == "starttls" else {"use_ssl": True}

    await sender.send(
        connect_to(server, ssl_certfile=certfile, ssl_keyfile=keyfile, **mode), [simple()]
    )

    peer_cert = server.messages[0].peer_cert
    assert peer_cert is not None
    assert CLIENT_CERT_EMAIL in peer_cert["subjectAltName"]


async def test_client_certificate_from_the_environment(
    sender: Sender,
    smtp_server: ServerFactory,
    ca_file: str,
    client_cert_files: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AMSDAL_EMAIL_SSL_CERTFILE / _KEYFILE and _USE_SSL configure the client certificate."""
    server = smtp_server(tls="ssl")
    certfile, keyfile = client_cert_files
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    monkeypatch.setenv("AMSDAL_EMAIL_USE_SSL", "yes")
    monkeypatch.setenv("AMSDAL_EMAIL_SSL_CERTFILE", certfile)
    monkeypatch.setenv("AMSDAL_EMAIL_SSL_KEYFILE", keyfile)

    await sender.send(connect_to(server), [simple()])

    peer_cert = server.messages[0].peer_cert
    assert peer_cert is not None and CLIENT_CERT_EMAIL in peer_cert["subjectAltName"]


async def test_without_client_certificate_none_is_presented(
    sender: Sender, smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext
) -> None:
    """Without ssl_certfile the server sees no client certificate."""
    server = smtp_server(tls="ssl")

    await sender.send(connect_to(server, use_ssl=True, ssl_context=client_ssl_context), [simple()])

    assert server.messages[0].peer_cert is None


# -- verification is on by default ---------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
@pytest.mark.parametrize("server_context", ["untrusted_ssl_context", "wrong_host_ssl_context"])
async def test_bad_certificate_fails_with_tls_error(
    sender: Sender,
    smtp_server: ServerFactory,
    client_ssl_context: ssl.SSLContext,
    request: pytest.FixtureRequest,
    tls: str,
    server_context: str,
) -> None:
    """A certificate from an unknown CA, or for another host name, fails with TLSError."""
    server = smtp_server(tls=tls, server_context=request.getfixturevalue(server_context))
    mode = {"use_tls": True} if tls == "starttls" else {"use_ssl": True}
    message = simple()

    with pytest.raises(TLSError) as excinfo:
        await sender.send(connect_to(server, ssl_context=client_ssl_context, **mode), [message])

    error = excinfo.value
    assert isinstance(error, ssl.SSLError) and isinstance(error, OSError)
    assert isinstance(error, TransportError) and isinstance(error, MailError)
    assert "certificate verify failed" in str(error)
    assert not str(error).startswith("(")  # a sentence, not a tuple
    assert server.messages == []
    assert message.status is not None and message.status.status == {"failed"}


async def test_private_ca_is_not_trusted_by_default(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """Without ssl_context or SSL_CERT_FILE, a certificate from a private CA is refused."""
    server = smtp_server(tls="ssl")

    with pytest.raises(TLSError, match="certificate verify failed"):
        await sender.send(connect_to(server, use_ssl=True), [simple()])

    assert server.messages == []


async def test_fail_silently_swallows_a_tls_failure(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """With fail_silently a certificate failure marks every recipient failed instead."""
    server = smtp_server(tls="ssl")

    status = await sender.send(connect_to(server, use_ssl=True, fail_silently=True), [simple()])

    assert status.recipients["rcpt@example.com"].status == "failed"
    assert server.messages == []


# -- no silent downgrade ---------------------------------------------------------------------


async def test_required_starttls_without_use_tls_is_refused_cleanly(
    sender: Sender, smtp_server: ServerFactory
) -> None:
    """A server requiring STARTTLS refuses a plain sender; every recipient is rejected, no data."""
    server = smtp_server(tls="starttls")
    message = simple()

    status = await sender.send(connect_to(server), [message])

    assert server.messages == [] and server.refused_data == []
    refusal = status.recipients["rcpt@example.com"]
    assert (refusal.status, refusal.code) == ("rejected", 530)
    assert "STARTTLS" in (refusal.response or "")
    assert status.esp_response is not None and status.esp_response.startswith("530")


async def test_use_tls_against_a_server_without_starttls(
    sender: Sender, smtp_server: ServerFactory, client_ssl_context: ssl.SSLContext
) -> None:
    """use_tls against a server that does not offer STARTTLS raises, never sends plain text."""
    server = smtp_server()

    with pytest.raises(NotSupportedError, match="STARTTLS") as excinfo:
        await sender.send(
            connect_to(server, use_tls=True, ssl_context=client_ssl_context), [simple()]
        )

    assert isinstance(excinfo.value, smtplib.SMTPNotSupportedError)
    assert isinstance(excinfo.value, OSError)
    assert str(excinfo.value).startswith("STARTTLS extension not supported by server.")
    assert server.messages == [] and server.refused_data == []


async def test_unreadable_client_certificate_is_a_configuration_error(
    sender: Sender, smtp_server: ServerFactory, ca_file: str, tmp_path: Any
) -> None:
    """A client certificate file that cannot be loaded is a ConfigurationError naming it."""
    server = smtp_server(tls="ssl")
    broken = tmp_path / "broken-cert.pem"
    broken.write_text("not a certificate")

    with pytest.raises(ConfigurationError, match="broken-cert.pem"):
        await sender.send(connect_to(server, use_ssl=True, ssl_certfile=str(broken)), [simple()])

    assert server.connections == 0
