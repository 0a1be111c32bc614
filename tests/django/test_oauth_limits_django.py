"""OAuth2 and provider limits through the Django backend, against real servers.

Compatibility mode takes the provider from ``EMAIL_OAUTH2_TOKEN_PROVIDER`` (a
callable or its dotted path); MAILERS (Django 6.1+) from ``OPTIONS``. The
limits are options (arguments, OPTIONS) and environment variables.
"""

from __future__ import annotations

import smtplib
import time
from typing import Any

import django
import pytest
from django.core import checks, mail
from django.core.exceptions import ImproperlyConfigured

from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.checks import check_mail_settings
from django_amsdal_mail.mail import asend_mail
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import BACKEND, CONFIGURATIONS

USER = "app@example.com"
STALE = "stale-token-" + "x" * 600
FRESH = "fresh-token-" + "y" * 600
CALLS: list[bool] = []


def token_provider(force_refresh: bool = False) -> str:
    """The provider the settings name by dotted path: stale first, fresh on a refresh."""
    CALLS.append(force_refresh)
    return FRESH if force_refresh else STALE


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    CALLS.clear()


@pytest.fixture(params=CONFIGURATIONS)
def oauth_configured(
    request: pytest.FixtureRequest, settings: Any, smtp_server: ServerFactory
) -> RecordingServer:
    """Our backend logging in with ``token_provider`` to a server that wants FRESH."""
    server = smtp_server(oauth={USER: FRESH})
    if request.param == "MAILERS":
        options = {"host": server.host, "port": server.port, "username": USER}
        options["oauth2_token"] = token_provider
        settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = BACKEND
        settings.EMAIL_HOST = server.host
        settings.EMAIL_PORT = server.port
        settings.EMAIL_HOST_USER = USER
        settings.EMAIL_OAUTH2_TOKEN_PROVIDER = f"{__name__}.token_provider"
    return server


def test_send_mail_logs_in_with_a_refreshed_token(oauth_configured: RecordingServer) -> None:
    """Django's send_mail: the stale token refused, fetched again, the message sent."""
    assert mail.send_mail("Hi", "Body", "from@example.com", ["to@example.com"]) == 1
    assert CALLS == [False, True]
    assert [a.token for a in oauth_configured.auth_attempts] == [STALE, FRESH]
    assert oauth_configured.messages[0].auth_user == USER


async def test_asend_mail_logs_in_with_a_refreshed_token(
    oauth_configured: RecordingServer,
) -> None:
    """The async twin does the same, through the library's async path."""
    assert await asend_mail("Hi", "Body", "from@example.com", ["to@example.com"]) == 1
    assert CALLS == [False, True]
    assert len(oauth_configured.messages) == 1


def test_a_callable_setting_and_a_token_argument(settings: Any, smtp_server: ServerFactory) -> None:
    """EMAIL_OAUTH2_TOKEN_PROVIDER may be the callable itself; an argument may be a token."""
    server = smtp_server(oauth={USER: FRESH})
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST_USER = USER
    settings.EMAIL_OAUTH2_TOKEN_PROVIDER = lambda: FRESH
    connection = mail.get_connection(host=server.host, port=server.port)
    assert mail.send_mail("Hi", "B", "f@example.com", ["t@example.com"], connection=connection)
    explicit = EmailBackend(host=server.host, port=server.port, oauth2_token=FRESH)
    assert mail.send_mail("Hi", "B", "f@example.com", ["t@example.com"], connection=explicit)
    assert [a.accepted for a in server.auth_attempts] == [True, True]
    for backend in (connection, explicit):
        assert FRESH not in repr(backend)


def test_refused_twice_is_djangos_authentication_error(
    settings: Any, smtp_server: ServerFactory
) -> None:
    """A token refused after the refresh: smtplib.SMTPAuthenticationError; silenced on request."""
    server = smtp_server(oauth={USER: "neither"}, oauth_style="microsoft")
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.EMAIL_HOST_USER = USER
    settings.EMAIL_OAUTH2_TOKEN_PROVIDER = f"{__name__}.token_provider"
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        mail.send_mail("Hi", "Body", "from@example.com", ["to@example.com"])
    assert info.value.smtp_code == 535
    assert STALE not in str(info.value) and FRESH not in str(info.value)
    assert mail.send_mail("Hi", "B", "f@example.com", ["t@example.com"], fail_silently=True) == 0
    assert server.messages == []


def test_a_password_with_a_token_provider_is_refused(settings: Any) -> None:
    """EMAIL_HOST_PASSWORD and EMAIL_OAUTH2_TOKEN_PROVIDER: refused, naming both settings."""
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST_USER = USER
    settings.EMAIL_HOST_PASSWORD = "secret"
    settings.EMAIL_OAUTH2_TOKEN_PROVIDER = f"{__name__}.token_provider"
    with pytest.raises(ImproperlyConfigured, match="settings.EMAIL_HOST_PASSWORD.*mutually"):
        mail.get_connection()
    (error,) = [m for m in check_mail_settings() if m.id == "amsdal_mail.E008"]
    assert "settings.EMAIL_OAUTH2_TOKEN_PROVIDER" in error.msg


