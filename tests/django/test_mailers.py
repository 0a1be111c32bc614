"""Django 6.1+ MAILERS: OPTIONS, the alias, named mailers, and Django's errors.

Collected only on Django 6.1 and later (see conftest.py).
"""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from django.core import checks, mail
from django.core.mail import EmailMessage, InvalidMailer, mailers
from django.core.management import call_command
from django.utils.deprecation import RemovedInDjango2028Warning

from amsdal_mail.backends.locmem import LocmemBackend, outbox
from django_amsdal_mail.backend import EmailBackend
from django_amsdal_mail.checks import check_mail_settings
from django_amsdal_mail.mail import asend_mail
from tests.smtpd import RecordingServer, ServerFactory

from .conftest import BACKEND


def _mailers(settings: Any, **aliases: dict[str, Any]) -> None:
    """Set MAILERS with our backend for each alias, with the given OPTIONS."""
    settings.MAILERS = {
        alias: {"BACKEND": BACKEND, "OPTIONS": options} for alias, options in aliases.items()
    }


def _message(subject: str = "Hi") -> EmailMessage:
    return EmailMessage(subject, "Body", "from@example.com", ["to@example.com"])


def test_options_arrive_as_arguments_with_the_alias(settings: Any, server: RecordingServer) -> None:
    """MAILERS builds the backend with its OPTIONS and passes the alias on."""
    _mailers(settings, default={"host": server.host, "port": server.port, "timeout": 12})
    backend = mailers["default"]
    assert isinstance(backend, EmailBackend)
    assert backend.alias == "default"
    assert (backend.host, backend.port, backend.timeout) == (server.host, server.port, 12.0)
    assert backend.send_messages([_message()]) == 1


def test_named_mailers_coexist(settings: Any, smtp_server: ServerFactory) -> None:
    """A second alias (e.g. bulk mail on another server) is used with ``using``."""
    main, bulk = smtp_server(), smtp_server()
    _mailers(
        settings,
        default={"host": main.host, "port": main.port},
        bulk={"host": bulk.host, "port": bulk.port},
    )
    assert _message("to main").send() == 1
    assert _message("to bulk").send(using="bulk") == 1
    assert mail.send_mail("bulk again", "Body", None, ["x@example.com"], using="bulk") == 1
    assert [m.message["Subject"] for m in main.messages] == ["to main"]
    assert [m.message["Subject"] for m in bulk.messages] == ["to bulk", "bulk again"]
    assert mailers["bulk"].alias == "bulk"


def test_each_mailer_may_use_another_amsdal_mail_backend(
    settings: Any, server: RecordingServer
) -> None:
    """The ``backend`` option picks the amsdal_mail backend per alias."""
    _mailers(
        settings,
        default={"host": server.host, "port": server.port},
        preview={"backend": "locmem"},
    )
    outbox.clear()
    assert _message("kept in memory").send(using="preview") == 1
    assert isinstance(mailers["preview"].amsdal_backend, LocmemBackend)
    assert [m.subject for m in outbox] == ["kept in memory"]
    assert server.messages == []
    outbox.clear()


def test_an_unknown_option_is_djangos_invalid_mailer(settings: Any) -> None:
    """An option the backend does not know is reported as Django's BaseEmailBackend does."""
    _mailers(settings, default={"host": "mail.example.com", "bogus": 1, "colour": "red"})
    with pytest.raises(InvalidMailer) as excinfo:
        mailers["default"]
    assert str(excinfo.value) == "MAILERS['default']: Unknown options 'bogus', 'colour'."


def test_the_smtp_backend_needs_a_host(settings: Any) -> None:
    """Without OPTIONS['host'] (or AMSDAL_EMAIL_HOST): Django's InvalidMailer wording."""
    _mailers(settings, default={"port": 2525})
    with pytest.raises(InvalidMailer) as excinfo:
        mailers["default"]
    assert str(excinfo.value).startswith("MAILERS['default']: OPTIONS must define 'host'.")


