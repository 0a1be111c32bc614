"""System checks for the backend's settings (compatibility mode; MAILERS in test_mailers)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from amsdal_mail import ConfigurationError
from amsdal_mail.api import BACKENDS
from amsdal_mail.config import Layer, resolve_smtp_settings
from django_amsdal_mail.checks import check_mail_settings

from .conftest import BACKEND

BOOLEAN_HINT = (
    "Use True or False; an environment variable may also say true/false, 1/0, yes/no or on/off."
)
PORT_HINT = "Use a whole number from 1 to 65535, such as 25, 465 (use_ssl) or 587 (use_tls)."
TIMEOUT_HINT = "Use a positive number of seconds, or None for no timeout."


def _library_message(label: str, option: str, value: Any) -> str:
    """Return amsdal_mail's own message for a bad value from a source named ``label``."""
    with pytest.raises(ConfigurationError) as excinfo:
        resolve_smtp_settings(layers=[Layer({option: value}, {option: label})], environ={})
    text = str(excinfo.value)
    assert text.startswith(f"{label} must be ")  # the check names the setting first
    return text


@pytest.fixture
def ours(settings: Any) -> Any:
    """Settings that use our backend in compatibility mode."""
    settings.EMAIL_BACKEND = BACKEND
    return settings


def test_good_settings_pass(ours: Any) -> None:
    """Usable settings give no message."""
    ours.EMAIL_HOST = "mail.example.com"
    ours.EMAIL_PORT = 587
    ours.EMAIL_USE_TLS = True
    assert check_mail_settings() == []


def test_another_backend_is_not_checked(settings: Any) -> None:
    """Settings are only checked when our backend is the one configured."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = True
    assert check_mail_settings() == []


def test_use_tls_and_use_ssl_together(ours: Any) -> None:
    """E001: both TLS modes, with Django's wording and a hint naming the sources."""
    ours.EMAIL_USE_TLS = ours.EMAIL_USE_SSL = True
    assert check_mail_settings() == [
        checks.Error(
            "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those "
            "settings to True.",
            hint="use_tls is true from settings.EMAIL_USE_TLS and use_ssl is true from "
            "settings.EMAIL_USE_SSL. use_tls is STARTTLS (usually port 587), use_ssl "
            "implicit TLS (usually port 465).",
            id="amsdal_mail.E001",
        )
    ]


def test_an_unknown_amsdal_mail_backend(ours: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """E002: an AMSDAL_EMAIL_BACKEND name amsdal_mail does not know."""
    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "carrier-pigeon")
    known = ", ".join(sorted(BACKENDS))
    assert check_mail_settings() == [
        checks.Error(
            "Unknown amsdal_mail backend 'carrier-pigeon' (from AMSDAL_EMAIL_BACKEND).",
            hint=f"Use one of the amsdal_mail backend names ({known}) or the dotted path of "
            "an amsdal_mail.BaseBackend subclass.",
            id="amsdal_mail.E002",
        )
    ]


def test_a_bad_boolean(ours: Any) -> None:
    """E003: a use_tls value that is not a boolean."""
    ours.EMAIL_USE_TLS = "maybe"
    assert check_mail_settings() == [
        checks.Error(
            _library_message("settings.EMAIL_USE_TLS", "use_tls", "maybe"),
            hint=BOOLEAN_HINT,
            id="amsdal_mail.E003",
        )
    ]


@pytest.mark.parametrize("port", ["smtp", 0, 65536])
def test_a_bad_port_setting(ours: Any, port: Any) -> None:
    """E004: EMAIL_PORT that is not a port number."""
    ours.EMAIL_PORT = port
    assert check_mail_settings() == [
        checks.Error(
            _library_message("settings.EMAIL_PORT", "port", port),
            hint=PORT_HINT,
            id="amsdal_mail.E004",
        )
    ]