def test_a_bad_provider_path_is_a_check_error(settings: Any) -> None:
    """A dotted path that does not import: E005 naming the setting."""
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST_USER = USER
    settings.EMAIL_OAUTH2_TOKEN_PROVIDER = "no_such_module.token"
    (error,) = check_mail_settings()
    assert error.id == "amsdal_mail.E005"
    assert error.msg.startswith("settings.EMAIL_OAUTH2_TOKEN_PROVIDER: cannot import")


@pytest.mark.parametrize(
    ("host", "helper"),
    [
        ("smtp.office365.com", "amsdal_mail.oauth.microsoft"),
        ("smtp.gmail.com", "amsdal_mail.oauth.google"),
    ],
)
def test_a_password_for_microsoft_or_google_warns(settings: Any, host: str, helper: str) -> None:
    """W003: basic authentication to a provider retiring it; the hint says how to switch."""
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = host, 587, True
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = USER, "app-password"
    (warning,) = check_mail_settings()
    assert isinstance(warning, checks.Warning)
    assert warning.id == "amsdal_mail.W003"
    assert host in warning.msg and "OAuth2" in warning.msg
    assert "EMAIL_OAUTH2_TOKEN_PROVIDER" in (warning.hint or "")
    assert helper in (warning.hint or "")
    # With the token provider instead of the password, nothing to warn about.
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_OAUTH2_TOKEN_PROVIDER = f"{__name__}.token_provider"
    assert check_mail_settings() == []


def test_another_host_with_a_password_does_not_warn(settings: Any) -> None:
    """Only the two providers are named."""
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_USE_TLS = "smtp.example.com", True
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = USER, "secret"
    assert check_mail_settings() == []


if django.VERSION >= (6, 1):

    def test_mailers_options_warn_for_a_password_too(settings: Any) -> None:
        """Under MAILERS the warning names the alias and OPTIONS['oauth2_token']."""
        options = {"host": "smtp.office365.com", "use_tls": True}
        options.update(username=USER, password="pw")
        settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
        (warning,) = check_mail_settings()
        assert warning.id == "amsdal_mail.W003"
        assert warning.msg.startswith("MAILERS['default']: smtp.office365.com")
        assert "OPTIONS['oauth2_token']" in (warning.hint or "")

    def test_mailers_accepts_the_limit_options(settings: Any, server: RecordingServer) -> None:
        """The new options are known MAILERS options (no E007), and reach the library."""
        options = {"host": server.host, "port": server.port}
        options.update(max_messages_per_connection=2, rate_limit=50)
        settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": options}}
        assert check_mail_settings() == []
        smtp = mail.mailers["default"].amsdal_backend.settings
        assert (smtp.max_messages_per_connection, smtp.rate_limit) == (2, 50)


def test_max_messages_per_connection_in_send_mass_mail(server: RecordingServer) -> None:
    """send_mass_mail over one Django connection: a new SMTP connection after every 2."""
    connection = EmailBackend(host=server.host, port=server.port, max_messages_per_connection=2)
    datatuple = [(f"S{i}", "B", "f@example.com", [f"t{i}@example.com"]) for i in range(5)]
    assert mail.send_mass_mail(datatuple, connection=connection) == 5
    assert [m.session_id for m in server.messages] == [1, 1, 2, 2, 3]


def test_rate_limit_through_django(server: RecordingServer, monkeypatch: Any) -> None:
    """AMSDAL_EMAIL_RATE_LIMIT applies to the Django backend: 10 at 20/s take >= 0.45 s."""
    monkeypatch.setenv("AMSDAL_EMAIL_RATE_LIMIT", "20")
    connection = EmailBackend(host=server.host, port=server.port)
    datatuple = [(f"S{i}", "B", "f@example.com", [f"t{i}@example.com"]) for i in range(10)]
    began = time.monotonic()
    assert mail.send_mass_mail(datatuple, connection=connection) == 10
    assert 0.45 <= time.monotonic() - began < 10
    assert server.connections == 1


def test_a_bad_rate_limit_is_a_check_error(settings: Any) -> None:
    """rate_limit 0 through the environment: E005 naming the variable, with the hint."""
    settings.EMAIL_BACKEND = BACKEND
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMSDAL_EMAIL_RATE_LIMIT", "0")
        (error,) = check_mail_settings()
    assert error.id == "amsdal_mail.E005"
    assert error.msg.startswith("AMSDAL_EMAIL_RATE_LIMIT must be a number of messages per second")
    assert error.hint == "Use a number of messages per second > 0, or None for no limit."
