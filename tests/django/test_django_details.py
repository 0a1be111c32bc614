"""Django's behaviour to the letter where a migrating project would notice a difference.

Each test compares with what Django's own SMTP backend does (or what its
users match on): the ``username`` / ``password`` attributes, a key file
without a certificate, custom backends accepted by duck typing, and the
words of the errors.
"""

from __future__ import annotations

import smtplib
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from amsdal_mail import EmailMessage as AmsdalMessage
from amsdal_mail import SendStatus
from amsdal_mail.status import QUEUED
from django_amsdal_mail.backend import EmailBackend
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import Twin


def _message(to: str = "to@example.com", subject: str = "Subject") -> EmailMessage:
    return EmailMessage(subject, "Body", "from@example.com", [to])


def _djangos_backend(**options: Any) -> DjangoSMTPBackend:
    """Return Django's SMTP backend in compatibility mode (deprecated on 6.1, still there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DjangoSMTPBackend(**options)


# --- username and password ------------------------------------------------------------------


def test_username_and_password_are_empty_strings_as_in_django() -> None:
    """Without EMAIL_HOST_USER / EMAIL_HOST_PASSWORD both attributes are "", as Django's."""
    ours, theirs = EmailBackend(), _djangos_backend()
    assert (ours.username, ours.password) == (theirs.username, theirs.password) == ("", "")


def test_a_username_alone_is_kept_but_does_not_log_in(
    settings: Any, server: RecordingServer
) -> None:
    """EMAIL_HOST_USER without a password shows in the attribute; no login, as Django."""
    settings.EMAIL_HOST_USER = "alice"
    backend = EmailBackend(host=server.host, port=server.port)
    assert (backend.username, backend.password) == ("alice", "")
    assert backend.send_messages([_message()]) == 1
    assert server.messages[0].auth_user is None


# --- a key file without its certificate ------------------------------------------------------


def test_a_keyfile_setting_without_a_certificate_is_accepted_and_ignored(
    settings: Any, server: RecordingServer
) -> None:
    """EMAIL_SSL_KEYFILE alone: accepted at construction as Django does, the key unused."""
    settings.EMAIL_SSL_KEYFILE = "/nowhere/key.pem"
    backend = EmailBackend(host=server.host, port=server.port)
    theirs = _djangos_backend(host=server.host, port=server.port)
    assert (backend.ssl_keyfile, backend.ssl_certfile) == (theirs.ssl_keyfile, None)
    assert backend.ssl_keyfile == "/nowhere/key.pem"
    assert backend.send_messages([_message()]) == 1


def test_a_keyfile_option_without_a_certificate_is_accepted() -> None:
    """The ssl_keyfile argument alone is accepted too; amsdal_mail is not given the key."""
    backend = EmailBackend(ssl_keyfile="key.pem")
    assert backend.ssl_keyfile == "key.pem"
    assert backend.amsdal_backend.settings.ssl_keyfile is None  # type: ignore[attr-defined]


# --- custom backends by duck typing ------------------------------------------------------------


class DuckBackend:
    """A backend with the backend methods that does not derive from amsdal_mail.BaseBackend."""

    subjects: ClassVar[list[str]] = []

    def __init__(self, *, fail_silently: bool = False) -> None:
        self.fail_silently = fail_silently

    def open(self) -> bool:
        return False

    def close(self) -> None:
        pass

    async def aopen(self) -> bool:
        return False

    async def aclose(self) -> None:
        pass

    def send_messages(self, messages: Sequence[AmsdalMessage]) -> SendStatus:
        for message in messages:
            self.subjects.append(message.subject)
            message.status = SendStatus.uniform(message.recipients(), QUEUED)
        return SendStatus.merge(m.status for m in messages if m.status is not None)

    async def asend_messages(self, messages: Sequence[AmsdalMessage]) -> SendStatus:
        return self.send_messages(messages)