def test_a_bad_port_variable(ours: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """E004 also for AMSDAL_EMAIL_PORT, named in the message."""
    monkeypatch.setenv("AMSDAL_EMAIL_PORT", "99999")
    assert check_mail_settings() == [
        checks.Error(
            _library_message("AMSDAL_EMAIL_PORT", "port", "99999"),
            hint=PORT_HINT,
            id="amsdal_mail.E004",
        )
    ]


def test_a_bad_timeout(ours: Any) -> None:
    """E005: another value amsdal_mail cannot use (a negative timeout)."""
    ours.EMAIL_TIMEOUT = -5
    assert check_mail_settings() == [
        checks.Error(
            _library_message("settings.EMAIL_TIMEOUT", "timeout", -5),
            hint=TIMEOUT_HINT,
            id="amsdal_mail.E005",
        )
    ]


def test_every_problem_is_reported_at_once(ours: Any) -> None:
    """Several bad values give one error each."""
    ours.EMAIL_PORT = "smtp"
    ours.EMAIL_USE_SSL = "sometimes"
    assert [message.id for message in check_mail_settings()] == [
        "amsdal_mail.E004",
        "amsdal_mail.E003",
    ]


def test_settings_amsdal_mail_refuses(ours: Any) -> None:
    """E008: a password to a remote host without TLS, which amsdal_mail refuses to send."""
    ours.EMAIL_HOST = "mail.example.com"
    ours.EMAIL_HOST_USER = "alice"
    ours.EMAIL_HOST_PASSWORD = "secret-password"
    (error,) = check_mail_settings()
    assert error.id == "amsdal_mail.E008"
    assert error.level == checks.ERROR
    assert "unencrypted" in error.msg
    assert "secret-password" not in error.msg


def test_asgi_without_aiosmtplib_warns(ours: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """W001: an ASGI project sending over SMTP without aiosmtplib, which async sending needs."""
    ours.ASGI_APPLICATION = "project.asgi.application"
    monkeypatch.setitem(sys.modules, "aiosmtplib", None)  # as if it were not installed
    assert check_mail_settings() == [
        checks.Warning(
            "The project runs under ASGI (ASGI_APPLICATION is set), and asynchronous sending "
            "(asend_mail, EmailBackend.asend_messages) over SMTP needs aiosmtplib, which is "
            "not installed.",
            hint="pip install 'amsdal-mail[smtp]'",
            id="amsdal_mail.W001",
        )
    ]


def test_asgi_with_aiosmtplib_passes(ours: Any) -> None:
    """With aiosmtplib installed, an ASGI project gets no warning."""
    ours.ASGI_APPLICATION = "project.asgi.application"
    assert check_mail_settings() == []


# On Django 6.1 the model checks ask the database whether it supports JSONField
# (django_tasks_db's task model has one), so ``manage.py check`` opens a connection.
@pytest.mark.django_db
def test_manage_py_check_reports_the_errors(ours: Any) -> None:
    """The app registers the checks: ``manage.py check`` fails with their ids."""
    ours.EMAIL_USE_TLS = ours.EMAIL_USE_SSL = True
    with pytest.raises(SystemCheckError, match="amsdal_mail.E001"):
        call_command("check")


# On Django 6.1 the model checks ask the database whether it supports JSONField
# (django_tasks_db's task model has one), so ``manage.py check`` opens a connection.
@pytest.mark.django_db
def test_manage_py_check_passes_with_good_settings(ours: Any) -> None:
    """``manage.py check`` is clean when the settings are usable."""
    ours.EMAIL_HOST = "mail.example.com"
    call_command("check")


@pytest.mark.parametrize(
    ("source", "label"),
    [("setting", "settings.EMAIL_SSL_KEYFILE"), ("env", "AMSDAL_EMAIL_SSL_KEYFILE")],
)
def test_a_keyfile_without_a_certificate_warns(
    ours: Any, monkeypatch: pytest.MonkeyPatch, source: str, label: str
) -> None:
    """W002: a key file without its certificate is accepted (as Django does) but ignored."""
    if source == "setting":
        ours.EMAIL_SSL_KEYFILE = "/etc/mail/client.key"
    else:
        monkeypatch.setenv("AMSDAL_EMAIL_SSL_KEYFILE", "/etc/mail/client.key")
    assert check_mail_settings() == [
        checks.Warning(
            f"The key file from {label} is ignored without EMAIL_SSL_CERTFILE "
            "(or AMSDAL_EMAIL_SSL_CERTFILE).",
            hint="Set EMAIL_SSL_CERTFILE (or AMSDAL_EMAIL_SSL_CERTFILE) to the client "
            "certificate that goes with the key, or remove the key file.",
            id="amsdal_mail.W002",
        )
    ]
    ours.EMAIL_SSL_CERTFILE = "/etc/mail/client.pem"
    assert check_mail_settings() == []


def test_an_empty_boolean_variable_is_an_error(ours: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """E003: AMSDAL_EMAIL_USE_TLS= (empty) is reported, not read as false."""
    monkeypatch.setenv("AMSDAL_EMAIL_USE_TLS", "")
    assert check_mail_settings() == [
        checks.Error(
            "AMSDAL_EMAIL_USE_TLS is set but empty; give it a value or unset it",
            hint=BOOLEAN_HINT,
            id="amsdal_mail.E003",
        )
    ]
