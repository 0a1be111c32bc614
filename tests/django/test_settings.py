"""Settings mapping in compatibility mode (EMAIL_BACKEND): every row and the precedence.

Precedence, highest first: explicit argument > ``EMAIL_*`` setting the project
set > ``AMSDAL_EMAIL_*`` environment variable > default (Django's, except a
30 second timeout).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from django_amsdal_mail.backend import EmailBackend
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import BACKEND


@dataclass(frozen=True)
class Row:
    """One row of the mapping: argument, Django setting, environment variable."""

    option: str
    setting: str
    env: str
    #: Three distinct values for the explicit / setting / environment levels,
    #: and the attribute values they give.
    values: tuple[Any, Any, Any]
    expected: tuple[Any, Any, Any]
    default: Any


ROWS = [
    Row(
        "host",
        "EMAIL_HOST",
        "AMSDAL_EMAIL_HOST",
        ("explicit.test", "setting.test", "env.test"),
        ("explicit.test", "setting.test", "env.test"),
        "localhost",
    ),
    Row("port", "EMAIL_PORT", "AMSDAL_EMAIL_PORT", (1025, 2025, "3025"), (1025, 2025, 3025), 25),
    Row(
        "username",
        "EMAIL_HOST_USER",
        "AMSDAL_EMAIL_USER",
        ("u-explicit", "u-setting", "u-env"),
        ("u-explicit", "u-setting", "u-env"),
        "",  # Django's EMAIL_HOST_USER default
    ),
    Row(
        "password",
        "EMAIL_HOST_PASSWORD",
        "AMSDAL_EMAIL_PASSWORD",
        ("p-explicit", "p-setting", "p-env"),
        ("p-explicit", "p-setting", "p-env"),
        "",  # Django's EMAIL_HOST_PASSWORD default
    ),
    # A boolean has two values: each level is set to the opposite of the level
    # below it, so whichever wins shows.
    Row(
        "use_tls",
        "EMAIL_USE_TLS",
        "AMSDAL_EMAIL_USE_TLS",
        (True, False, "true"),
        (True, False, True),
        False,
    ),
    Row(
        "use_ssl",
        "EMAIL_USE_SSL",
        "AMSDAL_EMAIL_USE_SSL",
        (True, False, "yes"),
        (True, False, True),
        False,
    ),
    Row("timeout", "EMAIL_TIMEOUT", "AMSDAL_EMAIL_TIMEOUT", (5, 6.5, "7"), (5.0, 6.5, 7.0), 30.0),
    Row(
        "ssl_certfile",
        "EMAIL_SSL_CERTFILE",
        "AMSDAL_EMAIL_SSL_CERTFILE",
        ("explicit.pem", "setting.pem", "env.pem"),
        ("explicit.pem", "setting.pem", "env.pem"),
        None,
    ),
    Row(
        "ssl_keyfile",
        "EMAIL_SSL_KEYFILE",
        "AMSDAL_EMAIL_SSL_KEYFILE",
        ("explicit.key", "setting.key", "env.key"),
        ("explicit.key", "setting.key", "env.key"),
        None,
    ),
]
LEVELS = ["explicit", "setting", "env", "default"]


def _support(row: Row, settings: Any) -> None:
    """Settings a row needs to be valid on its own (a keyfile needs a certfile)."""
    if row.option == "ssl_keyfile":
        settings.EMAIL_SSL_CERTFILE = "cert.pem"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.option)
@pytest.mark.parametrize("winner", LEVELS)
def test_the_highest_level_that_is_set_wins(
    row: Row, winner: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Explicit argument > EMAIL_* setting > AMSDAL_EMAIL_* variable > default, per option."""
    _support(row, settings)
    index = LEVELS.index(winner)
    # Set the winning level and the one just below it, to different values.
    present = LEVELS[index : index + 2]
    kwargs: dict[str, Any] = {}
    if "explicit" in present:
        kwargs[row.option] = row.values[0]
    if "setting" in present:
        setattr(settings, row.setting, row.values[1])
    if "env" in present:
        monkeypatch.setenv(row.env, str(row.values[2]))

    backend = EmailBackend(**kwargs)

    expected = row.default if winner == "default" else row.expected[index]
    assert getattr(backend, row.option) == expected


def test_port_defaults_to_25_whatever_the_tls_mode(settings: Any) -> None:
    """As Django's SMTP backend: without EMAIL_PORT the port is 25, even with EMAIL_USE_SSL."""
    settings.EMAIL_USE_SSL = True
    assert EmailBackend().port == 25
    assert EmailBackend(use_tls=True, use_ssl=False).port == 25


