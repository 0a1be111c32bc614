"""``manage.py amsdal_mailcheck [--mailer ALIAS] [--rcpt ADDR] [--from ADDR] [--json]``.

Runs the checks of ``amsdal-mail check`` (connect, EHLO, STARTTLS or implicit
TLS with the certificate, AUTH, and with ``--rcpt`` a MAIL FROM / RCPT TO
probe ended with RSET: nothing is sent) with the project's mail settings:

* without ``--mailer``: the ``EMAIL_*`` settings (and the ``AMSDAL_EMAIL_*``
  environment under them), as ``EMAIL_BACKEND`` sends; on Django 6.1+ with
  ``MAILERS`` set, its ``"default"`` alias;
* ``--mailer ALIAS`` (Django 6.1+): ``MAILERS[ALIAS]``'s ``OPTIONS``.

The settings are read by :mod:`django_amsdal_mail.settings`, exactly as the
backend reads them. The probe's sender is ``--from``, else
``DEFAULT_FROM_EMAIL``. Exit status as ``amsdal-mail check``: 0 ok, 2 usage
or configuration, 3 connect or timeout, 4 TLS, 5 authentication, 6 recipient
refused, 7 another protocol error.
"""

from __future__ import annotations

from typing import Any, Final

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandParser

from amsdal_mail import ConfigurationError
from amsdal_mail.backends.smtp import SMTPBackend
from amsdal_mail.cli import check, configuration_report, print_report
from amsdal_mail.cli.probe import CheckReport
from django_amsdal_mail.settings import is_overridden, resolve_mailer

#: Backends whose settings name an SMTP server this command can check.
SMTP_BACKENDS: Final = (
    "django_amsdal_mail.backend.EmailBackend",
    "django.core.mail.backends.smtp.EmailBackend",
)
_MAILERS: Final = django.VERSION >= (6, 1)


class _Unusable(Exception):
    """The mail settings cannot be checked; the message says why and what to change."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


def _mailer(alias: str | None) -> tuple[dict[str, Any], str | None, str]:
    """Return (OPTIONS, alias or None for compatibility mode, BACKEND path) to check."""
    mailers = getattr(settings, "MAILERS", None) if _MAILERS else None
    if alias is not None:
        if not _MAILERS:
            raise _Unusable(
                f"--mailer needs MAILERS, which Django {django.get_version()} does not have "
                "(Django 6.1+)",
                "leave out --mailer: the EMAIL_* settings are checked",
            )
        if not isinstance(mailers, dict) or alias not in mailers:
            known = ", ".join(repr(name) for name in mailers or {}) or "none"
            raise _Unusable(
                f"MAILERS has no alias {alias!r} (aliases: {known})",
                "give --mailer one of the MAILERS aliases",
            )
    elif _MAILERS and is_overridden("MAILERS") and isinstance(mailers, dict):
        alias = "default"
        if alias not in mailers:
            raise _Unusable("MAILERS has no 'default' alias", "give --mailer ALIAS")
    if alias is None:
        return {}, None, str(getattr(settings, "EMAIL_BACKEND", SMTP_BACKENDS[1]))
    entry = mailers[alias] if isinstance(mailers, dict) else {}
    options = dict(entry.get("OPTIONS") or {})
    options.pop("fail_silently", None)
    return options, alias, str(entry.get("BACKEND", ""))


def _report(alias: str | None, rcpt: str | None, mail_from: str | None) -> CheckReport:
    """Resolve the settings to check and check them; a configuration report on a problem."""
    try:
        options, alias, path = _mailer(alias)
        where = "EMAIL_BACKEND" if alias is None else f"MAILERS[{alias!r}]['BACKEND']"
        if path not in SMTP_BACKENDS:
            raise _Unusable(
                f"{where} is {path!r}, not an SMTP backend: there is no server to check",
                f"set {where} to {SMTP_BACKENDS[0]!r}",
            )
        mailer = resolve_mailer(options, alias=alias)
        backend = mailer.new_backend()
        if not isinstance(backend, SMTPBackend):
            raise _Unusable(
                f"the mail settings send through {type(backend).__name__}, not SMTP: there "
                "is no server to check",
                "set the 'backend' option (or AMSDAL_EMAIL_BACKEND) to smtp",
            )
    except _Unusable as exc:
        return configuration_report(exc, fix=exc.fix)
    except (ImproperlyConfigured, ConfigurationError, ValueError) as exc:
        return configuration_report(exc)
    sender = mail_from or (settings.DEFAULT_FROM_EMAIL if rcpt else None)
    try:
        return check(backend.settings, rcpt=rcpt, mail_from=sender)
    except ValueError as exc:  # an invalid --rcpt or --from (DEFAULT_FROM_EMAIL)
        return configuration_report(exc, host=backend.settings.host, port=backend.settings.port)


class Command(BaseCommand):
    """Check the SMTP server the project's mail settings name."""

    help = (
        "Connect to the SMTP server the mail settings name: EHLO, TLS (version, cipher, "
        "certificate), AUTH, and with --rcpt a MAIL FROM/RCPT TO probe ended with RSET "
        "(nothing is sent). Exit status: 0 ok, 2 configuration, 3 connect or timeout, 4 TLS, "
        "5 authentication, 6 recipient refused, 7 other protocol error."
    )
    requires_system_checks: list[str] = []  # a broken mail setting is what this reports

    def add_arguments(self, parser: CommandParser) -> None:
        """Add --mailer, --rcpt, --from and --json."""
        parser.add_argument("--mailer", metavar="ALIAS", help="check MAILERS[ALIAS] (6.1+)")
        parser.add_argument("--rcpt", metavar="ADDR", help="probe this recipient (then RSET)")
        parser.add_argument(
            "--from",
            dest="mail_from",
            metavar="ADDR",
            help="sender for the probe (default: DEFAULT_FROM_EMAIL)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the check; exit with its status (SystemExit when not 0)."""
        report = _report(options["mailer"], options["rcpt"], options["mail_from"])
        code = print_report(report, as_json=options["json"], out=self.stdout)
        if code:
            raise SystemExit(code)