class HalfBackend:
    """A class with only some of the backend methods."""

    def send_messages(self, messages: Sequence[AmsdalMessage]) -> SendStatus:
        raise NotImplementedError


DUCK = f"{__name__}.DuckBackend"


@pytest.fixture
def duck_subjects() -> list[str]:
    """The subjects DuckBackend received in this test."""
    DuckBackend.subjects.clear()
    return DuckBackend.subjects


async def test_a_duck_typed_backend_given_as_an_option(
    twin: Twin, duck_subjects: list[str]
) -> None:
    """backend="dotted.Path" to a class with the backend methods is used, sync and async."""
    backend = EmailBackend(backend=DUCK)
    assert isinstance(backend.amsdal_backend, DuckBackend)
    message = _message(subject="quack")
    assert await twin.send(backend, [message]) == 1
    assert duck_subjects == ["quack"]
    assert message.amsdal_status.status == {"queued"}


def test_a_duck_typed_backend_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, duck_subjects: list[str]
) -> None:
    """AMSDAL_EMAIL_BACKEND may name such a class too."""
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", DUCK)
    assert EmailBackend().send_messages([_message(subject="from env")]) == 1
    assert duck_subjects == ["from env"]


def test_a_class_without_the_backend_methods_is_refused_naming_them() -> None:
    """A class lacking backend methods is ImproperlyConfigured, naming what is missing."""
    with pytest.raises(ImproperlyConfigured) as excinfo:
        EmailBackend(backend=f"{__name__}.HalfBackend")
    message = str(excinfo.value)
    assert "HalfBackend" in message
    assert "lacks the backend method(s) asend_messages, open, close, aopen, aclose;" in message


# --- the words users match on --------------------------------------------------------------------


@pytest.mark.parametrize("field", ["to", "cc", "bcc", "from_email"])
@pytest.mark.parametrize(
    "address",
    ["to@", "@example.com", "two@at@example.com", "ann@example.com\r\nBcc: spy@example.com"],
)
async def test_a_malformed_address_says_invalid_address(
    twin: Twin, server: RecordingServer, field: str, address: str
) -> None:
    """The ValueError for a malformed address starts with Django's words "Invalid address"."""
    kwargs: dict[str, Any] = {"to": ["ok@example.com"], "from_email": "from@example.com"}
    kwargs[field] = address if field == "from_email" else [address]
    message = EmailMessage("Subject", "Body", **kwargs)
    with pytest.raises(ValueError, match="^Invalid address"):
        await twin.send(EmailBackend(host=server.host, port=server.port), [message])
    assert server.connections == 0


async def test_auth_not_offered_says_what_smtplib_says(
    twin: Twin, smtp_server: ServerFactory
) -> None:
    """Credentials for a server without AUTH: smtplib's "SMTP AUTH extension not supported"."""
    server = smtp_server()  # offers no AUTH
    backend = EmailBackend(host=server.host, port=server.port, username="u", password="p")
    with pytest.raises(smtplib.SMTPNotSupportedError) as excinfo:
        await twin.send(backend, [_message()])
    assert str(excinfo.value).startswith("SMTP AUTH extension not supported by server.")
    assert server.messages == []


# --- empty environment variables ---------------------------------------------------------------


@pytest.mark.parametrize(
    "var", ["AMSDAL_EMAIL_USE_TLS", "AMSDAL_EMAIL_PORT", "AMSDAL_EMAIL_TIMEOUT"]
)
def test_an_empty_boolean_or_number_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    """AMSDAL_EMAIL_USE_TLS= (empty) is an error naming it, not a silent false."""
    monkeypatch.setenv(var, "")
    with pytest.raises(ImproperlyConfigured, match=f"{var} is set but empty.*unset it"):
        EmailBackend()


def test_an_empty_string_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMSDAL_EMAIL_HOST= and AMSDAL_EMAIL_BACKEND= (empty) are as if not set."""
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", "")
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "")
    backend = EmailBackend()
    assert (backend.host, backend.port) == ("localhost", 25)