def test_an_empty_host_or_port_argument_falls_back_to_the_settings(settings: Any) -> None:
    """As Django's SMTP backend: host="" and port=0 count as not given."""
    settings.EMAIL_HOST = "setting.test"
    settings.EMAIL_PORT = 2525
    backend = EmailBackend(host="", port=0, username=None, use_tls=None, timeout=None)
    assert (backend.host, backend.port, backend.use_tls, backend.timeout) == (
        "setting.test",
        2525,
        False,
        30.0,
    )


def test_timeout_defaults_to_30_seconds_not_none() -> None:
    """The default timeout is 30 seconds (a deliberate difference from Django's None)."""
    assert EmailBackend().timeout == 30.0


def test_email_timeout_none_set_by_the_project_means_no_timeout(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMAIL_TIMEOUT = None set in the project is a choice: no timeout, even over the env."""
    settings.EMAIL_TIMEOUT = None
    monkeypatch.setenv("AMSDAL_EMAIL_TIMEOUT", "9")
    assert EmailBackend().timeout is None


def test_use_tls_and_use_ssl_together_is_djangos_value_error(settings: Any) -> None:
    """Both TLS modes raise Django's ValueError with Django's wording, then a hint."""
    settings.EMAIL_USE_TLS = True
    settings.EMAIL_USE_SSL = True
    with pytest.raises(ValueError) as excinfo:
        EmailBackend()
    message = str(excinfo.value)
    assert message.startswith(
        "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those "
        "settings to True."
    )
    assert "settings.EMAIL_USE_TLS" in message and "settings.EMAIL_USE_SSL" in message


def test_use_tls_from_the_environment_conflicts_with_use_ssl_from_settings(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conflict is found across sources, and the hint names both."""
    settings.EMAIL_USE_SSL = True
    monkeypatch.setenv("AMSDAL_EMAIL_USE_TLS", "on")
    with pytest.raises(ValueError, match="AMSDAL_EMAIL_USE_TLS"):
        EmailBackend()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("EMAIL_PORT", "not-a-port"),
        ("EMAIL_PORT", 70000),
        ("EMAIL_USE_TLS", "maybe"),
        ("EMAIL_TIMEOUT", -1),
    ],
)
def test_a_bad_setting_is_improperly_configured_naming_it(
    settings: Any, setting: str, value: Any
) -> None:
    """A value amsdal_mail cannot use is ImproperlyConfigured, naming the setting."""
    setattr(settings, setting, value)
    with pytest.raises(ImproperlyConfigured, match=f"settings.{setting}"):
        EmailBackend()


def test_a_bad_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad AMSDAL_EMAIL_* value is reported with the variable's name."""
    monkeypatch.setenv("AMSDAL_EMAIL_USE_SSL", "perhaps")
    with pytest.raises(ImproperlyConfigured, match="AMSDAL_EMAIL_USE_SSL"):
        EmailBackend()


def test_a_password_unencrypted_to_another_host_is_refused(settings: Any) -> None:
    """amsdal_mail's refusal to send a password in clear text to a remote host surfaces."""
    settings.EMAIL_HOST = "mail.example.com"
    settings.EMAIL_HOST_USER = "alice"
    settings.EMAIL_HOST_PASSWORD = "secret-password"
    with pytest.raises(ImproperlyConfigured, match="unencrypted") as excinfo:
        EmailBackend()
    assert "secret-password" not in str(excinfo.value)


def test_the_password_is_not_in_the_repr(settings: Any) -> None:
    """The backend's repr never shows the password."""
    backend = EmailBackend(username="alice", password="secret-password")
    assert backend.password == "secret-password"
    assert "secret-password" not in repr(backend)


# --- each row reaches the server ---------------------------------------------------------