def test_the_host_may_come_from_the_environment(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AMSDAL_EMAIL_HOST stands in for OPTIONS['host']."""
    monkeypatch.setenv("AMSDAL_EMAIL_HOST", "env.example.com")
    _mailers(settings, default={})
    assert mailers["default"].host == "env.example.com"


def test_other_backends_need_no_host(settings: Any) -> None:
    """Only the smtp backend needs a host."""
    _mailers(settings, default={"backend": "dummy"})
    assert mailers["default"].send_messages([_message()]) == 1


def test_use_tls_and_use_ssl_together_is_djangos_invalid_mailer(settings: Any) -> None:
    """Both TLS modes: Django's InvalidMailer wording, then a hint."""
    _mailers(settings, default={"host": "mail.example.com", "use_tls": True, "use_ssl": True})
    with pytest.raises(InvalidMailer) as excinfo:
        mailers["default"]
    assert str(excinfo.value).startswith(
        "MAILERS['default']: The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
        "Set at most one of them to True."
    )


@pytest.mark.parametrize(
    ("options", "port"),
    [({}, 25), ({"use_ssl": True}, 465), ({"use_tls": True}, 587), ({"port": 2525}, 2525)],
)
def test_the_port_follows_the_tls_mode(settings: Any, options: dict[str, Any], port: int) -> None:
    """Under MAILERS the default port is 465 with use_ssl, 587 with use_tls, else 25."""
    _mailers(settings, default={"host": "mail.example.com", **options})
    assert mailers["default"].port == port


def test_timeout_none_means_no_timeout(settings: Any) -> None:
    """OPTIONS timeout=None is no timeout; without it, 30 seconds."""
    _mailers(
        settings,
        default={"host": "mail.example.com", "timeout": None},
        other={"host": "mail.example.com"},
    )
    assert mailers["default"].timeout is None
    assert mailers["other"].timeout == 30.0


def test_a_bad_option_value_names_the_option(settings: Any) -> None:
    """A value amsdal_mail cannot use is InvalidMailer naming the alias and the option."""
    _mailers(settings, default={"host": "mail.example.com", "port": "smtp"})
    with pytest.raises(InvalidMailer, match=r"MAILERS\['default'\].*OPTIONS\['port'\]"):
        mailers["default"]


def test_the_deprecated_email_settings_are_never_read(
    settings: Any, server: RecordingServer
) -> None:
    """Under MAILERS the EMAIL_* settings play no part, even when present."""
    _mailers(settings, default={"host": server.host, "port": server.port})
    settings.EMAIL_HOST = "wrong.invalid"
    settings.EMAIL_PORT = 1
    settings.EMAIL_USE_SSL = True
    assert _message().send() == 1
    assert len(server.messages) == 1


def test_fail_silently_is_an_option(settings: Any, smtp_server: ServerFactory) -> None:
    """OPTIONS fail_silently silences delivery errors, as for Django's SMTP backend."""
    server = smtp_server(rcpt_replies={"to@example.com": "550 No such user"})
    _mailers(
        settings,
        default={"host": server.host, "port": server.port},
        quiet={"host": server.host, "port": server.port, "fail_silently": True},
    )
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        _message().send()
    assert _message().send(using="quiet") == 0


def test_auth_arguments_still_work_with_mailers(settings: Any, smtp_server: ServerFactory) -> None:
    """send_mail(auth_user=..., auth_password=...) (deprecated) overrides the default mailer."""
    server = smtp_server(auth={"alice": "wonderland"})
    _mailers(settings, default={"host": server.host, "port": server.port})
    with pytest.warns(RemovedInDjango2028Warning, match="auth_user"):
        sent = mail.send_mail(
            "Hi", "Body", None, ["to@example.com"], auth_user="alice", auth_password="wonderland"
        )
    assert sent == 1
    assert server.messages[0].auth_user == "alice"


def test_sendtestemail_using_an_alias(settings: Any, smtp_server: ServerFactory) -> None:
    """``manage.py sendtestemail --using bulk`` goes through that mailer."""
    main, bulk = smtp_server(), smtp_server()
    _mailers(
        settings,
        default={"host": main.host, "port": main.port},
        bulk={"host": bulk.host, "port": bulk.port},
    )
    call_command("sendtestemail", "to@example.com", "--using", "bulk")
    assert main.messages == []
    assert bulk.messages[0].rcpt_tos == ["to@example.com"]


async def test_asend_mail_using_an_alias(settings: Any, smtp_server: ServerFactory) -> None:
    """asend_mail(using=...) sends through that mailer, asynchronously."""
    main, bulk = smtp_server(), smtp_server()
    _mailers(
        settings,
        default={"host": main.host, "port": main.port},
        bulk={"host": bulk.host, "port": bulk.port},
    )
    assert await asend_mail("Hi", "Body", None, ["to@example.com"], using="bulk") == 1
    assert main.messages == []
    assert len(bulk.messages) == 1


# --- checks under MAILERS ------------------------------------------------------------------


def test_checks_report_each_alias(settings: Any) -> None:
    """Each of our aliases is checked: unknown options (E007), a missing host (E006), TLS (E001)."""
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND, "OPTIONS": {"host": "mail.example.com", "bogus": 1}},
        "nohost": {"BACKEND": BACKEND, "OPTIONS": {}},
        "tls": {
            "BACKEND": BACKEND,
            "OPTIONS": {"host": "mail.example.com", "use_tls": True, "use_ssl": True},
        },
        "django": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"bogus": 1},
        },
    }
    known = sorted(
        {"backend", "fail_silently", "host", "port", "username", "password", "use_tls"}
        | {"use_ssl", "timeout", "ssl_certfile", "ssl_keyfile"}
        | {"oauth2_token", "max_messages_per_connection", "rate_limit"}
        | {"dsn_notify", "dsn_ret", "dkim_selector", "dkim_domain", "dkim_private_key"}
        | {"dkim_private_key_file", "return_path", "verp", "verp_secret", "chunking"}
        | {"pool", "pool_size", "pool_idle_timeout"}
    )
    assert check_mail_settings() == [
        checks.Error(
            "MAILERS['default']: Unknown options 'bogus'.",
            hint=f"The amsdal_mail backend accepts {known}.",
            id="amsdal_mail.E007",
        ),
        checks.Error(
            "MAILERS['nohost']: OPTIONS must define 'host'.",
            hint="Set OPTIONS['host'], or the AMSDAL_EMAIL_HOST environment variable.",
            id="amsdal_mail.E006",
        ),
        checks.Error(
            "MAILERS['tls']: The 'use_ssl' and 'use_tls' OPTIONS are incompatible. "
            "Set at most one of them to True.",
            hint="use_tls is true from MAILERS['tls'] OPTIONS['use_tls'] and use_ssl is true "
            "from MAILERS['tls'] OPTIONS['use_ssl']. use_tls is STARTTLS (usually port 587), "
            "use_ssl implicit TLS (usually port 465).",
            id="amsdal_mail.E001",
        ),
    ]


