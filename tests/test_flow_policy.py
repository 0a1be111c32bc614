"""The handshake policy and the error tables that both SMTP drivers apply."""

from __future__ import annotations

import smtplib
import ssl

import aiosmtplib
import pytest

from amsdal_mail import (
    AuthenticationError,
    ConnectError,
    MailTimeoutError,
    NotSupportedError,
    ProtocolError,
    ServerDisconnectedError,
    TLSError,
)
from amsdal_mail.config import SMTPSettings
from amsdal_mail.smtp.errors import translate
from amsdal_mail.smtp.handshake import auth_mechanism, ehlo_features, wants_starttls

WHERE = "mx.test:587"


def settings(**options: object) -> SMTPSettings:
    """Return settings for mx.test with ``options``."""
    return SMTPSettings(host="mx.test", port=587, **options)  # type: ignore[arg-type]


# -- handshake ------------------------------------------------------------------------------


def test_starttls_only_when_asked_and_never_skipped() -> None:
    """use_tls with STARTTLS on offer: upgrade; without use_tls: never; not offered: refuse."""
    assert wants_starttls(settings(use_tls=True), {"starttls": ""}, WHERE) is True
    assert wants_starttls(settings(), {"starttls": ""}, WHERE) is False
    with pytest.raises(NotSupportedError) as info:
        wants_starttls(settings(use_tls=True), {}, WHERE)
    assert str(info.value).startswith("STARTTLS extension not supported by server.")
    assert "not falling back to an unencrypted connection" in str(info.value)


def test_auth_is_required_when_a_username_is_set() -> None:
    """A username and no AUTH on offer: smtplib's words, then what to change."""
    assert auth_mechanism(settings(), {"auth": "PLAIN"}, WHERE) is None
    with pytest.raises(NotSupportedError) as info:
        auth_mechanism(settings(username="alice"), {"size": "10"}, WHERE)
    assert str(info.value).startswith("SMTP AUTH extension not supported by server.")
    assert "mx.test:587 does not offer AUTH" in str(info.value)


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ("PLAIN LOGIN", "PLAIN"),
        ("LOGIN", "LOGIN"),
        ("login cram-md5 plain", "CRAM-MD5"),
        ("XOAUTH2 LOGIN", "LOGIN"),
    ],
)
def test_mechanism_is_the_first_of_ours_the_server_offers(offered: str, chosen: str) -> None:
    """Mechanisms are chosen in smtplib's order of preference, case-insensitively."""
    assert auth_mechanism(settings(username="alice"), {"auth": offered}, WHERE) == chosen


def test_no_mechanism_in_common_is_refused() -> None:
    """A server offering only mechanisms the library lacks gets a clear error."""
    with pytest.raises(NotSupportedError, match="XOAUTH2"):
        auth_mechanism(settings(username="alice"), {"auth": "XOAUTH2"}, WHERE)


def test_ehlo_features_are_lower_case_with_their_parameters() -> None:
    """smtplib's and aiosmtplib's feature maps read the same way."""
    assert ehlo_features({"SIZE": "1000", "auth": " PLAIN LOGIN"}) == {
        "size": "1000",
        "auth": "PLAIN LOGIN",
    }


# -- error tables -----------------------------------------------------------------------------


def _raised_from(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials"), AuthenticationError),
        (aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Bad credentials"), AuthenticationError),
        (smtplib.SMTPNotSupportedError("no"), NotSupportedError),
        (aiosmtplib.SMTPNotSupported("no"), NotSupportedError),
        (TimeoutError("timed out"), MailTimeoutError),
        (aiosmtplib.SMTPReadTimeoutError("Timed out"), MailTimeoutError),
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), MailTimeoutError),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), ServerDisconnectedError),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), ServerDisconnectedError),
        (smtplib.SMTPResponseException(500, "Line too long."), ProtocolError),
        (aiosmtplib.SMTPResponseException(421, "Service not available"), ProtocolError),
        (ConnectionRefusedError(111, "Connection refused"), ConnectError),
        (ssl.SSLCertVerificationError("certificate verify failed"), TLSError),
        (
            _raised_from(aiosmtplib.SMTPConnectError("Error connecting"), TimeoutError()),
            MailTimeoutError,
        ),
        (
            _raised_from(
                smtplib.SMTPServerDisconnected("lost"), ssl.SSLError("wrong version number")
            ),
            TLSError,
        ),
    ],
    ids=lambda value: type(value).__name__,
)
def test_each_library_error_class_maps_to_one_of_ours(
    exc: BaseException, expected: type[Exception]
) -> None:
    """Each class, from smtplib, aiosmtplib, ssl or socket, has its one translation."""
    error = translate(exc, where=WHERE, timeout=5.0)
    assert type(error) is expected
    assert error.__suppress_context__


def test_the_reply_of_an_error_is_kept() -> None:
    """Code and text of the server's reply survive, from either library."""
    sync = translate(
        smtplib.SMTPAuthenticationError(534, b"5.7.9 Too weak"), where=WHERE, timeout=1
    )
    aio = translate(
        aiosmtplib.SMTPAuthenticationError(534, "5.7.9 Too weak"), where=WHERE, timeout=1
    )
    assert isinstance(sync, AuthenticationError) and isinstance(aio, AuthenticationError)
    assert (
        (sync.smtp_code, sync.smtp_error)
        == (aio.smtp_code, aio.smtp_error)
        == (
            534,
            "5.7.9 Too weak",
        )
    )


def test_class_names_decide_nothing() -> None:
    """An unrelated error whose name merely contains "Authentication" or "Timeout" is not one."""

    class AuthenticationTimeoutDisconnected(Exception):
        pass

    error = translate(AuthenticationTimeoutDisconnected("boom"), where=WHERE, timeout=1)
    assert type(error) is ConnectError