@pytest.fixture(params=["setting", "env"])
def source(request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set an option through its EMAIL_* setting or its AMSDAL_EMAIL_* variable."""

    def set_option(row_option: str, value: Any) -> None:
        row = next(row for row in ROWS if row.option == row_option)
        if request.param == "setting":
            setattr(settings, row.setting, value)
        else:
            monkeypatch.setenv(row.env, str(value))

    settings.EMAIL_BACKEND = BACKEND
    return set_option


def _send() -> int:
    return mail.send_mail("Subject", "Body", "from@example.com", ["to@example.com"])


def test_host_and_port_reach_the_server(source: Any, server: RecordingServer) -> None:
    """host and port (EMAIL_HOST / EMAIL_PORT, or their variables) pick the server."""
    source("host", server.host)
    source("port", server.port)
    assert _send() == 1
    assert server.messages[0].rcpt_tos == ["to@example.com"]


def test_username_and_password_log_in(source: Any, smtp_server: ServerFactory) -> None:
    """username and password (EMAIL_HOST_USER / EMAIL_HOST_PASSWORD) log in to the server."""
    server = smtp_server(auth={"alice": "wonderland"})
    source("host", server.host)
    source("port", server.port)
    source("username", "alice")
    source("password", "wonderland")
    assert _send() == 1
    assert server.messages[0].auth_user == "alice"


def test_a_username_without_a_password_does_not_log_in(
    settings: Any, server: RecordingServer
) -> None:
    """As Django: no login unless both EMAIL_HOST_USER and EMAIL_HOST_PASSWORD are set."""
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.EMAIL_HOST_USER = "alice"
    assert _send() == 1
    assert server.messages[0].auth_user is None


def test_use_tls_upgrades_with_starttls(
    source: Any, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """use_tls (EMAIL_USE_TLS) sends over STARTTLS, verifying the server certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    server = smtp_server(tls="starttls")
    source("host", server.host)
    source("port", server.port)
    source("use_tls", True)
    assert _send() == 1
    assert server.messages[0].tls


def test_use_ssl_connects_with_implicit_tls(
    source: Any, smtp_server: ServerFactory, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """use_ssl (EMAIL_USE_SSL) connects with TLS from the first byte."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    server = smtp_server(tls="ssl")
    source("host", server.host)
    source("port", server.port)
    source("use_ssl", True)
    assert _send() == 1
    assert server.messages[0].tls


def test_an_untrusted_certificate_is_refused(
    settings: Any, smtp_server: ServerFactory, untrusted_ssl_context: ssl.SSLContext
) -> None:
    """Certificates are verified: a server the trust store does not know is an OSError."""
    server = smtp_server(tls="ssl", server_context=untrusted_ssl_context)
    settings.EMAIL_BACKEND = BACKEND
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.EMAIL_USE_SSL = True
    with pytest.raises(ssl.SSLError):
        _send()
    assert server.messages == []


def test_ssl_certfile_and_keyfile_present_a_client_certificate(
    source: Any,
    smtp_server: ServerFactory,
    ca_file: str,
    client_cert_files: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ssl_certfile / ssl_keyfile (EMAIL_SSL_CERTFILE / _KEYFILE) are the client certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    server = smtp_server(tls="ssl")
    certfile, keyfile = client_cert_files
    source("host", server.host)
    source("port", server.port)
    source("use_ssl", True)
    source("ssl_certfile", certfile)
    source("ssl_keyfile", keyfile)
    assert _send() == 1
    peer_cert = server.messages[0].peer_cert
    assert peer_cert is not None
    assert ("email", "client@example.com") in peer_cert["subjectAltName"]


def test_timeout_bounds_the_wait_for_a_silent_server(
    source: Any, silent_server: tuple[str, int]
) -> None:
    """timeout (EMAIL_TIMEOUT) bounds the wait for a server that never answers."""
    host, port = silent_server
    source("host", host)
    source("port", port)
    source("timeout", 0.5)
    with pytest.raises(TimeoutError):
        _send()


# --- which amsdal_mail backend ------------------------------------------------------------


def test_the_backend_argument_picks_the_amsdal_mail_backend() -> None:
    """backend="locmem" sends into amsdal_mail's in-memory outbox instead of SMTP."""
    from amsdal_mail.backends.locmem import LocmemBackend, outbox

    outbox.clear()
    backend = EmailBackend(backend="locmem")
    message = mail.EmailMessage("Hi", "Body", "from@example.com", ["to@example.com"])
    assert isinstance(backend.amsdal_backend, LocmemBackend)
    assert backend.send_messages([message]) == 1
    assert [m.subject for m in outbox] == ["Hi"]
    assert (backend.host, backend.port) == (None, None)
    outbox.clear()


def test_amsdal_email_backend_picks_the_backend_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the argument, AMSDAL_EMAIL_BACKEND names the amsdal_mail backend."""
    from amsdal_mail.backends.dummy import DummyBackend

    monkeypatch.setenv("AMSDAL_EMAIL_BACKEND", "dummy")
    assert isinstance(EmailBackend().amsdal_backend, DummyBackend)


def test_an_unknown_amsdal_mail_backend_lists_the_known_ones() -> None:
    """An unknown backend name is ImproperlyConfigured, listing the names that exist."""
    with pytest.raises(ImproperlyConfigured, match="smtp") as excinfo:
        EmailBackend(backend="carrier-pigeon")
    assert "carrier-pigeon" in str(excinfo.value)


def test_a_setting_set_to_none_counts_as_not_set(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMAIL_PORT = None (as Django reads it) falls back to the environment or the default."""
    settings.EMAIL_PORT = None
    settings.EMAIL_HOST_USER = None
    assert EmailBackend().port == 25
    monkeypatch.setenv("AMSDAL_EMAIL_PORT", "2526")
    assert EmailBackend().port == 2526