def test_checks_pass_for_good_mailers(settings: Any) -> None:
    """Usable MAILERS give no message."""
    _mailers(settings, default={"host": "mail.example.com", "use_tls": True})
    assert check_mail_settings() == []


def test_a_keyfile_option_without_a_certificate_warns(settings: Any) -> None:
    """W002 under MAILERS: OPTIONS ssl_keyfile alone is accepted, with a warning."""
    _mailers(settings, default={"host": "mail.example.com", "ssl_keyfile": "client.key"})
    assert mailers["default"].ssl_keyfile == "client.key"
    assert check_mail_settings() == [
        checks.Warning(
            "The key file from MAILERS['default'] OPTIONS['ssl_keyfile'] is ignored without "
            "MAILERS['default'] OPTIONS['ssl_certfile'].",
            hint="Set MAILERS['default'] OPTIONS['ssl_certfile'] to the client certificate "
            "that goes with the key, or remove the key file.",
            id="amsdal_mail.W002",
        )
    ]


def test_username_and_password_are_none_when_not_given(settings: Any) -> None:
    """Under MAILERS, as Django's SMTP backend: no OPTIONS username / password is None."""
    _mailers(settings, default={"host": "mail.example.com"})
    assert (mailers["default"].username, mailers["default"].password) == (None, None)
